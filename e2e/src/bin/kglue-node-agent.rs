//! `kglue-node-agent`: plays the kubelet for one Node of the local control plane, running pods'
//! containers as local processes. See `docs/local-control-plane.md` ("The node agent").

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kglue_e2e::node::{Agent, Config, ContainerTools, ImageMap, ImageTarget, process};
use tokio::signal::unix::{SignalKind, signal};

/// Plays the kubelet for one Node: registers it, binds pending pods to it, runs their containers
/// as local processes (images mapped to executables), writes pod status, kills deleted pods.
#[derive(Debug, Parser)]
#[command(name = "kglue-node-agent", version)]
struct Args {
    /// The Node's name.
    #[arg(long, default_value = "kglue-node")]
    node_name: String,
    /// The agent's kubeconfig (default: $KUBECONFIG, then ~/.kube/config). Needs rights on nodes,
    /// leases, pods (+binding, +status), secrets, configmaps and serviceaccounts/token.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Directory for pod directories (`pods/<namespace>_<name>_<uid>/`: volumes, logs, kubeconfig).
    #[arg(long, default_value = "/tmp/kglue-node-agent")]
    state_dir: PathBuf,
    /// IMAGE=PATH: containers of IMAGE run the executable PATH (its entrypoint). A mapping without
    /// a tag matches every tag of that image. Repeatable.
    #[arg(long = "image", value_name = "IMAGE=PATH", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// IMAGE whose containers run their `command`/`args` as given, on the host (for `sh`,
    /// `kubectl`…). Repeatable.
    #[arg(long = "host-image", value_name = "IMAGE")]
    host_images: Vec<String>,
    /// Container mode: every image that --image and --host-image do not map is pulled from its
    /// registry (with --crane) and its containers run inside it under runc (--runc), as a kubelet
    /// runs them. Needs root.
    #[arg(long, requires_all = ["crane", "runc"])]
    run_images: bool,
    /// go-containerregistry's `crane`, for --run-images.
    #[arg(long, value_name = "PATH")]
    crane: Option<PathBuf>,
    /// `runc`, for --run-images.
    #[arg(long, value_name = "PATH")]
    runc: Option<PathBuf>,
    /// Stop (killing every container) when this process exits; tests pass their own pid.
    #[arg(long)]
    owner_pid: Option<i32>,
    /// Seconds between Lease renewals and Ready heartbeats.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// How many pods the node admits (its `pods` capacity).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Seconds between SIGTERM and SIGKILL for containers when the agent itself stops.
    #[arg(long, default_value_t = 5)]
    shutdown_grace_seconds: u64,
    /// Port of the kubelet API (`kubectl logs`), on 127.0.0.1 only. 0 (the default) picks a free
    /// port, so agents of several clusters never collide; the Node's daemonEndpoints names it.
    #[arg(long, default_value_t = 0)]
    kubelet_port: u16,
}

fn parse_image(value: &str) -> Result<(String, PathBuf), String> {
    let (image, path) = value
        .split_once('=')
        .ok_or_else(|| format!("expected IMAGE=PATH, got {value:?}"))?;
    if image.is_empty() || path.is_empty() {
        return Err(format!("expected IMAGE=PATH, got {value:?}"));
    }
    let path = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
    Ok((image.to_string(), path))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kglue-node-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut images = ImageMap::default();
    for (image, path) in &args.images {
        images.insert(image, ImageTarget::Executable(path.clone()));
    }
    for image in &args.host_images {
        images.insert(image, ImageTarget::Host);
    }
    let containers = match (args.run_images, &args.crane, &args.runc) {
        (true, Some(crane), Some(runc)) => Some(ContainerTools {
            crane: std::path::absolute(crane)?,
            runc: std::path::absolute(runc)?,
        }),
        _ => None,
    };
    if images.is_empty() && containers.is_none() {
        tracing::warn!("no --image or --host-image given: every pod will fail with ImageNotMapped");
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let config = Config {
        node_name: args.node_name.clone(),
        kubeconfig: args.kubeconfig.clone(),
        state_dir: std::path::absolute(&args.state_dir)?,
        images,
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        max_pods: args.max_pods,
        kubelet_port: args.kubelet_port,
        containers,
    };
    let (agent, work) = Agent::start(config).await?;
    tracing::info!(node = args.node_name, state_dir = %args.state_dir.display(), "node agent ready");
    let owner_gone = async {
        match args.owner_pid {
            Some(owner) => {
                while process::process_alive(owner) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tracing::info!(owner, "owner process is gone; stopping");
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = work => tracing::warn!("the agent's watches ended"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        () = owner_gone => {}
    }
    agent.shutdown(Duration::from_secs(args.shutdown_grace_seconds)).await;
    Ok(())
}
