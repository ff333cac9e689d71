//! The Kubernetes Job of an attempt: building it (pure) and reading what it is doing (pure).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{Job as BatchJob, JobSpec as BatchJobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector,
    Pod, PodSecurityContext, PodSpec, PodTemplateSpec, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretProjection, SecurityContext, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kglue_crds::common::{ExecutorCount, WorkerResources, WorkerSize};
use kglue_crds::connection::SecretKeyUse;
use kglue_crds::protocol::attempt::{
    AttemptCommand, LABEL_ATTEMPT, LABEL_OWNER_UID, POD_ENV, SECRETS_DIR, SPILL_DIR, SettleMode, TERMINATION_LOG,
    run_labels,
};
use kglue_crds::protocol::executor::{
    ExecutorCommand, LABEL_EXECUTOR_OF, Lifetime, POD_CONNECT_TIMEOUT_SECONDS, POD_IP_ENV, SCHEDULER_PORT,
};
use kglue_crds::run_result::RunOwnerKind;

use super::machine::{AttemptJob, Launch};
use crate::settings::RunnerSettings;

/// The object a run belongs to.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Job or Crawler.
    pub kind: RunOwnerKind,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its UID.
    pub uid: String,
}

/// The labels of an attempt's Kubernetes Job and pod.
pub fn labels(owner: &Owner, run_id: &str, attempt: i32) -> BTreeMap<String, String> {
    let mut labels = run_labels(owner.kind, &owner.name, run_id);
    labels.extend([
        ("app.kubernetes.io/name".to_string(), "kglue-runner".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            crate::FIELD_MANAGER.to_string(),
        ),
        (LABEL_OWNER_UID.to_string(), owner.uid.clone()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
    ]);
    labels
}

/// The controller owner reference to the kglue object `kind`/`name` (its UID `uid`), blocking its
/// deletion until what it owns is gone (the garbage collector removes them with it).
pub fn controller_reference(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", kglue_crds::API_GROUP, kglue_crds::API_VERSION),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A variable from the downward API: the pod's field at `path`.
pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The Secret keys the run's Connections read, as projections into `<secret>/<key>`: one
/// projection of a Secret's required keys (the pod waits until they exist), one of its optional
/// ones (the S3 session token when not named).
pub fn secret_projections(uses: &[SecretKeyUse]) -> Vec<VolumeProjection> {
    let mut required: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut optional: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for used in uses {
        let keys = if used.required { &mut required } else { &mut optional };
        keys.entry(used.secret.as_str()).or_default().insert(used.key.as_str());
    }
    let projection = |name: &str, keys: &BTreeSet<&str>, optional: bool| VolumeProjection {
        secret: Some(SecretProjection {
            name: name.to_string(),
            items: Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: key.to_string(),
                        path: format!("{name}/{key}"),
                        mode: None,
                    })
                    .collect(),
            ),
            optional: Some(optional),
        }),
        ..VolumeProjection::default()
    };
    required
        .iter()
        .map(|(name, keys)| projection(name, keys, false))
        .chain(optional.iter().map(|(name, keys)| projection(name, keys, true)))
        .collect()
}

/// The requests and limits (equal) of `size` as the operator is configured, with the figures.
pub fn worker_resources(settings: &RunnerSettings, size: WorkerSize) -> (WorkerResources, ResourceRequirements) {
    let worker = settings.worker_sizes.get(size);
    let resources: BTreeMap<String, Quantity> = BTreeMap::from([
        ("cpu".to_string(), Quantity(worker.cpu.to_string())),
        ("memory".to_string(), Quantity(format!("{}Gi", worker.memory_gib))),
    ]);
    let requirements = ResourceRequirements {
        requests: Some(resources.clone()),
        limits: Some(resources),
        ..ResourceRequirements::default()
    };
    (worker, requirements)
}

/// The spill folder of a pod with `memory_gib` of memory: an emptyDir of twice that, at
/// [`SPILL_DIR`].
pub fn spill_volume(memory_gib: u32) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: "spill".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(format!("{}Gi", memory_gib * 2))),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "spill".into(),
        mount_path: SPILL_DIR.into(),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The Connections' Secret keys `uses` as one read-only projected volume at [`SECRETS_DIR`]
