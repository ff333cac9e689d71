//! One pod on this node, from first sight to deletion: prepare its directory, volumes, env and
//! service-account kubeconfig, run its init containers in order and then its containers as local
//! processes, write its status as a kubelet does, kill it when it is deleted or its deadline
//! passes, and finally delete it with grace period 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::container::{self, Bind, Launch};
use super::logs::ContainerLog;
use super::model::{Event, Exit, Model, Restart, Slot, all_slots, containers, lost};
use super::process::{self, ExitStatus, ProcessSpec, Registry};
use super::registration::Capacity;
use super::resolve::{self, PrepareError, Sources};
use super::spec::{self, ImageMap, ImageTarget, PathRewriter};

/// What every pod worker shares.
pub struct Shared {
    /// Client with the agent's identity.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// `--state-dir`: pod directories live under `pods/`.
    pub state_dir: PathBuf,
    /// Image → executable.
    pub images: ImageMap,
    /// The node's capacity (for resourceFieldRef defaults).
    pub capacity: Capacity,
    /// Live process groups.
    pub registry: Registry,
    /// The `cluster` entry (server, CA) written into each pod's kubeconfig.
    pub cluster: serde_json::Value,
    /// `PATH` given to every process.
    pub path_env: String,
    /// Where the kubelet API finds each container's log and its runs.
    pub logs: super::logs::Index,
    /// Container mode: images not mapped to executables are pulled and run under runc.
    pub containers: Option<Arc<container::Runtime>>,
}

/// The directory of one pod: `<state-dir>/pods/<namespace>_<name>_<uid>`.
pub fn pod_dir(state_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    state_dir.join("pods").join(format!("{namespace}_{name}_{uid}"))
}

/// Where a pod's service-account token, CA and namespace are mounted (container mode).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The default `terminationMessagePath`.
const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";
/// How long a pod waits between attempts to prepare it (a missing Secret, say).
const PREPARE_RETRY: Duration = Duration::from_secs(2);
/// Restart back-off: doubles from the first value up to the second (the kubelet uses 10 s → 5 min).
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Lifetime of the token in a pod's kubeconfig; renewed at two thirds of it.
const TOKEN_SECONDS: i64 = 3600;
/// Grace period when a pod vanished from the API without a graceful deletion.
const GONE_GRACE: Duration = Duration::from_secs(2);

/// A container ready to start.
struct Prepared {
    slot: Slot,
    name: String,
    /// The pulled image's `repository@digest` (container mode).
    image_id: Option<String>,
    process: ProcessSpec,
    termination_file: PathBuf,
    fallback_to_logs: bool,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The pod got a deletionTimestamp: kill with this grace period.
    Deleted(Duration),
    /// The pod is gone from the API.
    Gone,
    /// `activeDeadlineSeconds` passed.
    Deadline(Duration),
}

impl Stop {
    fn grace(self) -> Duration {
        match self {
            Stop::Deleted(grace) | Stop::Deadline(grace) => grace,
            Stop::Gone => GONE_GRACE,
        }
    }
}

/// Runs one pod until it is gone from the API. `pod` carries every update the watch sees; `None`
/// means the pod was deleted.
pub async fn run(shared: Arc<Shared>, mut pod: watch::Receiver<Option<Pod>>) {
    let Some(first) = pod.borrow_and_update().clone() else {
        return;
    };
    let worker = Worker::new(shared, &first);
    tracing::debug!(pod = worker.key, "pod worker started");
    // Logs are readable (through the kubelet API) for as long as the pod exists, as with a kubelet.
    let namespace = first.namespace().unwrap_or_default();
    let logs = first
        .spec
        .iter()
        .flat_map(containers)
        .map(|(_, c)| (c.name.clone(), worker.log_path(&c.name)))
        .collect();
    worker.shared.logs.add_pod(&namespace, &worker.name, &worker.uid, logs);
    worker.execute(first, &mut pod).await;
    worker.wait_for_deletion(&mut pod).await;
    worker.shared.logs.remove_pod(&namespace, &worker.name, &worker.uid);
    tracing::debug!(pod = worker.key, "pod worker done");
}

struct Worker {
    shared: Arc<Shared>,
    api: Api<Pod>,
    key: String,
    name: String,
    uid: String,
    dir: PathBuf,
}

