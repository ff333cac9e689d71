//! Local commands: `kglue crawl`, `kglue run`, `kglue table ddl`. `kglue crawl --namespace`
//! crawls against a namespace of the cluster instead of a directory, with the same driver.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use kglue_crds::protocol::attempt::{SECRETS_DIR, SECRETS_DIR_ENV, SPILL_DIR_ENV};
use kglue_crds::run_result::RunOwnerKind;
use kglue_runner::catalog::DirCatalog;
use kglue_runner::cluster::ClusterCatalog;
use kglue_runner::crawl::{crawl as crawl_catalog, render};
use kglue_runner::ddl::{Dialect, catalog_table_ddl};
use kglue_runner::etl::run::RunOutcome;
use kglue_runner::etl::stream_metrics::{self, StreamMetrics};
use kglue_runner::local::{LocalRun, LocalRunOutput, crawl_dir, read_crawler, read_job, render_run};
use kglue_runner::storage::{Credentials, SecretsDir};
use kube::ResourceExt;

use super::parse_argument;

/// `kglue crawl`.
#[derive(Args)]
pub struct CrawlArgs {
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
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
}

/// `kglue run`.
#[derive(Args)]
pub struct RunArgs {
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
    #[arg(long, env = SPILL_DIR_ENV)]
    spill_dir: Option<PathBuf>,
    /// Where the Secrets that Connections refer to are: one folder per Secret, one file per key.
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
    /// Spread the run's plans over this many executor processes on this machine (`kglue
    /// executor`), with an Apache Ballista scheduler in this process: each sink's plan is cut into
    /// stages at its shuffles and every task writes its rows as staged files, which the run
    /// commits as it always does. 1 (the default): the plans execute in this process alone.
    /// Batch jobs only; see docs/scaling.md.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// A streaming job: stop once the topic is read to the ends it had when the stream started
    /// (Spark's Trigger.AvailableNow). Without it the stream runs until Ctrl-C.
    #[arg(long)]
    until_caught_up: bool,
    /// A streaming job: stop after this many batches.
    #[arg(long)]
    max_batches: Option<u64>,
    /// A streaming job: serve Prometheus metrics (`/metrics`) on this address, e.g.
    /// `127.0.0.1:9464` (port 0: a free one, printed on stderr).
    #[arg(long)]
    metrics_address: Option<String>,
}

/// `kglue connection`.
#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Connect to a database Connection (jdbc) as a run would — its URL, the user and password
    /// from its Secret, its TLS mode and timeouts — and print what was reached (server version,
    /// user, database, TLS) or why not. Exits 1 when it is not reached.
    Test {
        /// The Connection's name.
        name: String,
        /// The directory of Connection manifests to find it in.
        #[arg(long, required_unless_present = "namespace", conflicts_with = "namespace")]
        catalog: Option<PathBuf>,
        /// Find it in this namespace of the current cluster instead; its Secrets are read with
        /// your credentials, and the database is reached from where this command runs.
        #[arg(short, long)]
        namespace: Option<String>,
        /// With --catalog: where the Secrets that Connections refer to are, one folder per
        /// Secret, one file per key.
        #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
        secrets_dir: PathBuf,
    },
}

/// Tests a Connection and prints what it reached.
pub async fn connection(command: ConnectionCommand) -> anyhow::Result<ExitCode> {
    let ConnectionCommand::Test {
        name,
        catalog,
        namespace,
        secrets_dir,
    } = command;
    let reached = match (catalog, namespace) {
        (Some(catalog), _) => kglue_runner::connections::test_in_dir(&catalog, &name, &SecretsDir(secrets_dir)).await?,
        (None, Some(namespace)) => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| anyhow!("cannot reach the cluster: {e}"))?;
            kglue_runner::connections::test_in_cluster(client, &namespace, &name).await?
        }
        (None, None) => return Err(anyhow!("give --catalog DIR or --namespace NAMESPACE")),
    };
    println!("{reached}");
    Ok(ExitCode::SUCCESS)
}

/// `kglue table`.
#[derive(Subcommand)]
pub enum TableCommand {
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

/// Crawls against a directory or a namespace and prints the plan or outcome.
pub async fn crawl(args: CrawlArgs) -> anyhow::Result<ExitCode> {
    let crawler = read_crawler(&args.file)?;
    let credentials = Credentials::from_process(SecretsDir(args.secrets_dir));
    let plan = match (args.catalog, args.namespace) {
        (Some(catalog), _) => crawl_dir(&crawler, &catalog, credentials, args.dry_run).await?,
        (None, Some(namespace)) => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| anyhow!("cannot reach the cluster: {e}"))?;
            let mut catalog =
                ClusterCatalog::read(client, &namespace, RunOwnerKind::Crawler, &crawler.name_any()).await?;
            crawl_catalog(&crawler, &mut catalog, credentials, args.dry_run).await?
        }
        (None, None) => return Err(anyhow!("give --catalog DIR or --namespace NAMESPACE")),
    };
    print!("{}", render(&plan, &crawler, args.dry_run));
    Ok(ExitCode::SUCCESS)
}

