//! Cluster commands: `kglue start|stop|runs|logs|resume KIND NAME`. They write the request
//! annotations of docs/runs.md and read status; [`kglue_runner::control::Cluster`] takes each to
//! the module that knows the kind.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kglue_runner::control::{Cluster, Console, ObjectKind, RunsOutput, StartOptions};

use super::{exit_code, parse_argument};

/// A Job, Crawler, Workflow or Trigger of the cluster.
#[derive(Args)]
pub struct Target {
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

impl From<Kind> for ObjectKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Job => ObjectKind::Job,
            Kind::Crawler => ObjectKind::Crawler,
            Kind::Workflow => ObjectKind::Workflow,
            Kind::Trigger => ObjectKind::Trigger,
        }
    }
}

/// `kglue start`.
#[derive(Args)]
pub struct StartArgs {
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
}

/// `kglue resume`.
#[derive(Args)]
pub struct ResumeArgs {
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
}

/// `kglue stop`.
#[derive(Args)]
pub struct StopArgs {
    #[command(flatten)]
    target: Target,
    /// The run id (see `kglue runs`).
    #[arg(long = "run")]
    run_id: String,
}

/// `kglue runs`.
#[derive(Args)]
pub struct RunsArgs {
    #[command(flatten)]
    target: Target,
    /// `table` for people, `json` for status.runs as it is.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// `kglue logs`.
#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    target: Target,
    /// The run id; default: the newest run.
    #[arg(long = "run")]
    run_id: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Aligned columns.
    Table,
    /// status.runs as JSON.
    Json,
}

/// Connects to the target's namespace and runs `command` with stdout and stderr as its console.
async fn on_cluster<T>(
    target: &Target,
    command: impl AsyncFnOnce(&Cluster, ObjectKind, &mut Console<'_>) -> Result<T, kglue_runner::control::ControlError>,
) -> anyhow::Result<T> {
    let cluster = Cluster::connect(target.namespace.clone()).await?;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut console = Console {
        out: &mut out,
        err: &mut err,
    };
    Ok(command(&cluster, target.kind.into(), &mut console).await?)
}

/// `kglue start`.
pub async fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    let options = StartOptions {
        request_id: args.request_id,
        arguments: args.arguments.into_iter().collect(),
        user: std::env::var("USER").ok(),
        wait: args.wait,
    };
    let name = &args.target.name;
    let succeeded = on_cluster(&args.target, async |cluster, kind, console| {
        cluster.start(kind, name, options, console).await
    })
    .await?;
    Ok(exit_code(succeeded))
}

/// `kglue resume`.
pub async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let name = &args.target.name;
    let succeeded = on_cluster(&args.target, async |cluster, kind, console| {
        cluster
            .resume(kind, name, &args.run_id, &args.nodes, args.wait, console)
            .await
    })
    .await?;
    Ok(exit_code(succeeded))
}

/// `kglue stop`.
pub async fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let name = &args.target.name;
    on_cluster(&args.target, async |cluster, kind, console| {
        cluster.stop(kind, name, &args.run_id, console).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `kglue runs`.
pub async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let output = match args.output {
        OutputFormat::Table => RunsOutput::Table,
        OutputFormat::Json => RunsOutput::Json,
    };
    let name = &args.target.name;
    on_cluster(&args.target, async |cluster, kind, console| {
        cluster.runs(kind, name, output, console).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `kglue logs`.
pub async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let name = &args.target.name;
    on_cluster(&args.target, async |cluster, kind, console| {
        cluster.logs(kind, name, args.run_id.as_deref(), console).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