impl Worker {
    fn new(shared: Arc<Shared>, pod: &Pod) -> Worker {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        Worker {
            api: Api::namespaced(shared.client.clone(), &namespace),
            key: format!("{namespace}/{name}"),
            dir: pod_dir(&shared.state_dir, &namespace, &name, &uid),
            shared,
            name,
            uid,
        }
    }

    /// A container's log file (stdout and stderr, appended across restarts).
    fn log_path(&self, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{container}.log"))
    }

    async fn execute(&self, pod: Pod, updates: &mut watch::Receiver<Option<Pod>>) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(spec) = pod.spec.clone() else { return };
        let mut model = Model::new(&pod, &spec);
        let ran_before = phase.as_deref() == Some("Running")
            || pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .any(|s| s.state.as_ref().is_some_and(|s| s.waiting.is_none()));
        if ran_before {
            // Statuses may not go back from terminated; containers that were running are lost.
            let status = pod.status.clone().unwrap_or_default();
            model.main = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .map(lost)
                .collect();
            model.init = status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .map(lost)
                .collect();
            model.fail(
                Some("NodeAgentRestarted"),
                Some("the node agent restarted while this pod ran; its processes are gone".into()),
            );
            self.write(&mut model).await;
            return;
        }
        let deadline = spec.active_deadline_seconds.map(|seconds| {
            let started = model.start_time.0;
            let elapsed = Timestamp::now().duration_since(started).unsigned_abs();
            let total = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
            Instant::now() + total.saturating_sub(elapsed)
        });
        let grace = Duration::from_secs(
            spec.termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(30),
        );
        self.write(&mut model).await;

        let Some(targets) = self.resolve_images(&spec, &mut model) else {
            self.write(&mut model).await;
            return;
        };
        let (init, main) = loop {
            match self.prepare(&pod, &spec, &targets).await {
                Ok(prepared) => break prepared,
                Err(error) => {
                    let message = error.to_string();
                    let reason = error.reason();
                    tracing::warn!(pod = self.key, %message, transient = error.is_transient(), "cannot prepare the pod");
                    for slot in all_slots(&spec) {
                        model.set_waiting(slot, reason, &message);
                    }
                    if !error.is_transient() {
                        model.fail(Some(reason), Some(message));
                        self.write(&mut model).await;
                        return;
                    }
                    self.write(&mut model).await;
                    tokio::select! {
                        _ = tokio::time::sleep(PREPARE_RETRY) => {}
                        stop = next_stop(updates, deadline, grace) => {
                            self.stopped(&mut model, stop).await;
                            return;
                        }
                    }
                }
            }
        };