/// (`<secret>/<key>`, mode 0400); `None` when there are none.
pub fn secrets_volume(uses: &[SecretKeyUse]) -> Option<(Volume, VolumeMount)> {
    let projections = secret_projections(uses);
    if projections.is_empty() {
        return None;
    }
    let volume = Volume {
        name: "connection-secrets".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(projections),
            default_mode: Some(0o400),
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "connection-secrets".into(),
        mount_path: SECRETS_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
}

/// The volumes of a run's pod (an attempt's or an executor's) and their mounts: the spill folder
/// for `memory_gib` of memory, and the Connections' Secret keys `secrets` when there are any.
fn run_volumes(memory_gib: u32, secrets: &[SecretKeyUse]) -> (Vec<Volume>, Vec<VolumeMount>) {
    let (spill, spill_mount) = spill_volume(memory_gib);
    let mut volumes = vec![spill];
    let mut mounts = vec![spill_mount];
    if let Some((volume, mount)) = secrets_volume(secrets) {
        volumes.push(volume);
        mounts.push(mount);
    }
    (volumes, mounts)
}

/// The security context of every runner container ("restricted" Pod Security Standard, read-only
/// root file system).
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The group that owns a runner pod's volumes (`fsGroup`): the runner image's user's group. A
/// Secret volume's files are the kubelet's (root) with the Secret's mode (0400 for connection
/// secrets), so without it a non-root runner could not read its credentials; with it the kubelet
/// gives them to this group, and the container's user is in it whatever its uid.
pub const RUNNER_FS_GROUP: i64 = 65532;

/// The security context of every runner pod (non-root, volumes owned by [`RUNNER_FS_GROUP`], the
/// runtime's default seccomp profile).
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        fs_group: Some(RUNNER_FS_GROUP),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// What an attempt's Kubernetes Job needs to know besides the launch.
#[derive(Clone, Debug)]
pub struct AttemptSpec<'a> {
    /// The worker size.
    pub worker: WorkerSize,
    /// `timeoutMinutes`.
    pub timeout_minutes: i32,
    /// The Secret keys of the Connections the run uses.
    pub secrets: Vec<SecretKeyUse>,
    /// `spec.serviceAccountName`; `None`: the operator's runner account.
    pub service_account: Option<&'a str>,
    /// A streaming Job's attempt: no deadline, and a grace period for the batch in progress.
    pub stream: Option<StreamAttempt>,
    /// A distributed run's executor pods (`workers` above 1).
    pub executors: Option<u32>,
}

/// What shapes a streaming attempt's Kubernetes Job.
#[derive(Clone, Copy, Debug)]
pub struct StreamAttempt {
    /// `spec.streaming.windowSeconds`.
    pub window_seconds: u32,
    /// The Job's `metadata.generation` the attempt runs (a newer one rolls it).
    pub generation: i64,
}

/// The annotation of a streaming attempt's Kubernetes Job naming the generation of the Job whose
/// spec it runs.
pub const ANNOTATION_GENERATION: &str = "kglue.dev/job-generation";

/// How long past its window a streaming attempt's pod may take to end after SIGTERM: the batch
/// in progress is cut at the stop, then processed and committed.
pub const STREAM_STOP_MARGIN_SECONDS: i64 = 120;

/// The annotation of a distributed attempt's Kubernetes Job: how many executor pods it waits for
/// (the operator starts them once its pod runs: `super::executors`).
pub const ANNOTATION_EXECUTORS: &str = "kglue.dev/executors";

/// Whether attempt Job `job` runs an older generation of its streaming Job than `generation`.
pub fn stale_stream(job: &BatchJob, generation: Option<i64>) -> bool {
    let built = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_GENERATION))
        .and_then(|g| g.parse::<i64>().ok());
    matches!((built, generation), (Some(built), Some(now)) if built < now)
}

