//! The node agent: plays the kubelet for one Node on the local control plane (no container
//! engine). It registers the Node, binds pending pods to it (there is no scheduler), runs each
//! container as a local process with its env and volumes, gives it a kubeconfig for the pod's own
//! service account, writes pod status, and kills pods that are deleted or past their deadline.
//!
//! The binary is `kglue-node-agent` (`src/bin/kglue-node-agent.rs`); tests start it through
//! [`crate::ControlPlane::start_node_agent`]. See `docs/local-control-plane.md`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, Config as ClientConfig};
use tokio::sync::watch as channel;

pub mod binder;
pub mod container;
pub mod kubelet;
pub mod logs;
pub mod model;
pub mod pod;
pub mod process;
pub mod registration;
pub mod resolve;
pub mod spec;

pub use spec::{ImageMap, ImageTarget};

/// What the agent is told to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// The agent's kubeconfig; `None` means `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Where pod directories go (`pods/<namespace>_<name>_<uid>`).
    pub state_dir: PathBuf,
    /// Image → executable.
    pub images: ImageMap,
    /// How often the Lease and the Ready heartbeat are renewed.
    pub heartbeat: Duration,
    /// The node's pod capacity.
    pub max_pods: u32,
    /// Port of the kubelet API (`kubectl logs`) on 127.0.0.1; 0 picks a free one. Either way the
    /// real port is published in the Node's `daemonEndpoints`.
    pub kubelet_port: u16,
    /// Container mode: images that no `--image`/`--host-image` maps are pulled from their registry
    /// and run under runc (see `container.rs`).
    pub containers: Option<ContainerTools>,
}

/// The programs container mode runs.
#[derive(Debug, Clone)]
pub struct ContainerTools {
    /// go-containerregistry's `crane`.
    pub crane: PathBuf,
    /// `runc`.
    pub runc: PathBuf,
}

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read.
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// The kubeconfig has no usable cluster entry.
    #[error("the kubeconfig has no cluster for its current context")]
    NoCluster,
    /// The kubelet API could not start.
    #[error(transparent)]
    Kubelet(#[from] kubelet::ServerError),
    /// The state directory could not be created.
    #[error("cannot create {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What [`connect`] learns from the kubeconfig.
struct Connection {
    client: Client,
    /// The cluster entry (server, CA) for pod kubeconfigs.
    cluster: serde_json::Value,
    /// The cluster's CA certificates (DER): kubelet API callers must present a client certificate
    /// signed by one of them. `kglue-cluster` signs every client certificate, the API server's
    /// kubelet client among them, with the CA that also signs its serving certificate.
    ca: Option<Vec<Vec<u8>>>,
}

/// Reads the kubeconfig and returns a client plus what else the agent needs from it.
async fn connect(config: &Config) -> Result<Connection, Error> {
    let kubeconfig = match &config.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)?,
        None => Kubeconfig::read()?,
    };
    let context_name = kubeconfig.current_context.clone().ok_or(Error::NoCluster)?;
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or(Error::NoCluster)?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or(Error::NoCluster)?;
    let mut entry = serde_json::Map::new();
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(value) = value {
            entry.insert(key.into(), value.clone().into());
        }
    };
    put("server", cluster.server.as_ref());
    put(
        "certificate-authority-data",
        cluster.certificate_authority_data.as_ref(),
    );
    put("certificate-authority", cluster.certificate_authority.as_ref());
    if cluster.insecure_skip_tls_verify == Some(true) {
        entry.insert("insecure-skip-tls-verify".into(), true.into());
    }
    let client_config = ClientConfig::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let ca = client_config.root_cert.clone();
    Ok(Connection {
        client: Client::try_from(client_config)?,
        cluster: serde_json::Value::Object(entry),
        ca,
    })
}

/// The running agent's handle for a clean stop.
pub struct Agent {
    client: Client,
    node: String,
    registry: process::Registry,
    containers: Option<Arc<container::Runtime>>,
}

