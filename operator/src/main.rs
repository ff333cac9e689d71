//! `kglue-operator`: runs the kglue controllers once it leads, serves health and metrics, and
//! stops cleanly on SIGTERM/SIGINT (finishing in-flight reconciles and releasing its Lease).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::FutureExt;
use futures::future::FusedFuture;
use kglue_operator::context::Context;
use kglue_operator::controllers;
use kglue_operator::health::{self, HealthState};
use kglue_operator::leader::{LeaderConfig, LeaderError, Leadership};
use kglue_operator::metrics::Metrics;
use kube::Client;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// How long in-flight reconciles may take to finish after a shutdown request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long releasing the Lease may take on shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Log line format.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Plain,
}

/// The kglue operator: reconciles kglue.dev objects and reports their state in status.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The kubeconfig to use. Unset: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "KGLUE_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,

    /// Watch only this namespace. Unset: all namespaces.
    #[arg(long, env = "KGLUE_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Take part in leader election on a Lease, so that only one replica reconciles. Turn it off
    /// only when exactly one replica runs.
    #[arg(long, env = "KGLUE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// The Lease's name.
    #[arg(long, default_value = "kglue-operator")]
    lease_name: String,

    /// The Lease's namespace (in a pod: its own namespace through the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// How long the Lease is valid after its last renewal: a standby takes over at most this long
    /// after the leader stopped renewing (on a clean shutdown it takes over at once).
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,

    /// How long before the Lease expires the leader renews it.
    #[arg(long, default_value_t = 5)]
    renew_before_seconds: u64,

    /// This replica's identity in the Lease and in Events. Default: the pod name ($POD_NAME) or
    /// the host name, with the process id.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Log format.
    #[arg(long, env = "KGLUE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,

    /// The runner image of run attempts (the `kglue` binary is its entrypoint).
    #[arg(long, env = "KGLUE_RUNNER_IMAGE", default_value = concat!("ghcr.io/kglue/kglue-runner:", env!("CARGO_PKG_VERSION")))]
    runner_image: String,

    /// The service account of run attempts, in each run's namespace (docs/runs.md lists its Role).
    #[arg(long, env = "KGLUE_RUNNER_SERVICE_ACCOUNT", default_value = "kglue-runner")]
    runner_service_account: String,

    /// Seconds a finished attempt's Kubernetes Job, pod (and log) and RunResult are kept.
    #[arg(long, default_value_t = 86400)]
    run_ttl_seconds: i32,

    /// Where a streaming attempt's runner serves its Prometheus metrics (`/metrics`), inside its
    /// pod; the pod declares the port as `metrics` for a PodMonitor. Empty: no endpoint.
    #[arg(long, env = "KGLUE_STREAM_METRICS_ADDRESS", default_value = "0.0.0.0:9464")]
    stream_metrics_address: String,

    /// Seconds before the first retry of a failed attempt; each further retry doubles it (at most
    /// 300).
    #[arg(long, default_value_t = 10.0)]
    retry_backoff_seconds: f64,

    /// The CPU and memory of worker sizes, as JSON: `{"Small":{"cpu":1,"memoryGiB":4}}`. Sizes not
    /// named keep their defaults (Small 1/2, Medium 2/8, Large 4/16, XLarge 8/32).
    #[arg(long, env = "KGLUE_WORKER_SIZES", value_parser = kglue_operator::settings::WorkerSizes::parse)]
    worker_sizes: Option<kglue_operator::settings::WorkerSizes>,

    /// How many objects of one kind are reconciled at once (0: no limit). Every reconcile reads
    /// from the operator's own caches; this bounds the status writes and run actions in flight.
    #[arg(long, env = "KGLUE_RECONCILE_CONCURRENCY", default_value_t = kglue_operator::context::DEFAULT_CONCURRENCY)]
    reconcile_concurrency: u16,

    /// A local folder `file://` locations may use: a volume mounted into the operator's and the
    /// runner pods at the same path. Repeatable. Without any, every `file://` location is refused
    /// (`LocalPathRefused`): a run's own files (its token, mounted Secrets) are no data source.
    #[arg(long = "allow-local-path")]
    allow_local_paths: Vec<PathBuf>,

    /// Do not start runs (start requests stay pending): for a replica that should only validate.
    #[arg(long)]
    no_runs: bool,

    /// Print something instead of running.
    #[command(subcommand)]
    command: Option<Command>,

    /// Shut down (as on SIGTERM) once the process with this id is gone. For tests, so that an
    /// operator started by a killed test does not outlive it.
    #[arg(long, hide = true)]
    owner_pid: Option<u32>,
}

/// What to print instead of running.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print the runner's ServiceAccount, Role (each rule commented with why) and RoleBinding for
    /// a namespace that runs pipelines: `kglue-operator runner-rbac -n lake | kubectl apply -f -`.
    RunnerRbac {
        /// The namespace.
        #[arg(short, long)]
        namespace: String,
        /// The name of the three objects (the operator's --runner-service-account).
        #[arg(long, default_value = kglue_operator::rbac::RUNNER)]
        name: String,
    },
    /// Print the ValidatingAdmissionPolicy that lets only an attempt's own pod create its
    /// RunResult (the chart ships it; bind it to the namespaces that run pipelines).
    AdmissionPolicy,
}

