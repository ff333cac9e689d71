//! `kglue`: run kglue's data plane from a terminal or inside a Kubernetes Job. The same
//! manifests as in the cluster; a directory of Database/Table manifests stands in for the catalog.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{WorkerResources, WorkerSize};
use kglue_crds::run_result::{AttemptOutcome, RunOwnerKind};
use kglue_runner::attempt::{Attempt, report, result_object, run_attempt, termination_message};
use kglue_runner::catalog::DirCatalog;
use kglue_runner::control::{self, RunsOutput, pipelines};
use kglue_runner::crawl::cluster::crawl_cluster;
use kglue_runner::crawl::local::{crawl_dir, read_crawler, render};
use kglue_runner::ddl::{Dialect, catalog_table_ddl};
use kglue_runner::etl::bookmark::BookmarkFile;
use kglue_runner::etl::run::{
    Resources, RunOutcome, RunRequest, RunResult, failed_before_planning, plan_run, read_job,
};
use kglue_runner::storage::{Credentials, SecretsDir, StoreResolver};
use kube::ResourceExt;

#[derive(Parser)]
#[command(
    name = "kglue",
    version,
    about = "kglue: AWS Glue's crawlers and jobs, as Kubernetes resources",
    after_help = "Commands that take a kind and a name (start, stop, runs, logs, bookmark reset|rewind job NAME) work on the cluster of the current kubeconfig context, in the namespace given by -n, else the context's, else default. They write the annotations of docs/runs.md and read status; the operator does the rest.\n\nAs a kubectl plugin: put a symlink named kubectl-kglue to this binary on PATH, then run `kubectl kglue ...`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crawl the targets of a Crawler manifest and create or update Tables, in a catalog
    /// directory or in a namespace of the cluster.
    Crawl {
        /// The file holding the Crawler manifest.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The directory of Database, Table, Connection and Classifier manifests to use as the
        /// catalog; Tables are written there, one per file.
        #[arg(long, required_unless_present = "namespace", conflicts_with = "namespace")]
        catalog: Option<PathBuf>,
        /// Use the catalog of this namespace of the current cluster (kubeconfig, or the pod's
        /// service account) instead of a directory; Tables are written with server-side apply
        /// under the field manager kglue-crawler-<name>.
        #[arg(long)]
        namespace: Option<String>,
        /// Print the plan (tables, schemas, partitions) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the Secrets that Connections refer to are: one folder per Secret, one file per key.
        #[arg(long, env = "KGLUE_SECRETS_DIR", default_value = "/var/run/secrets/kglue")]
        secrets_dir: PathBuf,
    },
    /// Run a Job manifest: read its sources (only what its bookmark has not seen, when enabled),
    /// run its SQL, write its sinks and update the catalog directory. Prints the run result.
    Run {
        /// The file holding the Job manifest.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The directory of Database, Table and Connection manifests to use as the catalog;
        /// sink tables are created or updated there.
        #[arg(long)]
        catalog: PathBuf,
        /// A run argument, `name=value` (repeatable); the script reads it as `$name`.
        #[arg(long = "arg", value_parser = parse_argument)]
        arguments: Vec<(String, String)>,
        /// The file that keeps the job's bookmark between runs (created if missing). Without it,
        /// runs start with no bookmark and none is saved.
        #[arg(long)]
        bookmarks: Option<PathBuf>,
        /// The run id, carried by every output file; rerunning with the id of a failed run
        /// replaces what it wrote. Default: a new id from the clock.
        #[arg(long)]
        run_id: Option<String>,
        /// The attempt number recorded in the result.
        #[arg(long, default_value_t = 0)]
        attempt: i32,
        /// Print the sources selected and each sink's physical plan; write nothing.
        #[arg(long)]
        explain: bool,
        /// Print the run result as JSON (the shape the operator reads) instead of text.
        #[arg(long)]
        json: bool,
        /// Where the engine spills when a run outgrows its memory limit.
        #[arg(long, env = "KGLUE_SPILL_DIR")]
        spill_dir: Option<PathBuf>,
        /// Where the Secrets that Connections refer to are: one folder per Secret, one file per key.
        #[arg(long, env = "KGLUE_SECRETS_DIR", default_value = "/var/run/secrets/kglue")]
        secrets_dir: PathBuf,
    },
    /// Show, reset or rewind a job bookmark: in the cluster (`bookmark reset job NAME`), or in a
    /// file kept by `kglue run --bookmarks` (`bookmark reset --bookmarks FILE`).
    Bookmark {
        #[command(subcommand)]
        command: BookmarkCommand,
    },
    /// Start a run of a Job, a crawl of a Crawler or a Workflow run, or fire a Trigger, in the
    /// cluster (annotation run.kglue.dev/<request-id>); prints the request id and, once the
    /// operator recorded it, the run id (for a trigger: what it started).
    Start {
        #[command(flatten)]
        target: Target,
        /// A run argument, `name=value` (repeatable): a job's argument (the script reads it as
        /// `$name`), a workflow's run property, or an argument for every action of a trigger.
        #[arg(long = "arg", value_parser = parse_argument)]
        arguments: Vec<(String, String)>,
        /// The request id (1–63 letters, digits, '-', '_', '.'); one request starts one run, so
        /// repeating a request id does nothing. Default: cli-<unix seconds>-<random hex>.
        #[arg(long)]
        request_id: Option<String>,
        /// Follow the run to its end (its retries included); exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Run the failed nodes of a finished workflow run again (or the nodes named with --node),
    /// with everything downstream of them; upstream nodes that succeeded are not run again
    /// (annotation resume.kglue.dev/<run-id>).
    Resume {
        #[command(flatten)]
        target: Target,
        /// The workflow run id (see `kglue runs workflow NAME`).
        #[arg(long = "run")]
        run_id: String,
        /// A node to run again (repeatable); default: the nodes that failed.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Follow the run to its end; exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a run in the cluster (annotation stop.kglue.dev/<run-id>).
    Stop {
        #[command(flatten)]
        target: Target,
        /// The run id (see `kglue runs`).
        #[arg(long = "run")]
        run_id: String,
    },
    /// List the runs of a Job, Crawler or Workflow (status.runs), or a Trigger's fires, newest
    /// first.
    Runs {
        #[command(flatten)]
        target: Target,
        /// `table` for people, `json` for status.runs as it is.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Print the log of a run's newest attempt, read from its pod (or, when the log cannot be
    /// read, the pod's termination message).
    Logs {
        #[command(flatten)]
        target: Target,
        /// The run id; default: the newest run.
        #[arg(long = "run")]
        run_id: Option<String>,
    },
    /// Run one attempt of a Job run or a crawl inside its Kubernetes Job and report it as a
    /// RunResult (the operator starts this; see docs/runs.md). Exits 0 after a Succeeded report,
    /// 1 after a Failed one, 2 when nothing could be reported.
    Attempt(AttemptArgs),
    /// Work with the tables of a catalog directory.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

/// A Job, Crawler, Workflow or Trigger of the cluster.
#[derive(Args)]
struct Target {
    /// `job`, `crawler`, `workflow` or `trigger`.
    #[arg(value_enum)]
    kind: Kind,
    /// The Job's or Crawler's name.
    name: String,
    /// The namespace; default: the kubeconfig context's, else `default`.
    #[arg(short, long)]
    namespace: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// A kglue Job (kgjob).
    Job,
    /// A kglue Crawler (kgcrawler).
    Crawler,
    /// A Workflow (kgwf).
    Workflow,
    /// A Trigger (kgtrigger).
    Trigger,
}

/// What a Kubernetes Job's attempt runs.
#[derive(Clone, Copy, ValueEnum)]
enum AttemptKind {
    /// A kglue Job run.
    Job,
    /// A crawl.
    Crawler,
}

impl From<AttemptKind> for RunOwnerKind {
    fn from(kind: AttemptKind) -> Self {
        match kind {
            AttemptKind::Job => RunOwnerKind::Job,
            AttemptKind::Crawler => RunOwnerKind::Crawler,
        }
    }
}

impl Kind {
    /// The run owner kind of jobs and crawlers; `what` names the command for the error.
    fn run_owner(self, what: &str) -> Result<RunOwnerKind, String> {
        match self {
            Kind::Job => Ok(RunOwnerKind::Job),
            Kind::Crawler => Ok(RunOwnerKind::Crawler),
            Kind::Workflow => Err(format!(
                "{what} is for jobs and crawlers; a workflow's nodes are jobs and crawlers (`kglue runs workflow NAME` shows their run ids)"
            )),
            Kind::Trigger => Err(format!(
                "{what} is for jobs and crawlers; a trigger has no runs of its own"
            )),
        }
    }
}

/// Only Jobs have bookmarks; a kind word keeps the cluster form like the other commands.
#[derive(Clone, Copy, ValueEnum)]
enum BookmarkKind {
    /// A kglue Job (kgjob).
    Job,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Aligned columns.
    Table,
    /// status.runs as JSON.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkerSizeArg {
    Small,
    Medium,
    Large,
    #[value(name = "xlarge")]
    XLarge,
}

impl From<WorkerSizeArg> for WorkerSize {
    fn from(size: WorkerSizeArg) -> Self {
        match size {
            WorkerSizeArg::Small => WorkerSize::Small,
            WorkerSizeArg::Medium => WorkerSize::Medium,
            WorkerSizeArg::Large => WorkerSize::Large,
            WorkerSizeArg::XLarge => WorkerSize::XLarge,
        }
    }
}

#[derive(Args)]
struct AttemptArgs {
    /// Job or Crawler.
    #[arg(long, value_enum, ignore_case = true)]
    kind: AttemptKind,
    /// The Job's or Crawler's name.
    #[arg(long)]
    name: String,
    /// The run id.
    #[arg(long)]
    run_id: String,
    /// The attempt, 0 for the first.
    #[arg(long)]
    attempt: i32,
    /// The run's arguments, a JSON object of strings (Job only).
    #[arg(long)]
    arguments: Option<String>,
    /// The pod's worker size; default: the Job's.
    #[arg(long, value_enum, ignore_case = true)]
    worker_size: Option<WorkerSizeArg>,
    /// The pod's CPU cores (the operator passes what it gave the pod); default: the worker size's.
    #[arg(long, requires = "memory_gib")]
    cpus: Option<u32>,
    /// The pod's memory in GiB; default: the worker size's.
    #[arg(long, requires = "cpus")]
    memory_gib: Option<u32>,
    /// Where the Secrets that Connections refer to are mounted: one folder per Secret.
    #[arg(long, env = "KGLUE_SECRETS_DIR", default_value = "/var/run/secrets/kglue")]
    secrets_dir: PathBuf,
    /// Where the engine spills; default: the system's temporary directory.
    #[arg(long, env = "KGLUE_SPILL_DIR")]
    spill_dir: Option<PathBuf>,
    /// Where the one-line summary goes that the kubelet keeps as the termination message.
    #[arg(long, default_value = "/dev/termination-log")]
    termination_log: PathBuf,
    /// The namespace of the run (the downward API sets it).
    #[arg(long, env = "KGLUE_NAMESPACE")]
    namespace: String,
    /// The attempt's Kubernetes Job, which names and owns the RunResult.
    #[arg(long, env = "KGLUE_JOB_NAME")]
    kubernetes_job: String,
    /// That Job's UID.
    #[arg(long, env = "KGLUE_JOB_UID")]
    kubernetes_job_uid: String,
}

#[derive(Subcommand)]
enum BookmarkCommand {
    /// Print the bookmark file and the runs it can be rewound to (in the cluster:
    /// `kubectl get kgjob NAME -o jsonpath='{.status.bookmark}'`).
    Show {
        /// The bookmark file.
        #[arg(long)]
        bookmarks: PathBuf,
    },
    /// Forget the bookmark: the next run reads everything. `reset job NAME` asks the operator
    /// (annotation bookmark.kglue.dev/reset); `reset --bookmarks FILE` changes the file.
    Reset {
        /// `job` (cluster form).
        #[arg(
            value_enum,
            required_unless_present = "bookmarks",
            conflicts_with = "bookmarks",
            requires = "name"
        )]
        kind: Option<BookmarkKind>,
        /// The Job's name (cluster form).
        name: Option<String>,
        /// The namespace (cluster form); default: the kubeconfig context's, else `default`.
        #[arg(short, long, conflicts_with = "bookmarks")]
        namespace: Option<String>,
        /// The bookmark file (local form).
        #[arg(long)]
        bookmarks: Option<PathBuf>,
    },
    /// Move the bookmark back to where a run started: the next run reads again what that run
    /// and later ones read. `rewind job NAME [--to-run ID]` asks the operator (annotation
    /// bookmark.kglue.dev/rewind; no --to-run: undo the last run); `rewind --bookmarks FILE
    /// --to-run ID` changes the file.
    Rewind {
        /// `job` (cluster form).
        #[arg(
            value_enum,
            required_unless_present = "bookmarks",
            conflicts_with = "bookmarks",
            requires = "name"
        )]
        kind: Option<BookmarkKind>,
        /// The Job's name (cluster form).
        name: Option<String>,
        /// The namespace (cluster form); default: the kubeconfig context's, else `default`.
        #[arg(short, long, conflicts_with = "bookmarks")]
        namespace: Option<String>,
        /// The bookmark file (local form).
        #[arg(long)]
        bookmarks: Option<PathBuf>,
        /// The run to rewind to (required with --bookmarks).
        #[arg(long)]
        to_run: Option<String>,
    },
}