impl Agent {
    /// Connects and registers the Node. Call [`Agent::run`] next.
    pub async fn start(config: Config) -> Result<(Agent, impl std::future::Future<Output = ()>), Error> {
        let pods_dir = config.state_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(|source| Error::StateDir { path: pods_dir, source })?;
        let Connection { client, cluster, ca } = connect(&config).await?;
        // Bound before the Node is registered, so the Node can name its real port.
        let kubelet = kubelet::Server::bind(config.kubelet_port, &config.node_name, ca.as_deref()).await?;
        tracing::info!(
            port = kubelet.port(),
            "kubelet API (containerLogs) listening on 127.0.0.1"
        );
        let capacity = registration::Capacity::of_this_machine(config.max_pods);
        registration::register(&client, &config.node_name, &capacity, kubelet.port()).await?;
        let log_index = logs::Index::default();
        registration::heartbeat(&client, &config.node_name).await?;
        let registry = process::Registry::default();
        let shared = Arc::new(pod::Shared {
            client: client.clone(),
            node: config.node_name.clone(),
            state_dir: config.state_dir.clone(),
            images: config.images.clone(),
            capacity,
            registry: registry.clone(),
            cluster,
            path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            logs: log_index.clone(),
            containers: config.containers.as_ref().map(|tools| {
                Arc::new(container::Runtime::new(
                    tools.crane.clone(),
                    tools.runc.clone(),
                    &config.state_dir,
                ))
            }),
        });
        let agent = Agent {
            client: client.clone(),
            node: config.node_name.clone(),
            registry,
            containers: shared.containers.clone(),
        };
        let labels = registration::node_labels(&config.node_name);
        let heartbeat = config.heartbeat;
        let node = config.node_name.clone();
        let work = async move {
            let beat = {
                let client = client.clone();
                let node = node.clone();
                async move {
                    let mut ticker = tokio::time::interval(heartbeat);
                    loop {
                        ticker.tick().await;
                        if let Err(error) = registration::heartbeat(&client, &node).await {
                            tracing::warn!(%error, "node heartbeat failed");
                        }
                    }
                }
            };
            tokio::join!(
                beat,
                binder::run(client.clone(), node.clone(), labels),
                run_pods(shared),
                kubelet.serve(log_index)
            );
        };
        Ok((agent, work))
    }

    /// Kills every container process (SIGTERM, then SIGKILL after `grace`) and marks the node
    /// NotReady.
    pub async fn shutdown(&self, grace: Duration) {
        self.registry.kill_all(grace).await;
        if let Some(containers) = &self.containers {
            containers.clean_up();
        }
        registration::mark_not_ready(&self.client, &self.node).await;
    }
}

/// Watches the pods bound to this node and hands each one (by uid) to its own worker task, which
/// sees every later version of the pod and learns when it is deleted.
async fn run_pods(shared: Arc<pod::Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.node);
    let mut events = watch(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, channel::Sender<Option<Pod>>> = HashMap::new();
    let mut relisted: Option<Vec<String>> = None;
    let deliver = |workers: &mut HashMap<String, channel::Sender<Option<Pod>>>, pod: Pod| {
        let Some(uid) = pod.metadata.uid.clone() else {
            return uid_missing();
        };
        match workers.get(&uid) {
            Some(sender) => {
                sender.send_replace(Some(pod));
            }
            None => {
                let (sender, receiver) = channel::channel(Some(pod));
                tokio::spawn(pod::run(shared.clone(), receiver));
                workers.insert(uid.clone(), sender);
            }
        }
        uid
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod)) => {
                deliver(&mut workers, pod);
            }
            Ok(Event::Init) => relisted = Some(Vec::new()),
            Ok(Event::InitApply(pod)) => {
                let uid = deliver(&mut workers, pod);
                if let Some(seen) = relisted.as_mut() {
                    seen.push(uid);
                }
            }
            Ok(Event::InitDone) => {
                // Pods deleted while the watch was down are not in the new list.
                if let Some(seen) = relisted.take() {
                    workers.retain(|uid, sender| {
                        let keep = seen.contains(uid);
                        if !keep {
                            sender.send_replace(None);
                        }
                        keep
                    });
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(sender) = pod.metadata.uid.as_ref().and_then(|uid| workers.remove(uid)) {
                    sender.send_replace(None);
                }
            }
            Err(error) => tracing::warn!(%error, "watching this node's pods failed; retrying"),
        }
    }
}

fn uid_missing() -> String {
    tracing::warn!("a pod without a uid; ignored");
    String::new()
}
