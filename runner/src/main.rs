//! `kglue`: run kglue's data plane from a terminal or inside a Kubernetes Job. The same
//! manifests as in the cluster; a directory of Database/Table manifests stands in for the catalog.
//!
//! This file is the whole of the binary's logic: parse the command line (definitions in [`cli`],
//! grouped as local commands, cluster commands and the pod's `attempt`), start the runtime, run
//! the command and turn its outcome into an exit code. The work is the library's.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::{attempt, bookmark, cluster, executor, local, serve, sql};

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
    Crawl(local::CrawlArgs),
    /// Run a Job manifest: read its sources (only what its bookmark has not seen, when enabled),
    /// run its SQL, write its sinks and update the catalog directory. Prints the run result.
    Run(local::RunArgs),
    /// Show, reset or rewind a job bookmark: in the cluster (`bookmark reset job NAME`), or in a
    /// file kept by `kglue run --bookmarks` (`bookmark reset --bookmarks FILE`).
    Bookmark {
        #[command(subcommand)]
        command: bookmark::BookmarkCommand,
    },
    /// Start a run of a Job, a crawl of a Crawler or a Workflow run, or fire a Trigger, in the
    /// cluster (annotation run.kglue.dev/<request-id>); prints the request id and, once the
    /// operator recorded it, the run id (for a trigger: what it started).
    Start(cluster::StartArgs),
    /// Run the failed nodes of a finished workflow run again (or the nodes named with --node),
    /// with everything downstream of them; upstream nodes that succeeded are not run again
    /// (annotation resume.kglue.dev/<run-id>).
    Resume(cluster::ResumeArgs),
    /// Stop a run in the cluster (annotation stop.kglue.dev/<run-id>).
    Stop(cluster::StopArgs),
    /// List the runs of a Job, Crawler or Workflow (status.runs), or a Trigger's fires, newest
    /// first.
    Runs(cluster::RunsArgs),
    /// Print the log of a run's newest attempt, read from its pod (or, when the log cannot be
    /// read, the pod's termination message).
    Logs(cluster::LogsArgs),
    /// Run one attempt of a Job run or a crawl inside its Kubernetes Job and report it as a
    /// RunResult (the operator starts this; see docs/runs.md). Exits 0 after a Succeeded report,
    /// 1 after a Failed one, 2 when nothing could be reported.
    Attempt(kglue_crds::protocol::attempt::AttemptArgs),
    /// Test a database Connection: connect as a run would and report what was reached.
    Connection {
        #[command(subcommand)]
        command: local::ConnectionCommand,
    },
    /// Query the catalog with SQL, read-only: a prompt (line editing, history, \\d, \\timing,
    /// \\q), or one-shot with -c or -f. Every Database is a schema, every Table a table.
    Sql(sql::SqlArgs),
    /// Serve the catalog over the PostgreSQL wire protocol, read-only, for psql, JDBC and BI
    /// tools (what a Session's pod runs): one user, a password from $KGLUE_SESSION_PASSWORD
    /// checked with SCRAM-SHA-256, the catalog read again before each statement.
    Serve(serve::ServeCliArgs),
    /// Serve as one executor of a distributed run: started by `kglue run --workers N` (it stops
    /// when its stdin closes) or as an executor pod of a Job with `workers` (it stops once the
    /// run's scheduler is gone), it runs the tasks the run's scheduler hands it.
    Executor(kglue_crds::protocol::executor::ExecutorCommand),
    /// Work with the tables of a catalog directory.
    Table {
        #[command(subcommand)]
        command: local::TableCommand,
    },
}

/// mimalloc rather than glibc's malloc: see its entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A panic in the engine is caught where a run is driven and becomes a Failed result (see
    // kglue_runner::etl::run); say where it happened in one line, with a backtrace only when asked
    // for (RUST_BACKTRACE), rather than the default report meant for crashes.
    std::panic::set_hook(Box::new(|info| {
        let message = kglue_runner::etl::inspect::panic_message(info.payload());
        let location = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
        eprintln!("kglue: internal error{location}: {message}");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
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
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            // The outermost message names what failed and already carries its causes' words.
            eprintln!("kglue: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Attempt(args) => Ok(attempt::run(args).await),
        Command::Crawl(args) => local::crawl(args).await,
        Command::Run(args) => local::run(args).await,
        Command::Executor(args) => executor::executor(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Table { command } => local::table(command),
        Command::Connection { command } => local::connection(command).await,
        Command::Bookmark { command } => bookmark::run(command).await,
        Command::Start(args) => cluster::start(args).await,
        Command::Resume(args) => cluster::resume(args).await,
        Command::Stop(args) => cluster::stop(args).await,
        Command::Runs(args) => cluster::runs(args).await,
        Command::Logs(args) => cluster::logs(args).await,
    }
}