/// The Kubernetes Job of an attempt. Pure.
pub fn build_job(owner: &Owner, launch: &Launch, spec: &AttemptSpec, settings: &RunnerSettings) -> BatchJob {
    let labels = labels(owner, &launch.run_id, launch.attempt);
    let (WorkerResources { cpu, memory_gib }, resources) = worker_resources(settings, spec.worker);
    let mut command = AttemptCommand::in_pod(
        owner.kind,
        &owner.name,
        &launch.run_id,
        launch.attempt,
        &launch.arguments,
        spec.worker,
        WorkerResources { cpu, memory_gib },
    )
    .allowing_local_paths(&settings.local_paths);
    // A stream runs until stopped: no deadline, and the time to commit the batch in progress.
    let stream = spec.stream.filter(|_| launch.settle.is_none());
    // A settle attempt runs no plan, and a stream runs in one pod.
    let executors = spec.executors.filter(|_| launch.settle.is_none() && stream.is_none());
    if let Some(workers) = executors {
        command = command.distributed(workers, SCHEDULER_PORT);
    }
    if let Some(mode) = launch.settle {
        command = command.settling(mode);
    }
    let metrics = stream.and(settings.stream_metrics_address.as_deref());
    if let Some(address) = metrics {
        command = command.serving_metrics(address);
    }
    let mut ports: Vec<ContainerPort> = metrics
        .and_then(|address| address.rsplit_once(':')?.1.parse::<i32>().ok())
        .map(|port| ContainerPort {
            name: Some("metrics".into()),
            container_port: port,
            ..ContainerPort::default()
        })
        .into_iter()
        .collect();
    if executors.is_some() {
        ports.push(ContainerPort {
            name: Some("scheduler".into()),
            container_port: i32::from(SCHEDULER_PORT),
            ..ContainerPort::default()
        });
    }
    let ports = (!ports.is_empty()).then_some(ports);
    let args = command.to_args();
    let (volumes, mounts) = run_volumes(memory_gib, &spec.secrets);
    let container = Container {
        name: "runner".into(),
        image: Some(settings.image.clone()),
        args: Some(args),
        env: Some(POD_ENV.iter().map(|(name, path)| field_env(name, path)).collect()),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        ports,
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    BatchJob {
        metadata: ObjectMeta {
            name: Some(launch.job_name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: {
                let annotations: BTreeMap<String, String> = stream
                    .map(|s| (ANNOTATION_GENERATION.to_string(), s.generation.to_string()))
                    .into_iter()
                    .chain(executors.map(|n| (ANNOTATION_EXECUTORS.to_string(), n.to_string())))
                    .collect();
                (!annotations.is_empty()).then_some(annotations)
            },
            owner_references: Some(vec![controller_reference(owner.kind.as_str(), &owner.name, &owner.uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(BatchJobSpec {
            // Retries are the operator's, so that every attempt is recorded with its own id.
            backoff_limit: Some(0),
            active_deadline_seconds: match stream {
                Some(_) => None,
                None => Some(i64::from(spec.timeout_minutes) * 60),
            },
            // None until the run is recorded (`super::retire`): a TTL running from the Job's end
            // would delete it and its RunResult while an operator is down, and with them the
            // only record of how the attempt ended.
            // A cleanup attempt is followed by nothing: it may go as soon as its TTL passes.
            ttl_seconds_after_finished: (launch.settle == Some(SettleMode::Cleanup)).then_some(settings.ttl_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(spec.service_account.unwrap_or(&settings.service_account).to_string()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(restricted_pod()),
                    termination_grace_period_seconds: stream
                        .map(|s| i64::from(s.window_seconds) + STREAM_STOP_MARGIN_SECONDS),
                    ..PodSpec::default()
                }),
            },
            ..BatchJobSpec::default()
        }),
        status: None,
    }
}

/// How many executor pods attempt Job `job` waits for (its [`ANNOTATION_EXECUTORS`]).
pub fn executors_wanted(job: &BatchJob) -> Option<u32> {
    job.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_EXECUTORS)?
        .parse()
        .ok()
        .filter(|n| *n > 1)
}

/// The Kubernetes Job of attempt `driver`'s executor pods: `driver`'s name and `-exec`.
pub fn executors_job_name(driver: &str) -> String {
    format!("{driver}-exec")
}

/// The Kubernetes Job of a distributed attempt's `workers` executor pods, which register with the
/// scheduler at `scheduler` (the attempt pod's IP). Owned by the attempt's Kubernetes Job
/// `driver`, so that they go with it; sized, mounted and secured as the attempt's pod, under the
/// same ServiceAccount (the pipeline's cloud identity reads the stores), without an API token
/// (an executor never talks to Kubernetes). Not labelled with the owner's UID: the operator
/// selects attempts by it. Pure.
pub fn build_executors(
    owner: &Owner,
    driver: &BatchJob,
    workers: u32,
    scheduler: &str,
    spec: &AttemptSpec,
    settings: &RunnerSettings,
) -> BatchJob {
    let driver_name = driver.metadata.name.clone().unwrap_or_default();
    let driver_labels = driver.metadata.labels.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = driver_labels
        .into_iter()
        .filter(|(key, _)| key != LABEL_OWNER_UID)
        .collect();
    labels.insert(LABEL_EXECUTOR_OF.to_string(), driver_name.clone());
    let (worker, resources) = worker_resources(settings, spec.worker);
    let command = ExecutorCommand {
        scheduler: scheduler.to_string(),
        slots: worker.cpu,
        memory_bytes: worker.pool_bytes(),
        spill_dir: SPILL_DIR.into(),
        secrets_dir: SECRETS_DIR.into(),
        // Kubernetes expands it from the container's environment: the pod's IP.
        advertise_host: format!("$({POD_IP_ENV})"),
        lifetime: Lifetime::Pod,
        connect_timeout_seconds: POD_CONNECT_TIMEOUT_SECONDS,
        run_id: labels.get(kglue_crds::protocol::attempt::LABEL_RUN_ID).cloned(),
        allow_local_paths: settings.local_paths.clone(),
    };
    let (volumes, mounts) = run_volumes(worker.memory_gib, &spec.secrets);
    let container = Container {
        name: "executor".into(),
        image: Some(settings.image.clone()),
        args: Some(command.to_args()),
        env: Some(vec![field_env(POD_IP_ENV, "status.podIP")]),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let workers = i32::try_from(workers).unwrap_or(i32::MAX);
    BatchJob {
        metadata: ObjectMeta {
            name: Some(executors_job_name(&driver_name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: driver_name,
                uid: driver.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                // Nothing waits on them: they are deleted in the background with their owner.
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(BatchJobSpec {
            completions: Some(workers),
            parallelism: Some(workers),
            // A lost executor pod is replaced (Ballista runs its tasks again elsewhere meanwhile);
            // the run fails once the driver has had no executor for a while.
            backoff_limit: Some(workers),
            active_deadline_seconds: Some(i64::from(spec.timeout_minutes) * 60),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(spec.service_account.unwrap_or(&settings.service_account).to_string()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(restricted_pod()),
                    ..PodSpec::default()
                }),
            },
            ..BatchJobSpec::default()
        }),
        status: None,
    }
}

/// What to do about the executor pods of attempt Job `driver` (its pods `driver_pods`), given
/// whether their Kubernetes Job exists. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecutorsStep {
    /// Not a distributed attempt, or nothing to change.
    Nothing,
    /// The attempt's pod has no IP yet: look again soon.
    Wait,
    /// Create them, registering with the scheduler at this URL.
    Create {
        /// `http://<pod IP>:<port>`.
        scheduler: String,
        /// How many.
        workers: u32,
    },
    /// The attempt is ending: delete them (their pods end with it).
    Delete,
}

/// The step for attempt Job `driver`'s executors. Pure.
pub fn executors_step(driver: &BatchJob, driver_pods: &[Pod], ending: bool, exists: bool) -> ExecutorsStep {
    let Some(workers) = executors_wanted(driver) else {
        return ExecutorsStep::Nothing;
    };
    if ending {
        return if exists {
            ExecutorsStep::Delete
        } else {
            ExecutorsStep::Nothing
        };
    }
    if exists {
        return ExecutorsStep::Nothing;
    }
    let address = driver_pods
        .iter()
        .filter(|p| pod_running(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty()));
    match address {
        // An IPv6 address needs brackets in a URL.
        Some(ip) if ip.contains(':') => ExecutorsStep::Create {
            scheduler: format!("http://[{ip}]:{SCHEDULER_PORT}"),
            workers,
        },
        Some(ip) => ExecutorsStep::Create {
            scheduler: format!("http://{ip}:{SCHEDULER_PORT}"),
            workers,
        },
        None => ExecutorsStep::Wait,
    }
}

/// The executor pods of distributed attempt Job `driver` as its run shows them: how many it asked
/// for, and how many of `executors` run. `None` for a one-pod attempt. Pure.
pub fn executor_count(driver: &BatchJob, executors: &[Pod]) -> Option<ExecutorCount> {
    let requested = executors_wanted(driver)?;
    Some(ExecutorCount {
        requested: i32::try_from(requested).unwrap_or(i32::MAX),
        running: i32::try_from(executors.iter().filter(|p| pod_running(p)).count()).unwrap_or(i32::MAX),
    })
}

/// `state` of an attempt whose executor pods are `executors`: an attempt is over only when no
/// pod of it runs, its executors' included (they may still write staged files).
pub fn with_executors(state: AttemptJob, executors: &[Pod]) -> AttemptJob {
    let over = matches!(
        state,
        AttemptJob::Complete | AttemptJob::Failed { .. } | AttemptJob::Suspended
    );
    if over && executors.iter().any(pod_alive) {
        AttemptJob::Running
    } else {
        state
    }
}

/// What an attempt's Kubernetes Job is doing, from its status and its pods. An attempt is over
/// only when no pod of it runs any more: a Job past its deadline (condition FailureTarget) or
/// suspended to stop its run is still running while its pod terminates, so that a retry or a
/// settle attempt never works beside a process that may still write. Pure.
pub fn attempt_state(job: &BatchJob, pods: &[Pod]) -> AttemptJob {
    let status = job.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    let pod_alive = pods.iter().any(pod_alive);
    let drained = !pod_alive && status.active.unwrap_or(0) == 0 && status.terminating.unwrap_or(0) == 0;
    if condition("Complete").is_some() {
        return AttemptJob::Complete;
    }
    if let Some(failed) = condition("Failed").filter(|_| drained) {
        return AttemptJob::Failed {
            reason: failed.reason.clone().unwrap_or_default(),
            detail: pod_detail(pods).unwrap_or_else(|| failed.message.clone().unwrap_or_default()),
        };
    }
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    if suspended && condition("Suspended").is_some() && drained {
        return AttemptJob::Suspended;
    }
    let ending = condition("FailureTarget").is_some() || condition("Failed").is_some();
    if status.ready.unwrap_or(0) > 0 || pods.iter().any(pod_running) || ending {
        AttemptJob::Running
    } else {
        AttemptJob::Pending
    }
}

/// Whether a pod may still run the runner: not ended, whether or not it is being deleted.
fn pod_alive(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pod_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// How the runner container of the newest pod ended: exit code, reason, termination message.
pub fn pod_detail(pods: &[Pod]) -> Option<String> {
    let pod = pods.iter().max_by_key(|p| p.metadata.creation_timestamp.clone())?;
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.clone());
    match terminated {
        Some(t) => {
            let mut detail = format!("exit code {}", t.exit_code);
            if let Some(reason) = t.reason.filter(|r| !r.is_empty()) {
                detail.push_str(&format!(" ({reason})"));
            }
            if let Some(message) = t.message.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()) {
                let tail: String = message
                    .chars()
                    .rev()
                    .take(1000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                detail.push_str(&format!(": {tail}"));
            }
            Some(detail)
        }
        None => status.message.clone().or_else(|| status.reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use crate::settings::WorkerSizes;

    fn owner() -> Owner {
        Owner {
            kind: RunOwnerKind::Job,
            name: "clean".into(),
            namespace: "lake".into(),
            uid: "uid-1".into(),
        }
    }

    /// The runner container's argument after `flag` in a built Kubernetes Job.
    fn arg_after(job: &serde_json::Value, flag: &str) -> Option<String> {
        let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array()?;
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1)?.as_str().map(str::to_string)
    }

    fn settings() -> RunnerSettings {
        RunnerSettings {
            image: "kglue/runner:0.1.0".into(),
            service_account: "kglue-runner".into(),
            ttl_seconds: 86400,
            retry_backoff: std::time::Duration::from_secs(10),
            worker_sizes: WorkerSizes::default(),
            local_paths: Vec::new(),
            stream_metrics_address: None,
        }
    }

    #[test]
    fn configured_worker_sizes_reach_the_pod_and_the_runner() {
        let mut settings = settings();
        settings.worker_sizes = WorkerSizes::parse(r#"{"Medium":{"cpu":3,"memoryGiB":6}}"#).expect("parses");
        let spec = AttemptSpec {
            worker: WorkerSize::Medium,
            timeout_minutes: 30,
            secrets: vec![],
            service_account: None,
            stream: None,
            executors: None,
        };
        let value = serde_json::to_value(build_job(&owner(), &launch(), &spec, &settings)).expect("serialises");
        assert_eq!(
            value["spec"]["template"]["spec"]["serviceAccountName"], "kglue-runner",
            "without serviceAccountName, the operator's runner account"
        );
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["memory"], "6Gi");
        assert_eq!(container["resources"]["requests"]["cpu"], "3");
        assert_eq!(arg_after(&value, "--cpus").as_deref(), Some("3"));
        assert_eq!(arg_after(&value, "--memory-gib").as_deref(), Some("6"));
        // Sizes not named keep their defaults.
        assert_eq!(
            settings.worker_sizes.get(WorkerSize::Large),
            WorkerSize::Large.default_resources()
        );
    }

    #[test]
    fn a_streaming_attempt_has_no_deadline_a_grace_period_for_its_batch_and_its_generation() {
        let spec = AttemptSpec {
            worker: WorkerSize::Small,
            timeout_minutes: 30,
            secrets: vec![],
            service_account: None,
            stream: Some(StreamAttempt {
                window_seconds: 100,
                generation: 4,
            }),
            executors: None,
        };
        let mut settings = settings();
        settings.stream_metrics_address = Some("0.0.0.0:9464".into());
        let job = build_job(&owner(), &launch(), &spec, &settings);
        let value = serde_json::to_value(&job).expect("serialises");
        assert!(value["spec"].get("activeDeadlineSeconds").is_none(), "{value}");
        assert_eq!(value["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 220);
        assert_eq!(value["metadata"]["annotations"][ANNOTATION_GENERATION], "4");
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(arg_after(&value, "--metrics-address").as_deref(), Some("0.0.0.0:9464"));
        assert_eq!(container["ports"][0]["name"], "metrics");
        assert_eq!(container["ports"][0]["containerPort"], 9464);
        assert!(!stale_stream(&job, Some(4)));
        assert!(stale_stream(&job, Some(5)));
        // A batch attempt keeps its deadline and carries no generation.
        let batch = build_job(&owner(), &launch(), &AttemptSpec { stream: None, ..spec }, &settings);
        let value = serde_json::to_value(&batch).expect("serialises");
        assert_eq!(value["spec"]["activeDeadlineSeconds"], 1800);
        assert_eq!(
            arg_after(&value, "--metrics-address"),
            None,
            "no metrics endpoint for a batch run"
        );
        assert!(!stale_stream(&batch, Some(5)));
    }

    #[test]
    fn bad_worker_sizes_name_the_problem() {
        let unknown = WorkerSizes::parse(r#"{"Huge":{"cpu":1,"memoryGiB":1}}"#).expect_err("unknown size");
        assert!(
            unknown.contains("\"Huge\"") && unknown.contains("Small, Medium"),
            "{unknown}"
        );
        let zero = WorkerSizes::parse(r#"{"Small":{"cpu":0,"memoryGiB":1}}"#).expect_err("zero cpu");
        assert!(zero.contains("Small needs at least 1 CPU"), "{zero}");
        let typo = WorkerSizes::parse(r#"{"Small":{"cpu":1,"memory":2}}"#).expect_err("unknown field");
        assert!(typo.contains("memory"), "{typo}");
    }

    fn launch() -> Launch {
        Launch {
            job_name: "clean-jr-0123456789-0".into(),
            run_id: "jr-0123456789".into(),
            attempt: 0,
            arguments: BTreeMap::from([("day".to_string(), "2024-05-01".to_string())]),
            settle: None,
        }
    }

    #[test]
    fn the_kubernetes_job_carries_owner_deadline_ttl_size_and_least_privilege() {
        let connection: kglue_crds::connection::ConnectionSpec =
            serde_json::from_value(serde_json::json!({"s3": {"credentialsSecretRef": {"name": "lake-creds"}}}))
                .expect("a Connection spec");
        let spec = AttemptSpec {
            worker: WorkerSize::Medium,
            timeout_minutes: 30,
            secrets: connection.secret_keys(),
            service_account: Some("orders-pipeline"),
            stream: None,
            executors: None,
        };
        let job = build_job(&owner(), &launch(), &spec, &settings());
        let value = serde_json::to_value(&job).expect("serialises");
        assert_eq!(value["metadata"]["name"], "clean-jr-0123456789-0");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(
            value["metadata"]["ownerReferences"][0]["apiVersion"],
            "kglue.dev/v1alpha1"
        );
        assert_eq!(value["metadata"]["labels"]["kglue.dev/run-id"], "jr-0123456789");
        assert_eq!(
            value["spec"]["template"]["spec"]["serviceAccountName"], "orders-pipeline",
            "the Job's own account"
        );
        assert_eq!(value["spec"]["backoffLimit"], 0);
        assert_eq!(value["spec"]["activeDeadlineSeconds"], 1800);
        assert!(
            value["spec"]["ttlSecondsAfterFinished"].is_null(),
            "the TTL is set once the run is recorded"
        );
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let container = &pod["containers"][0];
        assert_eq!(container["resources"]["limits"]["memory"], "8Gi");
        assert_eq!(container["resources"]["requests"]["cpu"], "2");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        // The projected Secret's files (mode 0400, the kubelet's) are readable by the non-root
        // runner only through the pod's fsGroup.
        assert_eq!(pod["securityContext"]["fsGroup"], RUNNER_FS_GROUP);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
        assert_eq!(&args[..3], ["attempt", "--kind", "Job"]);
        let at = args.iter().position(|a| a == "--arguments").expect("arguments passed");
        assert_eq!(args[at + 1], r#"{"day":"2024-05-01"}"#);
        assert!(args.contains(&SECRETS_DIR.to_string()));
        let sources = &pod["volumes"][1]["projected"]["sources"];
        assert_eq!(sources[0]["secret"]["items"][0]["path"], "lake-creds/AWS_ACCESS_KEY_ID");
        assert_eq!(sources[1]["secret"]["optional"], true);
    }

    fn job_with(conditions: &[(&str, &str)], ready: i32) -> BatchJob {
        BatchJob {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(type_, reason)| JobCondition {
                            type_: type_.to_string(),
                            status: "True".into(),
                            reason: Some(reason.to_string()),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ready: Some(ready),
                ..JobStatus::default()
            }),
            ..BatchJob::default()
        }
    }

    #[test]
    fn attempt_states_follow_the_job_conditions() {
        assert_eq!(attempt_state(&job_with(&[], 0), &[]), AttemptJob::Pending);
        assert_eq!(attempt_state(&job_with(&[], 1), &[]), AttemptJob::Running);
        assert_eq!(
            attempt_state(&job_with(&[("Complete", "")], 0), &[]),
            AttemptJob::Complete
        );
        assert!(matches!(
            attempt_state(&job_with(&[("Failed", "DeadlineExceeded")], 0), &[]),
            AttemptJob::Failed { reason, .. } if reason == "DeadlineExceeded"
        ));
    }

    fn pod(phase: &str) -> Pod {
        Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn an_attempt_is_over_only_when_no_pod_of_it_runs() {
        // Past its deadline, its pod still terminating: still running, so nothing follows it yet.
        let deadline = job_with(&[("FailureTarget", "DeadlineExceeded")], 0);
        assert_eq!(attempt_state(&deadline, &[pod("Running")]), AttemptJob::Running);
        assert_eq!(attempt_state(&deadline, &[]), AttemptJob::Running);
        let failed = job_with(&[("Failed", "DeadlineExceeded")], 0);
        assert_eq!(attempt_state(&failed, &[pod("Running")]), AttemptJob::Running);
        assert!(matches!(
            attempt_state(&failed, &[pod("Failed")]),
            AttemptJob::Failed { .. }
        ));
        let mut terminating = failed.clone();
        if let Some(status) = terminating.status.as_mut() {
            status.terminating = Some(1);
        }
        assert_eq!(attempt_state(&terminating, &[]), AttemptJob::Running);

        // Suspended to stop it: Suspended once the Job controller says so and its pod is gone.
        let mut suspended = job_with(&[("Suspended", "JobSuspended")], 0);
        suspended.spec = Some(BatchJobSpec {
            suspend: Some(true),
            ..BatchJobSpec::default()
        });
        assert_eq!(attempt_state(&suspended, &[pod("Running")]), AttemptJob::Running);
        assert_eq!(attempt_state(&suspended, &[pod("Failed")]), AttemptJob::Suspended);
        let mut asked = job_with(&[], 0);
        asked.spec = suspended.spec.clone();
        assert_eq!(
            attempt_state(&asked, &[]),
            AttemptJob::Pending,
            "not yet seen by the Job controller"
        );
    }

    #[test]
    fn a_settle_attempt_runs_the_runner_in_settle_mode_for_the_attempt() {
        let spec = AttemptSpec {
            worker: WorkerSize::Small,
            timeout_minutes: 30,
            secrets: vec![],
            service_account: None,
            stream: None,
            executors: None,
        };
        let settle = Launch {
            job_name: "clean-jr-0123456789-0-s1".into(),
            settle: Some(kglue_crds::protocol::attempt::SettleMode::Commit),
            ..launch()
        };
        let value = serde_json::to_value(build_job(&owner(), &settle, &spec, &settings())).expect("serialises");
        assert_eq!(value["metadata"]["name"], "clean-jr-0123456789-0-s1");
        assert_eq!(arg_after(&value, "--settle").as_deref(), Some("commit"));
        assert_eq!(arg_after(&value, "--attempt").as_deref(), Some("0"));
    }

    fn distributed_spec() -> AttemptSpec<'static> {
        AttemptSpec {
            worker: WorkerSize::Medium,
            timeout_minutes: 30,
            secrets: vec![],
            service_account: Some("orders-pipeline"),
            stream: None,
            executors: Some(3),
        }
    }

    fn running_pod(ip: Option<&str>) -> Pod {
        let mut pod = pod("Running");
        if let Some(status) = pod.status.as_mut() {
            status.pod_ip = ip.map(str::to_string);
        }
        pod
    }

    #[test]
    fn a_distributed_attempt_hosts_the_scheduler_and_its_executors_follow_its_pod() {
        let mut driver = build_job(&owner(), &launch(), &distributed_spec(), &settings());
        let value = serde_json::to_value(&driver).expect("serialises");
        assert_eq!(arg_after(&value, "--workers").as_deref(), Some("3"));
        assert_eq!(arg_after(&value, "--scheduler-port").as_deref(), Some("50050"));
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["name"], "scheduler");
        assert_eq!(executors_wanted(&driver), Some(3));

        // A settle attempt and a one-pod Job have no executors.
        let settle = Launch {
            settle: Some(SettleMode::Commit),
            ..launch()
        };
        let settling = build_job(&owner(), &settle, &distributed_spec(), &settings());
        assert_eq!(executors_wanted(&settling), None);
        assert_eq!(
            arg_after(&serde_json::to_value(&settling).expect("serialises"), "--workers"),
            None
        );
        let one = AttemptSpec {
            executors: None,
            ..distributed_spec()
        };
        assert_eq!(
            executors_wanted(&build_job(&owner(), &launch(), &one, &settings())),
            None
        );

        // Created once the attempt's pod runs with an IP; deleted once the attempt ends.
        assert_eq!(
            executors_step(&driver, &[], false, false),
            ExecutorsStep::Wait,
            "no pod yet"
        );
        assert_eq!(
            executors_step(&driver, &[running_pod(None)], false, false),
            ExecutorsStep::Wait
        );
        let step = executors_step(&driver, &[running_pod(Some("10.0.0.7"))], false, false);
        assert_eq!(
            step,
            ExecutorsStep::Create {
                scheduler: "http://10.0.0.7:50050".into(),
                workers: 3
            }
        );
        assert_eq!(
            executors_step(&driver, &[running_pod(Some("fd00::7"))], false, false),
            ExecutorsStep::Create {
                scheduler: "http://[fd00::7]:50050".into(),
                workers: 3
            }
        );
        assert_eq!(
            executors_step(&driver, &[running_pod(Some("10.0.0.7"))], false, true),
            ExecutorsStep::Nothing
        );
        assert_eq!(executors_step(&driver, &[], true, true), ExecutorsStep::Delete);
        assert_eq!(executors_step(&driver, &[], true, false), ExecutorsStep::Nothing);

        driver.metadata.uid = Some("driver-uid".into());
        let executors = build_executors(
            &owner(),
            &driver,
            3,
            "http://10.0.0.7:50050",
            &distributed_spec(),
            &settings(),
        );
        let value = serde_json::to_value(&executors).expect("serialises");
        assert_eq!(value["metadata"]["name"], "clean-jr-0123456789-0-exec");
        let owner_ref = &value["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner_ref["kind"], &owner_ref["uid"], &owner_ref["apiVersion"]),
            (&json_str("Job"), &json_str("driver-uid"), &json_str("batch/v1")),
            "owned by the attempt's Kubernetes Job"
        );
        let labels = &value["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels[LABEL_EXECUTOR_OF], "clean-jr-0123456789-0");
        assert_eq!(labels["kglue.dev/run-id"], "jr-0123456789");
        assert!(
            labels.get(LABEL_OWNER_UID).is_none() && value["metadata"]["labels"].get(LABEL_OWNER_UID).is_none(),
            "not selected as an attempt: {labels}"
        );
        assert_eq!(value["spec"]["completions"], 3);
        assert_eq!(value["spec"]["parallelism"], 3);
        assert_eq!(value["spec"]["activeDeadlineSeconds"], 1800);
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(
            pod["serviceAccountName"], "orders-pipeline",
            "the pipeline's identity reads the stores"
        );
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let container = &pod["containers"][0];
        assert_eq!(container["resources"]["limits"]["memory"], "8Gi");
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
        let after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|at| args.get(at + 1))
                .cloned()
        };
        assert_eq!(args[0], "executor");
        assert_eq!(after("--scheduler").as_deref(), Some("http://10.0.0.7:50050"));
        assert_eq!(
            after("--slots").as_deref(),
            Some("2"),
            "one task slot per CPU of the size"
        );
        assert_eq!(after("--lifetime").as_deref(), Some("pod"));
        assert_eq!(after("--advertise-host").as_deref(), Some("$(KGLUE_POD_IP)"));
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "status.podIP"
        );
        let memory: u64 = after("--memory-bytes").and_then(|m| m.parse().ok()).expect("memory");
        assert_eq!(memory, WorkerResources { cpu: 2, memory_gib: 8 }.pool_bytes());
    }

    fn json_str(text: &str) -> serde_json::Value {
        serde_json::Value::String(text.into())
    }

    #[test]
    fn a_distributed_attempt_is_over_only_when_its_executors_are() {
        let failed = AttemptJob::Failed {
            reason: "BackoffLimitExceeded".into(),
            detail: "exit code 137".into(),
        };
        assert_eq!(with_executors(failed.clone(), &[pod("Running")]), AttemptJob::Running);
        assert_eq!(with_executors(failed.clone(), &[pod("Pending")]), AttemptJob::Running);
        assert_eq!(
            with_executors(failed.clone(), &[pod("Failed"), pod("Succeeded")]),
            failed
        );
        assert_eq!(
            with_executors(AttemptJob::Complete, &[pod("Running")]),
            AttemptJob::Running
        );
        assert_eq!(with_executors(AttemptJob::Complete, &[]), AttemptJob::Complete);
        assert_eq!(
            with_executors(AttemptJob::Pending, &[pod("Running")]),
            AttemptJob::Pending
        );
    }

    #[test]
    fn a_distributed_run_shows_its_executors_requested_and_running() {
        let driver = build_job(&owner(), &launch(), &distributed_spec(), &settings());
        let pods = [pod("Running"), pod("Pending"), pod("Running"), pod("Failed")];
        assert_eq!(
            executor_count(&driver, &pods),
            Some(ExecutorCount {
                requested: 3,
                running: 2
            })
        );
        let one = build_job(
            &owner(),
            &launch(),
            &AttemptSpec {
                executors: None,
                ..distributed_spec()
            },
            &settings(),
        );
        assert_eq!(executor_count(&one, &pods), None);
    }
}