        for container in init.iter().chain(&main) {
            if let (Some(id), Some(status)) = (&container.image_id, model.status_mut(container.slot)) {
                status.image_id = id.clone();
            }
        }
        let _refresher = self
            .dir
            .join("kubeconfig")
            .exists()
            .then(|| AbortOnDrop(self.refresh_token(&pod)));
        let init_restart = match Restart::of(&spec) {
            Restart::Never => Restart::Never,
            _ => Restart::OnFailure,
        };
        for container in init {
            let slot = container.slot;
            if let Some(stop) = self
                .run_group(&mut model, vec![container], init_restart, updates, deadline, grace)
                .await
            {
                self.stopped(&mut model, stop).await;
                return;
            }
            let ok = match slot {
                Slot::Init(i) => Model::terminated_ok(&model.init[i..=i]),
                Slot::Main(_) => true,
            };
            if !ok {
                model.fail(None, None);
                self.write(&mut model).await;
                return;
            }
        }
        model.initialized = true;
        for slot in all_slots(&spec).filter(|s| matches!(s, Slot::Main(_))) {
            model.set_waiting(slot, "ContainerCreating", "starting");
        }
        if let Some(stop) = self
            .run_group(&mut model, main, Restart::of(&spec), updates, deadline, grace)
            .await
        {
            self.stopped(&mut model, stop).await;
            return;
        }
        model.settle();
        self.write(&mut model).await;
        tracing::info!(pod = self.key, phase = model.phase, "pod finished");
    }

    /// Maps every container's image; an unmapped one fails the pod with `ImageNotMapped`.
    fn resolve_images(&self, spec: &PodSpec, model: &mut Model) -> Option<HashMap<Slot, ImageTarget>> {
        let mut targets = HashMap::new();
        let mut missing = Vec::new();
        for (slot, container) in containers(spec) {
            let image = container.image.clone().unwrap_or_default();
            let pulled = self
                .shared
                .containers
                .as_ref()
                .map(|_| ImageTarget::Pull(image.clone()));
            match self.shared.images.resolve(&image).cloned().or(pulled) {
                Some(target) => {
                    if let Some(status) = model.status_mut(slot) {
                        status.image_id = match &target {
                            ImageTarget::Executable(path) => format!("file://{}", path.display()),
                            ImageTarget::Host => "host://".into(),
                            // Set to the digest once pulled.
                            ImageTarget::Pull(_) => String::new(),
                        };
                    }
                    targets.insert(slot, target);
                }
                None => {
                    let message = format!(
                        "image \"{image}\" is not mapped to a local executable on node {}: start \
                         kglue-node-agent with --image {image}=PATH or --host-image {image}",
                        self.shared.node
                    );
                    model.set_waiting(slot, "ImageNotMapped", &message);
                    missing.push(message);
                }
            }
        }
        if missing.is_empty() {
            return Some(targets);
        }
        tracing::warn!(pod = self.key, message = missing.join("; "), "unmapped image");
        model.fail(Some("ImageNotMapped"), Some(missing.join("; ")));
        None
    }

    async fn prepare(
        &self,
        pod: &Pod,
        spec: &PodSpec,
        targets: &HashMap<Slot, ImageTarget>,
    ) -> Result<(Vec<Prepared>, Vec<Prepared>), PrepareError> {
        let client = &self.shared.client;
        for sub in ["logs", "termination", "volumes"] {
            let dir = self.dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| PrepareError::Io { path: dir, source })?;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let mut sources = Sources::new(client.clone(), &namespace);
        let mut volumes = HashMap::new();
        for volume in spec.volumes.iter().flatten() {
            let dir = self.dir.join("volumes").join(&volume.name);
            resolve::materialise(&mut sources, client, pod, volume, &self.shared.capacity, &dir).await?;
            if self.shared.containers.is_some() {
                set_volume_ownership(spec, volume, &dir)?;
            }
            volumes.insert(volume.name.clone(), dir);
        }
        let kubeconfig = if resolve::automount(client, pod).await? {
            let token = resolve::service_account_token(client, pod, None, TOKEN_SECONDS).await?;
            self.write_token(&token)?;
            if self.shared.containers.is_some() {
                self.write_service_account(&namespace)?;
            }
            Some(self.write_kubeconfig()?)
        } else {
            None
        };
        let mut init = Vec::new();
        let mut main = Vec::new();
        for (slot, container) in containers(spec) {
            let target = targets
                .get(&slot)
                .ok_or_else(|| PrepareError::Unsupported(format!("container {}: no image target", container.name)))?;
            let prepared = self
                .prepare_container(
                    &mut sources,
                    pod,
                    slot,
                    container,
                    target,
                    &volumes,
                    kubeconfig.as_deref(),
                )
                .await?;
            match slot {
                Slot::Init(_) => init.push(prepared),
                Slot::Main(_) => main.push(prepared),
            }
        }
        Ok((init, main))
    }

    /// Writes the service-account token that the pod's kubeconfig reads (`tokenFile`, which
    /// kubectl and kube-rs re-read, so a refreshed token is picked up), replacing it atomically.
    /// In container mode the token sits in the directory mounted at the well-known path, readable
    /// by the container's user (a kubelet's `kube-api-access` volume has mode 0644).
    fn write_token(&self, token: &str) -> Result<(), PrepareError> {
        let dir = self.dir.join("serviceaccount");
        std::fs::create_dir_all(&dir).map_err(|source| PrepareError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("token");
        let temporary = dir.join("token.tmp");
        write_private(&temporary, token.as_bytes())?;
        if self.shared.containers.is_some() {
            set_mode(&temporary, 0o644)?;
        }
        std::fs::rename(&temporary, &path).map_err(|source| PrepareError::Io { path, source })
    }

    /// The rest of the service-account directory (container mode): the cluster's CA and the
    /// pod's namespace, beside the token.
    fn write_service_account(&self, namespace: &str) -> Result<(), PrepareError> {
        let dir = self.dir.join("serviceaccount");
        let cluster = &self.shared.cluster;
        let ca = match (
            cluster["certificate-authority-data"].as_str(),
            cluster["certificate-authority"].as_str(),
        ) {
            (Some(data), _) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| {
                    PrepareError::Unsupported(format!("the agent's kubeconfig has an unreadable CA: {e}"))
                })?
            }
            (None, Some(file)) => std::fs::read(file).map_err(|source| PrepareError::Io {
                path: file.into(),
                source,
            })?,
            (None, None) => Vec::new(),
        };
        for (name, contents) in [("ca.crt", ca.as_slice()), ("namespace", namespace.as_bytes())] {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(|source| PrepareError::Io { path, source })?;
        }
        Ok(())
    }

    /// Renews the pod's token at two thirds of its lifetime, for as long as the pod runs.
    fn refresh_token(&self, pod: &Pod) -> tokio::task::JoinHandle<()> {
        let client = self.shared.client.clone();
        let pod = pod.clone();
        let writer = Worker::new(self.shared.clone(), &pod);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(
                    u64::try_from(TOKEN_SECONDS).unwrap_or(3600) * 2 / 3,
                ))
                .await;
                let renewed = resolve::service_account_token(&client, &pod, None, TOKEN_SECONDS).await;
                match renewed.and_then(|token| writer.write_token(&token)) {
                    Ok(()) => tracing::debug!(pod = writer.key, "renewed the service-account token"),
                    Err(error) => tracing::warn!(pod = writer.key, %error, "renewing the service-account token failed"),
                }
            }
        })
    }

    fn write_kubeconfig(&self) -> Result<PathBuf, PrepareError> {
        let path = self.dir.join("kubeconfig");
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "kglue", "cluster": self.shared.cluster }],
            "users": [{ "name": "pod", "user": { "tokenFile": self.dir.join("serviceaccount/token") } }],
            "contexts": [{ "name": "pod", "context": {
                "cluster": "kglue",
                "user": "pod",
                "namespace": self.key.split('/').next().unwrap_or_default(),
            } }],
            "current-context": "pod",
        });
        write_private(&path, kubeconfig.to_string().as_bytes())?;
        Ok(path)
    }

    #[allow(clippy::too_many_arguments)]
    async fn prepare_container(
        &self,
        sources: &mut Sources,
        pod: &Pod,
        slot: Slot,
        container: &Container,
        target: &ImageTarget,
        volumes: &HashMap<String, PathBuf>,
        kubeconfig: Option<&Path>,
    ) -> Result<Prepared, PrepareError> {
        match (target, &self.shared.containers) {
            (ImageTarget::Pull(reference), Some(runtime)) => {
                let image = runtime
                    .pull(reference)
                    .await
                    .map_err(|e| PrepareError::ImagePull(e.to_string()))?;
                self.prepare_in_image(
                    sources,
                    pod,
                    slot,
                    container,
                    runtime,
                    image,
                    volumes,
                    kubeconfig.is_some(),
                )
                .await
            }
            _ => {
                self.prepare_process(sources, pod, slot, container, target, volumes, kubeconfig)
                    .await
            }
        }
    }

    /// Container mode: the container's OCI runtime bundle (`config.json` over the image's
    /// filesystem), run by `runc run`.
    #[allow(clippy::too_many_arguments)]
    async fn prepare_in_image(
        &self,
        sources: &mut Sources,
        pod: &Pod,
        slot: Slot,
        container: &Container,
        runtime: &container::Runtime,
        image: container::Image,
        volumes: &HashMap<String, PathBuf>,
        service_account: bool,
    ) -> Result<Prepared, PrepareError> {
        let unsupported =
            |message: String| PrepareError::Unsupported(format!("container {}: {message}", container.name));
        let spec = pod.spec.clone().unwrap_or_default();
        let mut binds = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = volumes
                .get(&mount.name)
                .ok_or_else(|| unsupported(format!("volumeMount {} names no volume of the pod", mount.name)))?;
            let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) if sub.split('/').any(|part| part == "..") => {
                    return Err(unsupported(format!("subPath {sub:?} must not contain `..`")));
                }
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            binds.push(Bind {
                source,
                destination: mount.mount_path.clone(),
                read_only: mount.read_only.unwrap_or(false),
            });
        }
        if service_account && !binds.iter().any(|b| b.destination == SERVICE_ACCOUNT_DIR) {
            binds.push(Bind {
                source: self.dir.join("serviceaccount"),
                destination: SERVICE_ACCOUNT_DIR.into(),
                read_only: true,
            });
        }
        // The kubelet's /etc/hosts, and the node's resolver.
        let hosts = self.dir.join("etc-hosts");
        let hosts_file = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n",
            self.name
        );
        std::fs::write(&hosts, hosts_file).map_err(|source| PrepareError::Io {
            path: hosts.clone(),
            source,
        })?;
        binds.push(Bind {
            source: hosts,
            destination: "/etc/hosts".into(),
            read_only: true,
        });
        if Path::new("/etc/resolv.conf").exists() {
            binds.push(Bind {
                source: "/etc/resolv.conf".into(),
                destination: "/etc/resolv.conf".into(),
                read_only: true,
            });
        }
        let termination_path = container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_PATH.into());
        let termination_file = self.dir.join("termination").join(&container.name);
        std::fs::write(&termination_file, b"").map_err(|source| PrepareError::Io {
            path: termination_file.clone(),
            source,
        })?;
        // Any user of the container may write its termination message, as with a kubelet.
        set_mode(&termination_file, 0o666)?;
        binds.push(Bind {
            source: termination_file.clone(),
            destination: termination_path,
            read_only: false,
        });

        let mut base = vec![("HOSTNAME".to_string(), self.name.clone())];
        if let Some((host, port)) = self.shared.cluster["server"]
            .as_str()
            .and_then(|server| server.strip_prefix("https://"))
            .and_then(|address| address.trim_end_matches('/').rsplit_once(':'))
        {
            base.push(("KUBERNETES_SERVICE_HOST".into(), host.trim_matches(['[', ']']).into()));
            base.push(("KUBERNETES_SERVICE_PORT".into(), port.into()));
        }
        let env = resolve::container_env(sources, pod, container, &self.shared.capacity, base).await?;
        let env = container::environment(&image.config, env);
        let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let expand_all = |values: Option<&Vec<String>>| -> Vec<String> {
            values
                .into_iter()
                .flatten()
                .map(|v| spec::expand(v, |name| lookup.get(name).map(|s| s.to_string())))
                .collect()
        };
        let argv = container::argv(
            &image.config,
            &expand_all(container.command.as_ref()),
            &expand_all(container.args.as_ref()),
        )
        .map_err(unsupported)?;
        let user = container::user(&spec, container, &image.config, &image.rootfs).map_err(unsupported)?;
        let pod_security = spec.security_context.as_ref();
        let mut groups: Vec<u32> = pod_security
            .and_then(|s| s.fs_group)
            .into_iter()
            .chain(
                pod_security
                    .and_then(|s| s.supplemental_groups.clone())
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|g| u32::try_from(g).ok())
            .collect();
        groups.dedup();
        let security = container.security_context.as_ref();
        let read_only_root = security.and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
        let bundle = self.dir.join("containers").join(&container.name);
        std::fs::create_dir_all(&bundle).map_err(|source| PrepareError::Io {
            path: bundle.clone(),
            source,
        })?;
        let id = format!("{}-{}", self.uid, container.name);
        let launch = Launch {
            argv,
            env,
            cwd: container
                .working_dir
                .clone()
                .or(image.config.working_dir.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
            user,
            groups,
            rootfs: bundle.join("rootfs"),
            read_only_root,
            hostname: self.name.clone(),
            binds,
            capabilities: container::capabilities(container),
            no_new_privileges: !security.and_then(|s| s.allow_privilege_escalation).unwrap_or(true),
            memory_limit: container::memory_limit(container),
            cgroup: format!("/kglue/{id}"),
        };
        let config = bundle.join("config.json");
        std::fs::write(&config, container::runtime_spec(&launch).to_string()).map_err(|source| PrepareError::Io {
            path: config.clone(),
            source,
        })?;
        let (runc, state) = runtime.runc();
        let argv = vec![
            runc.display().to_string(),
            "--root".into(),
            state.display().to_string(),
            "run".into(),
            "--bundle".into(),
            bundle.display().to_string(),
            id.clone(),
        ];
        Ok(Prepared {
            slot,
            name: container.name.clone(),
            image_id: Some(image.id),
            process: ProcessSpec {
                argv,
                env: vec![("PATH".into(), self.shared.path_env.clone())],
                cwd: bundle.clone(),
                log: self.log_path(&container.name),
                container: Some(container::Handle {
                    runc: runc.to_path_buf(),
                    state: state.to_path_buf(),
                    id,
                    image: image.rootfs,
                    dir: bundle,
                }),
            },
            termination_file,
            fallback_to_logs: container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
        })
    }

    /// Process mode: the container runs on the host as the mapped executable, with container
    /// paths rewritten to the pod directory.
    #[allow(clippy::too_many_arguments)]
    async fn prepare_process(
        &self,
        sources: &mut Sources,
        pod: &Pod,
        slot: Slot,
        container: &Container,
        target: &ImageTarget,
        volumes: &HashMap<String, PathBuf>,
        kubeconfig: Option<&Path>,
    ) -> Result<Prepared, PrepareError> {
        let mut rewriter = PathRewriter::default();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = volumes.get(&mount.name).ok_or_else(|| {
                PrepareError::Unsupported(format!(
                    "container {}: volumeMount {} names no volume of the pod",
                    container.name, mount.name
                ))
            })?;
            if mount.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(PrepareError::Unsupported(format!(
                    "container {}: subPathExpr is not supported",
                    container.name
                )));
            }
            let host = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) if !sub.split('/').any(|part| part == "..") => dir.join(sub),
                Some(sub) => {
                    return Err(PrepareError::Unsupported(format!(
                        "subPath {sub:?} must not contain `..`"
                    )));
                }
                None => dir.clone(),
            };
            rewriter.add(&mount.mount_path, &host);
        }
        let termination_path = container
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_TERMINATION_PATH);
        let termination_file = rewriter
            .host_path(termination_path)
            .unwrap_or_else(|| self.dir.join("termination").join(&container.name));
        rewriter.add(termination_path, &termination_file);

        let mut base = vec![
            ("PATH".to_string(), self.shared.path_env.clone()),
            ("HOME".to_string(), self.dir.display().to_string()),
            ("HOSTNAME".to_string(), self.name.clone()),
            ("KGLUE_POD_DIR".to_string(), self.dir.display().to_string()),
            (
                "KGLUE_TERMINATION_LOG".to_string(),
                termination_file.display().to_string(),
            ),
        ];
        if let Some(kubeconfig) = kubeconfig {
            base.push(("KUBECONFIG".to_string(), kubeconfig.display().to_string()));
        }
        let env: Vec<(String, String)> = resolve::container_env(sources, pod, container, &self.shared.capacity, base)
            .await?
            .into_iter()
            .map(|(name, value)| {
                let value = rewriter.rewrite(&value);
                (name, value)
            })
            .collect();
        let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let expand_all = |values: Option<&Vec<String>>| -> Vec<String> {
            values
                .into_iter()
                .flatten()
                .map(|v| rewriter.rewrite(&spec::expand(v, |name| lookup.get(name).map(|s| s.to_string()))))
                .collect()
        };
        let command = expand_all(container.command.as_ref());
        let args = expand_all(container.args.as_ref());
        let argv = spec::argv(target, &command, &args)
            .map_err(|message| PrepareError::Unsupported(format!("container {}: {message}", container.name)))?;
        let cwd = container
            .working_dir
            .as_deref()
            .and_then(|dir| rewriter.host_path(dir))
            .unwrap_or_else(|| self.dir.clone());
        Ok(Prepared {
            slot,
            name: container.name.clone(),
            image_id: None,
            process: ProcessSpec {
                argv,
                env,
                cwd,
                log: self.log_path(&container.name),
                container: None,
            },
            termination_file,
            fallback_to_logs: container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
        })
    }

    /// Runs containers side by side until they all end for good, or a stop comes (deletion,
    /// deadline); then they are killed and the stop is returned.
    async fn run_group(
        &self,
        model: &mut Model,
        prepared: Vec<Prepared>,
        restart: Restart,
        updates: &mut watch::Receiver<Option<Pod>>,
        deadline: Option<Instant>,
        grace: Duration,
    ) -> Option<Stop> {
        let (events, mut received) = mpsc::unbounded_channel();
        let (stop_sender, stop_receiver) = watch::channel(None::<Duration>);
        let mut tasks = JoinSet::new();
        let namespace = self.key.split_once('/').map_or("", |(namespace, _)| namespace);
        for container in prepared {
            let log = self
                .shared
                .logs
                .container(namespace, &self.name, &self.uid, &container.name);
            tasks.spawn(run_container(
                log,
                self.key.clone(),
                container,
                restart,
                self.shared.registry.clone(),
                events.clone(),
                stop_receiver.clone(),
            ));
        }
        drop(events);
        let mut stop = None;
        loop {
            tokio::select! {
                Some(event) = received.recv() => {
                    model.apply(event);
                    while let Ok(event) = received.try_recv() {
                        model.apply(event);
                    }
                    self.write(model).await;
                }
                reason = next_stop(updates, deadline, grace), if stop.is_none() => {
                    tracing::info!(pod = self.key, ?reason, "stopping the pod's containers");
                    stop_sender.send_replace(Some(reason.grace()));
                    stop = Some(reason);
                }
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Err(error)) => tracing::error!(pod = self.key, %error, "a container task failed"),
                    Some(Ok(())) => {}
                },
            }
        }
        while let Ok(event) = received.try_recv() {
            model.apply(event);
        }
        stop
    }

    /// Final status after a stop: deleted pods end Succeeded or Failed by their exit codes, a
    /// deadline fails the pod with `DeadlineExceeded`.
    async fn stopped(&self, model: &mut Model, stop: Stop) {
        match stop {
            Stop::Gone => return,
            Stop::Deleted(_) => model.settle(),
            Stop::Deadline(_) => model.fail(
                Some("DeadlineExceeded"),
                Some("Pod was active on the node longer than the specified deadline".into()),
            ),
        }
        self.write(model).await;
        tracing::info!(pod = self.key, phase = model.phase, ?stop, "pod stopped");
    }

    /// Writes the status through `pods/status` (strategic merge: conditions merge by type).
    async fn write(&self, model: &mut Model) {
        let patch = Patch::Strategic(json!({ "status": model.pod_status() }));
        for attempt in 1..=3u32 {
            match self.api.patch_status(&self.name, &PatchParams::default(), &patch).await {
                Ok(_) => return,
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(error) => {
                    tracing::warn!(pod = self.key, attempt, %error, "writing pod status failed");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
            }
        }
    }

    /// After the containers are done: once the pod has a deletionTimestamp, delete it with grace
    /// period 0 (its processes are gone), as the kubelet does; return when it is gone.
    async fn wait_for_deletion(&self, updates: &mut watch::Receiver<Option<Pod>>) {
        let mut deleted = false;
        loop {
            let deleting = match &*updates.borrow_and_update() {
                None => return,
                Some(pod) => pod.metadata.deletion_timestamp.is_some(),
            };
            if deleting && !deleted {
                deleted = true;
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(self.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.api.delete(&self.name, &params).await {
                    Ok(_) => tracing::info!(pod = self.key, "deleted the pod"),
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                    Err(error) => tracing::warn!(pod = self.key, %error, "deleting the pod failed"),
                }
            }
            if updates.changed().await.is_err() {
                return;
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Container mode: a volume's permissions as a kubelet leaves them. An emptyDir is open to every
/// user (mode 0777); with an `fsGroup`, every volume belongs to that group (group-readable, and
/// group-writable unless the volume is read-only by nature).
fn set_volume_ownership(
    spec: &PodSpec,
    volume: &k8s_openapi::api::core::v1::Volume,
    dir: &Path,
) -> Result<(), PrepareError> {
    let empty_dir = volume.empty_dir.is_some();
    if empty_dir {
        set_mode(dir, 0o777)?;
    }
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    if let Some(group) = fs_group {
        container::apply_fs_group(dir, group, !empty_dir).map_err(|source| PrepareError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), PrepareError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(contents).map_err(io)
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when the pod must stop: deleted (with its grace period), gone, or past its deadline.
async fn next_stop(updates: &mut watch::Receiver<Option<Pod>>, deadline: Option<Instant>, grace: Duration) -> Stop {
    loop {
        let stop = match &*updates.borrow_and_update() {
            None => Some(Stop::Gone),
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                let seconds = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .and_then(|s| u64::try_from(s).ok());
                Some(Stop::Deleted(seconds.map_or(grace, Duration::from_secs)))
            }
            Some(_) => None,
        };
        if let Some(stop) = stop {
            return stop;
        }
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return Stop::Gone },
            _ = expired => return Stop::Deadline(grace),
        }
    }
}

async fn stop_requested(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One container: start, wait, report, and restart as the policy says, with back-off.
async fn run_container(
    log: Option<Arc<ContainerLog>>,
    pod: String,
    container: Prepared,
    restart: Restart,
    registry: Registry,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let slot = container.slot;
    let mut backoff = BACKOFF_START;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        if let Err(error) = std::fs::write(&container.termination_file, b"") {
            tracing::warn!(pod, container = container.name, %error, "cannot reset the termination-message file");
        }
        let started = Timestamp::now();
        if let Some(log) = &log {
            log.started();
        }
        let (exit, reason, start_error) = match process::spawn(&container.process, &registry) {
            Ok(mut running) => {
                tracing::info!(pod, container = container.name, pid = running.pid(), argv = ?container.process.argv, "started container");
                let _ = events.send(Event::Started {
                    slot,
                    pid: running.pid(),
                    at: started,
                });
                let result = tokio::select! {
                    result = running.wait() => result,
                    grace = stop_requested(&mut stop) => running.terminate(grace).await,
                };
                match result {
                    Ok(exit) => (exit, if exit.code == 0 { "Completed" } else { "Error" }, None),
                    Err(error) => (
                        ExitStatus { code: 1, signal: None },
                        "Error",
                        Some(format!("waiting for the process failed: {error}")),
                    ),
                }
            }
            Err(error) => {
                let program = container.process.argv.first().cloned().unwrap_or_default();
                (
                    ExitStatus {
                        code: 128,
                        signal: None,
                    },
                    "StartError",
                    Some(format!("cannot start {program}: {error}")),
                )
            }
        };
        let finished = Timestamp::now();
        if let Some(log) = &log {
            log.exited();
        }
        let message = start_error.or_else(|| termination_message(&container, &exit));
        tracing::info!(
            pod,
            container = container.name,
            exit_code = exit.code,
            reason,
            "container exited"
        );
        let _ = events.send(Event::Exited(Exit {
            slot,
            exit,
            reason,
            started,
            finished,
            message,
        }));
        if stop.borrow().is_some() || !restart.again(&exit) {
            return;
        }
        let _ = events.send(Event::BackOff {
            slot,
            message: format!(
                "back-off {}s restarting failed container {}",
                backoff.as_secs(),
                container.name
            ),
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_requested(&mut stop) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The file at `terminationMessagePath` (its last 4096 bytes), or with `FallbackToLogsOnError` and
/// a failure and an empty file, the log's tail.
fn termination_message(container: &Prepared, exit: &ExitStatus) -> Option<String> {
    let from_file = read_tail(&container.termination_file, spec::MAX_TERMINATION_MESSAGE)
        .map(|bytes| spec::termination_message_from_file(&bytes))
        .filter(|m| !m.is_empty());
    if from_file.is_some() || !container.fallback_to_logs || exit.code == 0 {
        return from_file;
    }
    read_tail(&container.process.log, spec::MAX_TERMINATION_LOG_BYTES)
        .map(|bytes| spec::termination_message_from_log(&bytes))
        .filter(|m| !m.is_empty())
}

/// The last `max` bytes of a file (a log may be large; only its tail is read).
fn read_tail(path: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    let max = u64::try_from(max).ok()?;
    file.seek(SeekFrom::Start(length.saturating_sub(max))).ok()?;
    let mut tail = Vec::new();
    file.take(max).read_to_end(&mut tail).ok()?;
    Some(tail)
}
