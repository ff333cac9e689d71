//! `kglue serve`: the catalog over the PostgreSQL wire protocol, for psql, JDBC and BI tools. A
//! Session's pod runs it with `--session` (the operator's command line,
//! [`kglue_crds::protocol::session::ServeCommand`]); on a laptop, `--catalog DIR` serves a catalog
//! directory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kglue_crds::common::WorkerResources;
use kglue_crds::protocol::attempt::{POD_NAME_ENV, SECRETS_DIR, SECRETS_DIR_ENV, SPILL_DIR, SPILL_DIR_ENV};
use kglue_crds::protocol::session::{PASSWORD_ENV, ServeArgs};
use kglue_runner::catalog::DirCatalog;
use kglue_runner::etl::run::Resources;
use kglue_runner::sql::serve::{ActivityReporter, Login, Server};
use kglue_runner::sql::{CatalogSource, SqlSession};
use kglue_runner::storage::{Credentials, SecretsDir, StoreResolver};

/// How often the Session's `status.activity` is written while queries arrive.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// `kglue serve`.
#[derive(Args)]
pub struct ServeCliArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Serve a directory of Database, Table and Connection manifests instead of a namespace.
    #[arg(long, conflicts_with = "namespace")]
    catalog: Option<PathBuf>,
    /// Where the Secrets that Connections refer to are, one folder per Secret, one file per key
    /// (a Session's pod has them mounted here).
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
    /// Where queries spill when --memory-gib bounds them (a Session's pod: its emptyDir).
    #[arg(long, env = SPILL_DIR_ENV, default_value = SPILL_DIR)]
    spill_dir: PathBuf,
}

/// Runs `kglue serve` until the process is stopped.
pub async fn run(args: ServeCliArgs) -> anyhow::Result<ExitCode> {
    let password = std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .with_context(|| format!("set {PASSWORD_ENV}: the password clients log in with"))?;
    let serve = args.serve;
    let mut client = None;
    let (catalog, source) = match (&args.catalog, &serve.namespace) {
        (Some(dir), _) => (DirCatalog::load(dir)?, CatalogSource::Dir(dir.clone())),
        (None, Some(namespace)) => {
            let kube = kube::Client::try_default()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach the cluster: {e}"))?;
            let catalog = kglue_runner::cluster::catalog_snapshot(&kube, namespace).await?;
            client = Some(kube.clone());
            let source = CatalogSource::Namespace {
                client: kube,
                namespace: namespace.clone(),
            };
            (catalog, source)
        }
        (None, None) => anyhow::bail!("give --catalog DIR or -n NAMESPACE"),
    };
    let resolver = StoreResolver::new(
        catalog.connections().clone(),
        Credentials::from_process(SecretsDir(args.secrets_dir.clone())),
    );
    let only = (!serve.databases.is_empty()).then(|| serve.databases.iter().cloned().collect::<BTreeSet<_>>());
    // A session of one database looks its unqualified names up there, as `kglue sql -d` does.
    let default = match serve.databases.as_slice() {
        [one]
            if catalog.databases().any(|d| &d.spec.database_name == one)
                || catalog.tables().any(|t| &t.spec.database_name == one) =>
        {
            Some(one.clone())
        }
        _ => None,
    };
    // A Session's pod is told its worker size: the engine's pool and spill are sized from it.
    let resources = serve.memory_gib.map(|memory_gib| {
        let worker = WorkerResources {
            cpu: serve.cpu.unwrap_or(u32::MAX),
            memory_gib,
        };
        Resources::for_resources(worker, args.spill_dir.clone())
    });
    let session = SqlSession::open_limited(catalog, source, resolver, default.as_deref(), only, resources.as_ref())?;
    let login = Login {
        username: serve.username.clone(),
        password,
    };
    let server = Server::bind(session, login, &serve.listen, serve.port).await?;
    for address in server.addresses() {
        eprintln!("kglue serve: listening on {address} (user {})", serve.username);
    }
    let activity = server.activity();
    let reporter = match (&serve.session, &client, &serve.namespace) {
        (Some(name), Some(client), Some(namespace)) => Some(ActivityReporter::new(
            client.clone(),
            namespace,
            name,
            std::env::var(POD_NAME_ENV).ok(),
        )),
        (Some(_), _, _) => anyhow::bail!("--session needs -n NAMESPACE: the Session is an object of the cluster"),
        _ => None,
    };
    match reporter {
        Some(reporter) => {
            tokio::select! {
                () = server.run() => {}
                reported = reporter.run(activity, REPORT_EVERY) => {
                    reported.context("writing the Session's status.activity")?;
                }
            }
        }
        None => server.run().await,
    }
    Ok(ExitCode::SUCCESS)
}
