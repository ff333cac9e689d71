//! Test support for kglue's end-to-end tests: a real local Kubernetes control plane started by
//! `e2e/kglue-cluster`, a real S3-compatible server started by `e2e/kglue-s3` ([`S3Server`]), and
//! helpers to load and apply manifests.
//!
//! Each test binary starts its own control plane (its own state directory and ports), so test
//! binaries and a person's `kglue-cluster start` never collide, and stops it when the guard is
//! dropped. `kglue-cluster start --owner-pid` also makes the cluster stop itself if the test process
//! dies without dropping the guard (killed, or aborted by a timeout).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Api, Client, Config};
use serde_json::Value;

pub mod clients;
pub mod databases;
pub mod harness;
pub mod images;
pub mod kafka;
pub mod node;
pub mod s3;
pub use s3::S3Server;

/// What can go wrong while setting up a test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `kglue-cluster` or `kglue-s3` failed; the output says why.
    #[error("`{script} {command}` failed ({status}):\n{output}")]
    Script {
        /// The script's name.
        script: String,
        /// The subcommand.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// An `object_store` client could not be built.
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
    /// A process could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        /// What was being run.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No free ports were found for the control plane or the S3 server.
    #[error("no free loopback ports found for the control plane or the S3 server")]
    NoFreePorts,
    /// Manifests could not be read.
    #[error(transparent)]
    Manifests(#[from] kglue_runner::catalog::CatalogError),
    /// A manifest lacks apiVersion or kind, or names a kind the server does not serve.
    #[error("{0}")]
    Manifest(String),
    /// The Kubernetes client failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be loaded.
    #[error(transparent)]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    kglue_crds::crate_dir!()
        .parent()
        .expect("the e2e crate lives one level below the repository root")
        .to_path_buf()
}

/// How many consecutive loopback ports one control plane uses (see `e2e/kglue-cluster`).
const PORTS_PER_CLUSTER: u16 = 5;

/// A running control plane: etcd, kube-apiserver and kube-controller-manager as local processes.
/// Dropping it stops them and removes their state directory.
pub struct ControlPlane {
    state_dir: PathBuf,
    port_base: u16,
    kubeconfig: PathBuf,
    /// How long `start` took.
    pub start_time: Duration,
}

impl ControlPlane {
    /// Builds the binaries if they are not cached, then starts a fresh control plane on free
    /// loopback ports, owned by this process.
    pub fn start() -> Result<Self, Error> {
        let port_base = free_port_block(PORTS_PER_CLUSTER)?;
        let state_dir = std::env::temp_dir().join(format!("kglue-e2e-{}-{port_base}", std::process::id()));
        let started = Instant::now();
        let mut control_plane = ControlPlane {
            kubeconfig: state_dir.join("kubeconfig"),
            state_dir,
            port_base,
            start_time: Duration::ZERO,
        };
        // Construct the guard before starting, so a half-started cluster is stopped on error.
        control_plane.cluster(&["start", "--owner-pid", &std::process::id().to_string()])?;
        control_plane.start_time = started.elapsed();
        Ok(control_plane)
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding the cluster's state and logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> Result<Client, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `kubectl` (the version built with the control plane) bound to this cluster's kubeconfig.
    pub fn kubectl(&self) -> Result<Kubectl, Error> {
        let bin_dir = self.cluster(&["bin-dir"])?;
        Ok(Kubectl {
            binary: Path::new(bin_dir.trim()).join("kubectl"),
            kubeconfig: self.kubeconfig.clone(),
        })
    }

    fn cluster(&self, args: &[&str]) -> Result<String, Error> {
        run_script(
            "kglue-cluster",
            args,
            &[
                ("KGLUE_STATE", self.state_dir.display().to_string()),
                ("KGLUE_PORT_BASE", self.port_base.to_string()),
            ],
        )
    }
}

/// Runs one of the `e2e/` scripts with extra environment; its stdout on success, or everything it
/// printed in the error.
pub(crate) fn run_script(name: &str, args: &[&str], env: &[(&str, String)]) -> Result<String, Error> {
    let script = repo_root().join("e2e").join(name);
    let output = Command::new(&script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|source| Error::Spawn {
            what: script.display().to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Error::Script {
        script: name.to_string(),
        command: args.join(" "),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The directory of the GitOps tools `e2e/kglue-tools build` made: helm, kustomize and
/// kglue-gitops-check (the test command builds them before `cargo test`).
pub fn tools_bin_dir() -> Result<PathBuf, Error> {
    Ok(PathBuf::from(run_script("kglue-tools", &["bin-dir"], &[])?.trim()))
}

/// The image that `ControlPlane::start_node_agent` maps to "run `command`/`args` on the host":
/// use it for pods that run `sh`, `kubectl` or any other host program.
pub const HOST_IMAGE: &str = "kglue.dev/host";

/// A running `kglue-node-agent` (the kubelet stand-in, see [`node`]) for one control plane.
/// Dropping it stops the agent, which kills every container process it started.
pub struct NodeAgent {
    child: std::process::Child,
    node_name: String,
    state_dir: PathBuf,
    kubelet_port: u16,
}

impl NodeAgent {
    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The port of its kubelet API (`containerLogs`, what `kubectl logs` reaches through the API
    /// server) on 127.0.0.1, as published in the Node's `daemonEndpoints`.
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet_port
    }

    /// The agent's state directory; pods live under `pods/`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The agent's own log.
    pub fn log(&self) -> PathBuf {
        self.state_dir.join("agent.log")
    }

    /// The directory of one pod (volumes, `logs/<container>.log`, `kubeconfig`).
    pub fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        node::pod::pod_dir(&self.state_dir, namespace, name, uid)
    }

    /// Stops the agent: SIGTERM, then SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: the node agent did not stop within 15s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ControlPlane {
    /// Starts `kglue-node-agent` (the binary at `binary`; in an integration test,
    /// `env!("CARGO_BIN_EXE_kglue-node-agent")`) against this control plane, with `images` mapped
    /// to executables and [`HOST_IMAGE`] running commands on the host, and waits until its Node is
    /// Ready and names its kubelet API port (so `kubectl logs` works from then on). The kubelet API
    /// gets a free port (`--kubelet-port 0`), so agents of several clusters never collide. The agent
    /// watches this process (`--owner-pid`), so it never outlives the test.
    pub async fn start_node_agent(&self, binary: &Path, images: &[(&str, &Path)]) -> Result<NodeAgent, Error> {
        self.start_node_agent_with(binary, images, None).await
    }

    /// Starts the node agent in container mode: images that `images` does not map are pulled from
    /// their registry with `crane` and run under `runc` (`tools` = the directory holding both, as
    /// `e2e/kglue-images bin-dir` prints it).
    pub async fn start_container_node_agent(
        &self,
        binary: &Path,
        images: &[(&str, &Path)],
        tools: &Path,
    ) -> Result<NodeAgent, Error> {
        self.start_node_agent_with(binary, images, Some(tools)).await
    }

    async fn start_node_agent_with(
        &self,
        binary: &Path,
        images: &[(&str, &Path)],
        container_tools: Option<&Path>,
    ) -> Result<NodeAgent, Error> {
        let node_name = "kglue-node".to_string();
        let state_dir = self.state_dir.join("node-agent");
        std::fs::create_dir_all(&state_dir).map_err(|source| Error::Spawn {
            what: format!("mkdir {}", state_dir.display()),
            source,
        })?;
        let log_path = state_dir.join("agent.log");
        let spawn_error = |source| Error::Spawn {
            what: binary.display().to_string(),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let mut command = Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--node-name")
            .arg(&node_name)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .arg("--host-image")
            .arg(HOST_IMAGE)
            .arg("--kubelet-port")
            .arg("0")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (image, path) in images {
            command.arg("--image").arg(format!("{image}={}", path.display()));
        }
        if let Some(tools) = container_tools {
            command
                .arg("--run-images")
                .arg("--crane")
                .arg(tools.join("crane"))
                .arg("--runc")
                .arg(tools.join("runc"));
        }
        let child = command.spawn().map_err(spawn_error)?;
        let mut agent = NodeAgent {
            child,
            node_name,
            state_dir,
            kubelet_port: 0,
        };
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client().await?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Error::Script {
                    script: "kglue-node-agent".into(),
                    command: "(start)".into(),
                    status: status.to_string(),
                    output: log,
                });
            }
            let status = nodes.get_opt(&agent.node_name).await?.and_then(|node| node.status);
            let ready = status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            let port = status
                .and_then(|s| s.daemon_endpoints)
                .and_then(|d| d.kubelet_endpoint)
                .and_then(|e| u16::try_from(e.port).ok())
                .unwrap_or(0);
            if ready && port != 0 {
                agent.kubelet_port = port;
                return Ok(agent);
            }
            if Instant::now() > deadline {
                agent.stop();
                return Err(Error::Script {
                    script: "kglue-node-agent".into(),
                    command: "(start)".into(),
                    status: "its Node was not Ready within 30s".into(),
                    output: std::fs::read_to_string(&log_path).unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Err(error) = self.cluster(&["stop"]) {
            eprintln!("warning: stopping the control plane failed: {error}");
        }
    }
}

/// Runs `kubectl` against one cluster.
#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs `kubectl ARGS…` and returns its output, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Result<std::process::Output, Error> {
        Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|source| Error::Spawn {
                what: self.binary.display().to_string(),
                source,
            })
    }
}

impl Kubectl {
    /// `kubectl kustomize DIR`: the objects a kustomization renders (what `kubectl apply -k`,
    /// Flux and Argo CD apply), each with `path` = DIR.
    pub fn kustomize(&self, dir: &Path) -> Result<Vec<Manifest>, Error> {
        let output = self.run(&["kustomize", &dir.display().to_string()])?;
        if !output.status.success() {
            return Err(Error::Script {
                script: "kubectl".into(),
                command: format!("kustomize {}", dir.display()),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8_lossy(&output.stdout)).map_err(|e| Error::Script {
                script: "kubectl".into(),
                command: format!("kustomize {}", dir.display()),
                status: "unparsable output".into(),
                output: e.to_string(),
            })?;
        Ok(documents
            .into_iter()
            .filter(|d| !d.is_null())
            .map(|object| Manifest {
                path: dir.to_path_buf(),
                object,
            })
            .collect())
    }
}

/// Finds `count` consecutive free loopback ports, scanning a range no default service uses.
fn free_port_block(count: u16) -> Result<u16, Error> {
    let start = 27000 + (std::process::id() % 200) as u16 * 10;
    (0..400u16)
        .map(|i| 27000 + (start - 27000 + i * 10) % 4000)
        .find(|base| (0..count).all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok()))
        .ok_or(Error::NoFreePorts)
}

/// The labels that make the API server's Pod Security admission enforce the "restricted"
/// standard in a namespace: every namespace kglue's tests run pipelines in carries them, so a
/// runner or operator pod that breaks the standard is refused there, as on a hardened cluster.
pub const RESTRICTED: [(&str, &str); 2] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

/// Creates a namespace that enforces the restricted Pod Security Standard ([`RESTRICTED`]).
pub async fn create_namespace(client: &Client, name: &str) -> Result<(), Error> {
    create_namespace_labelled(client, name, &RESTRICTED).await
}

/// Creates a namespace with `labels`.
pub async fn create_namespace_labelled(client: &Client, name: &str, labels: &[(&str, &str)]) -> Result<(), Error> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces.create(&kube::api::PostParams::default(), &namespace).await?;
    Ok(())
}

/// One object of a manifest file.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from.
    pub path: PathBuf,
    /// The object.
    pub object: Value,
}

impl Manifest {
    /// `Kind/name` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} ({})",
            self.object["kind"].as_str().unwrap_or("?"),
            self.object["metadata"]["name"].as_str().unwrap_or("?"),
            self.path.display()
        )
    }
}

/// Every object of every `*.yaml` file under `dir` (recursively, sorted by path), except
/// kustomize's own files, which are not Kubernetes objects.
pub fn load_manifests(dir: &Path) -> Result<Vec<Manifest>, Error> {
    Ok(kglue_runner::catalog::read_manifests(dir)?
        .into_iter()
        .flat_map(|(path, documents)| {
            documents.into_iter().map(move |object| Manifest {
                path: path.clone(),
                object,
            })
        })
        .collect())
}

/// Applies arbitrary objects with server-side apply, resolving their kinds through discovery.
pub struct Applier {
    client: Client,
    discovery: Discovery,
    field_manager: String,
}

impl Applier {
    /// Discovers the server's resources (run again after installing CRDs).
    pub async fn new(client: Client, field_manager: &str) -> Result<Self, Error> {
        let discovery = Discovery::new(client.clone()).run().await?;
        Ok(Applier {
            client,
            discovery,
            field_manager: field_manager.into(),
        })
    }

    /// Server-side applies `object` in `namespace` (for namespaced kinds), for real or as a dry run.
    pub async fn apply(&self, object: &Value, namespace: &str, dry_run: bool) -> Result<DynamicObject, Error> {
        let (resource, capabilities) = self.resolve(object)?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or_else(|| Error::Manifest("a manifest has no metadata.name".into()))?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        let mut params = PatchParams::apply(&self.field_manager).force();
        params.dry_run = dry_run;
        Ok(api.patch(name, &params, &Patch::Apply(object)).await?)
    }

    fn resolve(&self, object: &Value) -> Result<(ApiResource, ApiCapabilities), Error> {
        let api_version = object["apiVersion"]
            .as_str()
            .ok_or_else(|| Error::Manifest("a manifest has no apiVersion".into()))?;
        let kind = object["kind"]
            .as_str()
            .ok_or_else(|| Error::Manifest("a manifest has no kind".into()))?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.discovery
            .groups()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.versioned_resources(version))
            .find(|(resource, _)| resource.kind == kind)
            .ok_or_else(|| Error::Manifest(format!("the server does not serve {api_version} {kind}")))
    }
}