/// Runs a Job locally and prints its result (or, with `--explain`, its plan).
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let job = read_job(&args.file)?;
    if job.spec.streaming.is_some() && !args.explain {
        return stream(job, args).await;
    }
    let output = kglue_runner::local::run_job(
        LocalRun {
            job,
            catalog: args.catalog,
            arguments: args.arguments.into_iter().collect(),
            bookmarks: args.bookmarks,
            run_id: args.run_id,
            attempt: args.attempt,
            spill_dir: args.spill_dir,
            secrets_dir: args.secrets_dir,
            workers: usize::from(args.workers),
        },
        args.explain,
    )
    .await?;
    let result = match output {
        LocalRunOutput::Explained(plan) => {
            print!("{plan}");
            return Ok(ExitCode::SUCCESS);
        }
        LocalRunOutput::Ran(result) => result,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).context("printing the run result")?
        );
    } else {
        print!("{}", render_run(&result));
    }
    match result.outcome {
        RunOutcome::Succeeded => Ok(ExitCode::SUCCESS),
        RunOutcome::Failed => Err(anyhow!(
            "run {} failed: {}",
            result.run_id,
            result.error.as_deref().unwrap_or("unknown error")
        )),
        RunOutcome::Unfinished => Err(anyhow!(
            "run {} is unfinished: {}; run it again with --run-id {} to finish it",
            result.run_id,
            result.error.as_deref().unwrap_or("unknown error"),
            result.run_id
        )),
    }
}

/// Runs a streaming job, printing a line per committed batch, until Ctrl-C or SIGTERM (which stop
/// it after the batch in progress), `--until-caught-up` or `--max-batches`.
async fn stream(job: kglue_crds::Job, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.workers > 1 {
        return Err(anyhow!(
            "--workers {}: a streaming job's batches run in one process (--workers is for batch jobs)",
            args.workers
        ));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Ctrl-C, or SIGTERM (a pod being deleted), stops the stream after the batch in progress.
    tokio::spawn(async move {
        kglue_runner::etl::stream::terminated().await;
        eprintln!("kglue: stopping after the batch in progress");
        let _ = stop.send(true);
    });
    let json = args.json;
    let metrics = Arc::new(StreamMetrics::new(&job.name_any()));
    if let Some(address) = &args.metrics_address {
        let bound = stream_metrics::start(address, metrics.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        eprintln!("kglue: serving the stream's metrics on http://{bound}/metrics");
    }
    let summary = kglue_runner::local::run_stream(
        LocalRun {
            job,
            catalog: args.catalog,
            arguments: args.arguments.into_iter().collect(),
            bookmarks: None,
            run_id: None,
            attempt: args.attempt,
            spill_dir: args.spill_dir,
            secrets_dir: args.secrets_dir,
            workers: 1,
        },
        args.until_caught_up,
        args.max_batches,
        stopped,
        |batch| {
            metrics.batch(batch);
            if json {
                if let Ok(line) = serde_json::to_string(batch) {
                    println!("{line}");
                }
            } else {
                let lag: i64 = batch.lag.values().sum();
                println!(
                    "batch {} ({}): {} records, {} bad, {} bytes; lag {lag}; {:.2}s",
                    batch.batch, batch.run_id, batch.records, batch.bad_records, batch.bytes, batch.seconds
                );
            }
        },
        |problem| {
            metrics.problem(problem);
            match problem {
                Some(problem) => eprintln!("kglue: {problem}; retrying"),
                None => eprintln!("kglue: Kafka answers again"),
            }
        },
    )
    .await?;
    if !json {
        println!(
            "stream stopped after {} batches, {} records; offsets {:?}",
            summary.batches, summary.records, summary.offsets
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a table's DDL for another engine; notes go to stderr.
pub fn table(command: TableCommand) -> anyhow::Result<ExitCode> {
    let TableCommand::Ddl { name, catalog, dialect } = command;
    let catalog = DirCatalog::load(&catalog)?;
    let ddl = catalog_table_ddl(&catalog, &name, dialect)?;
    print!("{}", ddl.sql);
    for note in &ddl.notes {
        eprintln!("kglue: note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}
