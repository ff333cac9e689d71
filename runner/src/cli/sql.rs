//! `kglue sql`: a prompt with line editing and history (rustyline), or one-shot `-c` / `-f`,
//! over a catalog or sent to a Session's pod (`--session`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kglue_crds::protocol::attempt::{SECRETS_DIR, SECRETS_DIR_ENV};
use kglue_runner::catalog::DirCatalog;
use kglue_runner::sql::output::Format;
use kglue_runner::sql::remote::RemoteSession;
use kglue_runner::sql::shell::{Shell, Step, Target};
use kglue_runner::sql::{CatalogSource, SqlSession};
use kglue_runner::storage::{Credentials, SecretsDir, StoreResolver};
use rustyline::error::ReadlineError;

use super::exit_code;

/// `kglue sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// The directory of Database, Table and Connection manifests to query (the catalog
    /// `kglue run` uses): every Database is a schema, every Table a table.
    #[arg(long, required_unless_present = "namespace", conflicts_with = "namespace")]
    catalog: Option<PathBuf>,
    /// Query the catalog of this namespace of the current cluster instead (kubeconfig): its
    /// Tables read from the API server before each statement, storage reached with the
    /// Connections' Secrets where you may read them, from where this command runs.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// With -n: send the statements to this Session's pod instead (it must be Ready and
    /// reachable from here: the pod's IP, as inside the cluster or on the local control plane).
    /// The password is $PGPASSWORD, or else read from the Session's Secret with your rights.
    #[arg(long, requires = "namespace")]
    session: Option<String>,
    /// The database unqualified table names are looked up in.
    #[arg(short = 'd', long)]
    database: Option<String>,
    /// Run these statements and exit (1 if one fails).
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    command: Option<String>,
    /// Run the statements of this file, stopping at the first that fails (exit 1).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// How answers are printed.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// After each statement, print its time and what it read from storage (objects, bytes,
    /// listings), as `\timing` does at the prompt.
    #[arg(long)]
    timing: bool,
    /// With --catalog: where the Secrets that Connections refer to are, one folder per Secret,
    /// one file per key.
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
}

/// Runs `kglue sql`.
pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    if let (Some(name), Some(namespace)) = (&args.session, &args.namespace) {
        let remote = connect_to_session(namespace, name).await?;
        let shell = Shell::new(Target::Remote(remote), args.format, args.timing);
        return run_shell(shell, &args).await;
    }
    // The namespace's Secrets, copied for the session's life into a folder only this user can
    // read, laid out as a mounted Secret volume is; removed when the session ends.
    let mut _secrets_copy = None;
    let (catalog, secrets, source) = match (&args.catalog, &args.namespace) {
        (Some(dir), _) => (
            DirCatalog::load(dir)?,
            SecretsDir(args.secrets_dir.clone()),
            CatalogSource::Dir(dir.clone()),
        ),
        (None, Some(namespace)) => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach the cluster: {e}"))?;
            let catalog = kglue_runner::cluster::catalog_snapshot(&client, namespace).await?;
            let copy = kglue_runner::sql::secrets::copy_secrets(&client, namespace, &catalog).await?;
            for warning in &copy.unreadable {
                eprintln!("kglue sql: {warning}");
            }
            let dir = SecretsDir(copy.dir.path().to_path_buf());
            _secrets_copy = Some(copy);
            let source = CatalogSource::Namespace {
                client,
                namespace: namespace.clone(),
            };
            (catalog, dir, source)
        }
        (None, None) => anyhow::bail!("give --catalog DIR or -n NAMESPACE"),
    };
    let resolver = StoreResolver::new(catalog.connections().clone(), Credentials::from_process(secrets));
    let session = SqlSession::open(catalog, source, resolver, args.database.as_deref())?;
    let shell = Shell::new(Target::Local(session), args.format, args.timing);
    run_shell(shell, &args).await
}

/// Runs `-c`, `-f` or the prompt.
async fn run_shell(mut shell: Shell, args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let one_shot = match (&args.command, &args.file) {
        (Some(command), _) => Some(command.clone()),
        (None, Some(file)) => {
            Some(std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?)
        }
        (None, None) => None,
    };
    if let Some(text) = one_shot {
        let (out, err) = shell.run_text(&text).await;
        print!("{out}");
        eprint!("{err}");
        return Ok(exit_code(err.is_empty()));
    }
    prompt(&mut shell).await
}

/// A connection to Session `name` of `namespace`: its pod's IP and port, its user name, and the
/// password from $PGPASSWORD or its Secret.
async fn connect_to_session(namespace: &str, name: &str) -> anyhow::Result<RemoteSession> {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kglue_crds::Session;
    use kglue_crds::session::SessionState;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster: {e}"))?;
    let session = kube::Api::<Session>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("reading Session {namespace}/{name}"))?;
    let status = session.status.clone().unwrap_or_default();
    if status.state != Some(SessionState::Ready) {
        anyhow::bail!(
            "session {name} is not Ready (state {:?}){}",
            status.state,
            status.message.map(|m| format!(": {m}")).unwrap_or_default()
        );
    }
    let pod_name = status
        .activity
        .and_then(|a| a.pod)
        .with_context(|| format!("session {name} names no pod in status.activity"))?;
    let pod = kube::Api::<Pod>::namespaced(client.clone(), namespace)
        .get(&pod_name)
        .await
        .with_context(|| format!("reading the session's pod {pod_name}"))?;
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .with_context(|| format!("the session's pod {pod_name} has no IP yet"))?;
    let auth = &session.spec.auth;
    let password = match std::env::var("PGPASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => {
            let secret = kube::Api::<Secret>::namespaced(client, namespace)
                .get(&auth.password_secret_ref.name)
                .await
                .with_context(|| {
                    format!(
                        "reading the session's password from Secret {} (or set PGPASSWORD)",
                        auth.password_secret_ref.name
                    )
                })?;
            let bytes = secret
                .data
                .and_then(|mut d| d.remove(&auth.password_secret_ref.key))
                .with_context(|| {
                    format!(
                        "Secret {} has no key {}",
                        auth.password_secret_ref.name, auth.password_secret_ref.key
                    )
                })?;
            String::from_utf8(bytes.0).context("the session's password is not UTF-8")?
        }
    };
    let port = u16::try_from(session.spec.port).context("the session's port")?;
    Ok(RemoteSession::connect(&ip, port, &auth.username, &password).await?)
}

async fn prompt(shell: &mut Shell) -> anyhow::Result<ExitCode> {
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let history = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kglue_sql_history"));
    if let Some(path) = &history {
        // No history yet is the usual first run.
        let _ = editor.load_history(path);
    }
    loop {
        let prompt = if shell.in_statement() { "kglue-> " } else { "kglue=> " };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match shell.line(&line).await {
                    Step::More => {}
                    Step::Printed { out, err } => {
                        print!("{out}");
                        eprint!("{err}");
                    }
                    Step::Quit => break,
                }
            }
            // Ctrl-C drops the statement being typed, as in psql; Ctrl-D quits.
            Err(ReadlineError::Interrupted) => shell.cancel(),
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error).context("reading the prompt"),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(ExitCode::SUCCESS)
}