/// A binary of any workspace package (`kglue`, `kglue-node-agent`, `kglue-operator`), for
/// integration tests, which Cargo gives only their own package's binaries.
///
/// The test command's one `cargo test --workspace --lib --bins --tests` builds every binary before
/// any test runs (each package's integration tests need its own), so this takes the binary that
/// build made, next to the test executable, and never starts a second build: a nested cargo
/// inherits the test's environment, and `ring`'s build script reruns when `CARGO_MANIFEST_DIR`
/// changes, so ring, rustls, kube, object_store and DataFusion were compiled again — and again by
/// the next outer build. A binary older than a source file of the crates it is built from is
/// refused rather than tested stale: run by hand, build first (`cargo build --workspace --bins`).
pub fn workspace_binary(bin: &str) -> Result<PathBuf, Error> {
    // A test binary is <target>/debug/deps/<name>-<hash>; the binaries are in <target>/debug.
    let exe = std::env::current_exe().map_err(|source| Error::Spawn {
        what: "locating the test executable".into(),
        source,
    })?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| Error::Manifest(format!("cannot locate {bin} next to {}", exe.display())))?;
    let path = profile_dir.join(bin);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(|_| {
        Error::Manifest(format!(
            "{} was not built; build the workspace's binaries first: cargo build --workspace --bins",
            path.display()
        ))
    })?;
    if let Some(newer) = newest_source(&repo_root(), bin).filter(|(modified, _)| *modified > built) {
        return Err(Error::Manifest(format!(
            "{} is older than {}; rebuild the workspace's binaries: cargo build --workspace --bins",
            path.display(),
            newer.1.display()
        )));
    }
    Ok(path)
}

/// The most recently modified Rust source or manifest of the workspace crates `bin` is built from.
fn newest_source(root: &Path, bin: &str) -> Option<(std::time::SystemTime, PathBuf)> {
    // Each binary's package and the workspace packages it depends on (see their Cargo.toml).
    let crates: &[&str] = match bin {
        "kglue" => &["runner", "crds"],
        "kglue-operator" => &["operator", "crds"],
        "kglue-node-agent" => &["e2e", "runner", "crds"],
        _ => &["crds", "runner", "operator", "e2e"],
    };
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut pending: Vec<PathBuf> = crates
        .iter()
        .flat_map(|krate| [root.join(krate).join("src"), root.join(krate).join("Cargo.toml")])
        .chain([root.join("Cargo.lock")])
        .collect();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if let Ok(modified) = metadata.modified()
            && newest.as_ref().is_none_or(|(time, _)| modified > *time)
        {
            newest = Some((modified, path));
        }
    }
    newest
}
