//! `kglue`: run kglue's data plane from a terminal or inside a Kubernetes Job. The same
//! manifests as in the cluster; a directory of Database/Table manifests stands in for the catalog.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kglue_runner::catalog::DirCatalog;
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
    about = "kglue: AWS Glue's crawlers and jobs, as Kubernetes resources"
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
    /// Show, reset or rewind a job bookmark kept in a file by `kglue run --bookmarks`.
    Bookmark {
        #[command(subcommand)]
        command: BookmarkCommand,
    },
    /// Work with the tables of a catalog directory.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

#[derive(Subcommand)]
enum BookmarkCommand {
    /// Print the bookmark and the runs it can be rewound to.
    Show {
        /// The bookmark file.
        #[arg(long)]
        bookmarks: PathBuf,
    },
    /// Forget the bookmark: the next run reads everything.
    Reset {
        /// The bookmark file.
        #[arg(long)]
        bookmarks: PathBuf,
    },
    /// Move the bookmark back to where a run started: the next run reads again what that run
    /// and later ones read.
    Rewind {
        /// The bookmark file.
        #[arg(long)]
        bookmarks: PathBuf,
        /// The run to rewind to.
        #[arg(long)]
        to_run: String,
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
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kglue: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kglue: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
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
            Ok(())
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
                    return Ok(());
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
                RunOutcome::Succeeded => Ok(()),
                RunOutcome::Failed => Err(format!(
                    "run {} failed: {}",
                    result.run_id,
                    result.error.as_deref().unwrap_or("unknown error")
                )),
            }
        }
        Command::Bookmark { command } => {
            let (path, action) = match &command {
                BookmarkCommand::Show { bookmarks } => (bookmarks, "show"),
                BookmarkCommand::Reset { bookmarks } => (bookmarks, "reset"),
                BookmarkCommand::Rewind { bookmarks, .. } => (bookmarks, "rewind"),
            };
            let mut file = BookmarkFile::load(path).map_err(|e| e.to_string())?;
            match &command {
                BookmarkCommand::Show { .. } => {}
                BookmarkCommand::Reset { .. } => file.reset(),
                BookmarkCommand::Rewind { to_run, .. } => file.rewind(to_run, path).map_err(|e| e.to_string())?,
            }
            if action != "show" {
                file.save(path).map_err(|e| e.to_string())?;
            }
            println!("{}", serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?);
            Ok(())
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
            Ok(())
        }
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