/// Why the operator stopped other than on request.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serve health and metrics on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("lost the leader Lease; exiting so that a restart rejoins the election as a standby")]
    LostLease,
    #[error("the controllers stopped unexpectedly")]
    ControllersEnded,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Command::RunnerRbac { namespace, name }) => {
            print!("{}", kglue_operator::rbac::runner_yaml(name, namespace));
            return ExitCode::SUCCESS;
        }
        Some(Command::AdmissionPolicy) => {
            print!("{}", kglue_operator::admission::policy_yaml());
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "kglue-operator failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// The API client; every request it sends is counted in `kglue_operator_api_requests_total`.
async fn client(args: &Args, metrics: Arc<Metrics>) -> Result<Client, MainError> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.map_err(kube::Error::InferConfig)?,
    };
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&kglue_operator::metrics::count_requests(metrics))
        .build())
}

fn identity(args: &Args) -> String {
    let host = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "kglue-operator".into());
    // Two replicas on one host (the local control plane) share a host name; the pid tells them apart.
    format!("{host}-{}", std::process::id())
}

/// Sets `stop` on the first SIGTERM or SIGINT.
fn watch_signals(stop: watch::Sender<bool>) -> Result<(), MainError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(MainError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(MainError::Signals)?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        let _ = stop.send(true);
    });
    Ok(())
}

/// Sets `stop` once process `pid` has exited (Linux: its `/proc` entry is gone).
fn watch_owner(pid: u32, stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        while proc_dir.exists() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!(pid, "the owner process is gone; shutting down");
        let _ = stop.send(true);
    });
}

/// Why the leading phase ended.
enum Outcome {
    Shutdown,
    LostLease,
    ControllersEnded,
}

async fn run(args: Args) -> Result<(), MainError> {
    let (stop_tx, mut stop) = watch::channel(false);
    watch_signals(stop_tx.clone())?;
    if let Some(pid) = args.owner_pid {
        watch_owner(pid, stop_tx.clone());
    }

    let metrics = Arc::new(Metrics::new());
    let health_state = Arc::new(HealthState::new(metrics.clone()));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| MainError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(args.metrics_addr);
    tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    let health_task = tokio::spawn(health::serve(listener, health_state.clone(), stop.clone()));

    let client = client(&args, metrics.clone()).await?;
    let identity = identity(&args);
    let mut leadership = if args.leader_elect {
        let config = LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_before: Duration::from_secs(args.renew_before_seconds),
        };
        tracing::info!(lease = %config.lease_name, namespace = %config.namespace, %identity, "joining leader election");
        Some(Leadership::start(client.clone(), &config).await?)
    } else {
        None
    };
    health_state.ready.store(true, Ordering::Release);

    let stopped_as_standby = match leadership.as_mut() {
        Some(leadership) => tokio::select! {
            acquired = leadership.acquired() => { acquired?; false }
            _ = stop.wait_for(|s| *s) => true,
        },
        None => false,
    };
    if stopped_as_standby {
        tracing::info!("stopping as a standby");
        return finish(leadership, stop_tx, health_task, Ok(())).await;
    }
    tracing::info!(%identity, "leading: starting the controllers");
    metrics.set_leader(true);

    let mut context = Context::new(client, metrics.clone(), args.namespace.clone(), Some(identity))
        .with_concurrency(args.reconcile_concurrency)
        .with_local_paths(args.allow_local_paths.clone());
    if !args.no_runs {
        context = context.with_runner(kglue_operator::settings::RunnerSettings {
            image: args.runner_image.clone(),
            service_account: args.runner_service_account.clone(),
            ttl_seconds: args.run_ttl_seconds,
            retry_backoff: Duration::from_secs_f64(args.retry_backoff_seconds.clamp(0.0, 300.0)),
            worker_sizes: args.worker_sizes.unwrap_or_default(),
            local_paths: args.allow_local_paths.clone(),
            stream_metrics_address: Some(args.stream_metrics_address.clone()).filter(|a| !a.is_empty()),
        });
    }
    let ctx = Arc::new(context);
    let (controllers_stop_tx, controllers_stop) = watch::channel(false);
    let controllers = controllers::run_all(ctx, controllers_stop).fuse();
    tokio::pin!(controllers);
    let ended = {
        let lost = async {
            match leadership.as_mut() {
                Some(leadership) => leadership.lost().await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut controllers => Outcome::ControllersEnded,
            _ = stop.wait_for(|s| *s) => Outcome::Shutdown,
            _ = lost => Outcome::LostLease,
        }
    };
    // Stop reconciling first, then give up the Lease: the next leader must not overlap with us.
    let _ = controllers_stop_tx.send(true);
    if !controllers.is_terminated() && tokio::time::timeout(DRAIN_TIMEOUT, &mut controllers).await.is_err() {
        tracing::warn!("in-flight reconciles did not finish within {DRAIN_TIMEOUT:?}");
    }
    metrics.set_leader(false);
    let result = match ended {
        Outcome::Shutdown => Ok(()),
        Outcome::LostLease => Err(MainError::LostLease),
        Outcome::ControllersEnded => Err(MainError::ControllersEnded),
    };
    finish(leadership, stop_tx, health_task, result).await
}

/// Releases the Lease (if held), stops the health endpoint, and returns `result`.
async fn finish(
    leadership: Option<Leadership>,
    stop_tx: watch::Sender<bool>,
    health_task: tokio::task::JoinHandle<()>,
    result: Result<(), MainError>,
) -> Result<(), MainError> {
    if let Some(leadership) = leadership {
        match leadership.release(RELEASE_TIMEOUT).await {
            Ok(()) => tracing::info!("released the Lease"),
            Err(error) => tracing::warn!(%error, "releasing the Lease failed; a standby takes over when it expires"),
        }
    }
    let _ = stop_tx.send(true);
    let _ = health_task.await;
    result
}