fn parse_argument(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

#[derive(Subcommand)]
enum TableCommand {
    /// Print a CREATE statement that lets another engine read a catalog table: its location,
    /// format, columns and partition keys. Notes on what the engine needs besides go to stderr.
    Ddl {
        /// The table as DATABASE.TABLE, with the Glue names (e.g. sales_raw.orders).
        name: String,
        /// The directory of Database, Table and Connection manifests to use as the catalog.
        #[arg(long)]
        catalog: PathBuf,
        /// The SQL dialect to write.
        #[arg(long, value_enum)]
        dialect: Dialect,
    },
}

fn main() -> ExitCode {
    // Run as `kubectl kglue` through a symlink named kubectl-kglue on PATH: the same commands,
    // with help and usage naming them as the user typed them.
    let as_plugin = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().ends_with("kubectl-kglue")))
        .unwrap_or(false);
    let mut command = Cli::command();
    if as_plugin {
        command = command.name("kubectl kglue").bin_name("kubectl kglue");
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kglue: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kglue: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Attempt(args) => Ok(attempt(args).await),
        Command::Start {
            target,
            arguments,
            request_id,
            wait,
        } => {
            let (client, namespace) = control::connect(target.namespace).await.map_err(|e| e.to_string())?;
            let user = std::env::var("USER").ok();
            let arguments = arguments.into_iter().collect();
            let succeeded = match target.kind {
                Kind::Workflow => {
                    pipelines::start_workflow(
                        &client,
                        &namespace,
                        &target.name,
                        request_id,
                        arguments,
                        user.as_deref(),
                        wait,
                    )
                    .await
                }
                Kind::Trigger => pipelines::fire_trigger(
                    &client,
                    &namespace,
                    &target.name,
                    request_id,
                    arguments,
                    user.as_deref(),
                )
                .await
                .map(|()| true),
                kind => {
                    control::start(
                        &client,
                        &namespace,
                        kind.run_owner("start")?,
                        &target.name,
                        request_id,
                        arguments,
                        user.as_deref(),
                        wait,
                    )
                    .await
                }
            }
            .map_err(|e| e.to_string())?;
            Ok(exit_code(succeeded))
        }
        Command::Resume {
            target,
            run_id,
            nodes,
            wait,
        } => {
            if !matches!(target.kind, Kind::Workflow) {
                return Err("resume is for workflows: kglue resume workflow NAME --run ID [--node NODE]...".into());
            }
            let (client, namespace) = control::connect(target.namespace).await.map_err(|e| e.to_string())?;
            let succeeded = pipelines::resume_workflow(&client, &namespace, &target.name, &run_id, &nodes, wait)
                .await
                .map_err(|e| e.to_string())?;
            Ok(exit_code(succeeded))
        }
        Command::Stop { target, run_id } => {
            let (client, namespace) = control::connect(target.namespace).await.map_err(|e| e.to_string())?;
            match target.kind {
                Kind::Workflow => pipelines::stop_workflow(&client, &namespace, &target.name, &run_id).await,
                kind => control::stop(&client, &namespace, kind.run_owner("stop")?, &target.name, &run_id).await,
            }
            .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { target, output } => {
            let (client, namespace) = control::connect(target.namespace).await.map_err(|e| e.to_string())?;
            let output = match output {
                OutputFormat::Table => RunsOutput::Table,
                OutputFormat::Json => RunsOutput::Json,
            };
            match target.kind {
                Kind::Workflow => pipelines::workflow_runs(&client, &namespace, &target.name, output).await,
                Kind::Trigger => pipelines::trigger_fires(&client, &namespace, &target.name, output).await,
                kind => control::runs(&client, &namespace, kind.run_owner("runs")?, &target.name, output).await,
            }
            .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { target, run_id } => {
            let (client, namespace) = control::connect(target.namespace).await.map_err(|e| e.to_string())?;
            let kind = target.kind.run_owner("logs")?;
            control::logs(&client, &namespace, kind, &target.name, run_id.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crawl {
            file,
            catalog,
            namespace,
            dry_run,
            secrets_dir,
        } => {
            let crawler = read_crawler(&file).map_err(|e| e.to_string())?;
            let secrets = Credentials::from_process(SecretsDir(secrets_dir));
            let plan = match (catalog, namespace) {
                (Some(catalog), _) => crawl_dir(&crawler, &catalog, secrets, dry_run)
                    .await
                    .map_err(|e| e.to_string())?,
                (None, Some(namespace)) => {
                    let client = kube::Client::try_default()
                        .await
                        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
                    crawl_cluster(&crawler, client, &namespace, secrets, dry_run)
                        .await
                        .map_err(|e| e.to_string())?
                }
                (None, None) => return Err("give --catalog DIR or --namespace NAMESPACE".into()),
            };
            print!("{}", render(&plan, &crawler, dry_run));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            catalog,
            arguments,
            bookmarks,
            run_id,
            attempt,
            explain,
            json,
            spill_dir,
            secrets_dir,
        } => {
            let job = read_job(&file)?;
            let mut catalog = DirCatalog::load(&catalog).map_err(|e| e.to_string())?;
            let resolver = StoreResolver::new(
                catalog.connections().clone(),
                Credentials::from_process(SecretsDir(secrets_dir)),
            );
            let mut bookmark_file = match &bookmarks {
                Some(path) => BookmarkFile::load(path).map_err(|e| e.to_string())?,
                None => BookmarkFile::default(),
            };
            let run_id = run_id.unwrap_or_else(new_run_id);
            let spill_dir = spill_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("kglue-spill-{run_id}")));
            let request = RunRequest {
                job_name: job.name_any(),
                spec: job.spec.clone(),
                run_id: run_id.clone(),
                attempt,
                arguments: arguments.into_iter().collect(),
                bookmark: bookmark_file.bookmark.clone(),
                resources: Resources::for_worker(job.spec.worker_size, spill_dir.clone()),
            };
            let started = std::time::Instant::now();
            let result = match plan_run(request, &catalog, &resolver).await {
                Ok(planned) if explain => {
                    print!("{}", planned.explain());
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(planned) => planned.execute(&mut catalog).await,
                Err((request, error)) => failed_before_planning(&request, &error, started.elapsed()),
            };
            let _ = std::fs::remove_dir_all(&spill_dir);
            if let (Some(path), Some(next)) = (&bookmarks, &result.next_bookmark)
                && result.outcome == RunOutcome::Succeeded
            {
                bookmark_file.commit(&run_id, result.started_from.clone(), next.clone(), Timestamp::now());
                bookmark_file.save(path).map_err(|e| e.to_string())?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
            } else {
                print!("{}", render_run(&result));
            }
            match result.outcome {
                RunOutcome::Succeeded => Ok(ExitCode::SUCCESS),
                RunOutcome::Failed => Err(format!(
                    "run {} failed: {}",
                    result.run_id,
                    result.error.as_deref().unwrap_or("unknown error")
                )),
            }
        }
        Command::Bookmark { command } => {
            // A Job name selects the cluster form: the operator, not the CLI, changes the
            // bookmark in status (brief §3), so the CLI only writes the request annotation.
            let cluster = match &command {
                BookmarkCommand::Reset {
                    name: Some(name),
                    namespace,
                    ..
                } => Some((name, namespace, control::bookmark_reset_patch())),
                BookmarkCommand::Rewind {
                    name: Some(name),
                    namespace,
                    to_run,
                    ..
                } => Some((name, namespace, control::bookmark_rewind_patch(to_run.as_deref()))),
                _ => None,
            };
            if let Some((name, namespace, patch)) = cluster {
                let (client, namespace) = control::connect(namespace.clone()).await.map_err(|e| e.to_string())?;
                control::bookmark(&client, &namespace, name, &patch)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(ExitCode::SUCCESS);
            }
            let path = match &command {
                BookmarkCommand::Show { bookmarks }
                | BookmarkCommand::Reset {
                    bookmarks: Some(bookmarks),
                    ..
                }
                | BookmarkCommand::Rewind {
                    bookmarks: Some(bookmarks),
                    ..
                } => bookmarks.clone(),
                _ => return Err("give a job (`bookmark reset job NAME`) or a file (`--bookmarks FILE`)".into()),
            };
            let mut file = BookmarkFile::load(&path).map_err(|e| e.to_string())?;
            match &command {
                BookmarkCommand::Show { .. } => {}
                BookmarkCommand::Reset { .. } => file.reset(),
                BookmarkCommand::Rewind {
                    to_run: Some(to_run), ..
                } => file.rewind(to_run, &path).map_err(|e| e.to_string())?,
                BookmarkCommand::Rewind { to_run: None, .. } => {
                    return Err("rewinding a bookmark file needs --to-run ID (`kglue bookmark show --bookmarks FILE` lists the runs)".into());
                }
            }
            if !matches!(command, BookmarkCommand::Show { .. }) {
                file.save(&path).map_err(|e| e.to_string())?;
            }
            println!("{}", serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Table {
            command: TableCommand::Ddl { name, catalog, dialect },
        } => {
            let catalog = DirCatalog::load(&catalog).map_err(|e| e.to_string())?;
            let ddl = catalog_table_ddl(&catalog, &name, dialect).map_err(|e| e.to_string())?;
            print!("{}", ddl.sql);
            for note in &ddl.notes {
                eprintln!("kglue: note: {note}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Success or failure as the process's exit code.
fn exit_code(succeeded: bool) -> ExitCode {
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `kglue attempt`: does the work, reports it, and exits 0 (Succeeded reported), 1 (Failed
/// reported) or 2 (nothing could be reported; stderr and the termination message say why).
async fn attempt(args: AttemptArgs) -> ExitCode {
    let attempt = Attempt {
        kind: args.kind.into(),
        name: args.name,
        run_id: args.run_id,
        attempt: args.attempt,
        arguments: args.arguments,
        worker_size: args.worker_size.map(Into::into),
        resources: args
            .cpus
            .zip(args.memory_gib)
            .map(|(cpu, memory_gib)| WorkerResources { cpu, memory_gib }),
        secrets_dir: args.secrets_dir,
        spill_dir: args.spill_dir,
        namespace: args.namespace,
        kubernetes_job: args.kubernetes_job,
        kubernetes_job_uid: args.kubernetes_job_uid,
    };
    // Write errors are ignored: outside a pod the file may not be writable, and the RunResult
    // is the report that counts.
    let write_summary = |text: &str| {
        let _ = std::fs::write(&args.termination_log, text);
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            let message = format!("Failed: cannot reach the API server to report: {error}");
            eprintln!("kglue: {message}");
            write_summary(&message);
            return ExitCode::from(2);
        }
    };
    let spec = run_attempt(&client, &attempt).await;
    let object = result_object(&attempt, spec.clone());
    // The report, in the log too, for whoever reads it after the RunResult is gone.
    match serde_json::to_string(&object.spec) {
        Ok(json) => println!("{json}"),
        Err(error) => eprintln!("kglue: cannot print the result: {error}"),
    }
    let reported = report(&client, &object).await;
    let report_error = reported.as_ref().err().map(ToString::to_string);
    write_summary(&termination_message(&spec, report_error.as_deref()));
    if let Some(error) = &spec.error {
        eprintln!(
            "kglue: {} {} run {} attempt {} failed: {error}",
            attempt.kind.as_str(),
            attempt.name,
            attempt.run_id,
            attempt.attempt
        );
    }
    match (report_error, spec.outcome) {
        (Some(error), _) => {
            eprintln!("kglue: {error}");
            ExitCode::from(2)
        }
        (None, AttemptOutcome::Succeeded) => ExitCode::SUCCESS,
        (None, AttemptOutcome::Failed) => ExitCode::from(1),
    }
}

/// A run id from the clock: sortable, unique per microsecond, and made of the characters output
/// file names allow.
fn new_run_id() -> String {
    let now = Timestamp::now();
    format!("run-{}-{:06}", now.strftime("%Y%m%dt%H%M%S"), now.subsec_microsecond())
}

/// The run result for people.
fn render_run(result: &RunResult) -> String {
    let mut text = format!(
        "run {} of job {}: {:?} in {:.2}s\n",
        result.run_id, result.job, result.outcome, result.duration_seconds
    );
    for (name, source) in &result.metrics.sources {
        text.push_str(&format!(
            "  source {name}: {} rows, {} objects, {} bytes read\n",
            source.rows, source.objects, source.bytes
        ));
    }
    for (name, sink) in &result.metrics.sinks {
        text.push_str(&format!(
            "  sink {name}: {} rows, {} files, {} bytes written, {} partitions added\n",
            sink.rows, sink.files, sink.bytes, sink.partitions_added
        ));
    }
    for table in &result.tables {
        text.push_str(&format!(
            "  table {}: {} ({} partitions added)\n",
            table.table, table.action, table.partitions_added
        ));
    }
    if !result.metrics.phase_seconds.is_empty() {
        let phases: Vec<String> = result
            .metrics
            .phase_seconds
            .iter()
            .map(|(phase, seconds)| format!("{phase} {seconds:.2}s"))
            .collect();
        text.push_str(&format!("  phases: {}\n", phases.join(", ")));
    }
    if let Some(next) = &result.next_bookmark {
        for (name, bookmark) in &next.sources {
            text.push_str(&format!(
                "  bookmark {name}: watermark {}, {} recent keys\n",
                bookmark.watermark.as_ref().map(|w| w.0.to_string()).unwrap_or_default(),
                bookmark.recent_keys.len()
            ));
        }
    }
    if let Some(error) = &result.error {
        text.push_str(&format!("  error: {error}\n"));
    }
    text
}
