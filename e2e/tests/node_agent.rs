//! The node agent (`kglue-node-agent`) against a real kube-apiserver and the real Job controller:
//! Jobs complete and fail with real exit codes and termination messages, env and volumes come from
//! Secrets, ConfigMaps and the downward API, each pod talks to the API as its own service account
//! (RBAC enforced), deleted and timed-out pods are killed, unmapped images fail clearly.
//!
//! A custom harness (libtest-mimic): one control plane and one agent serve every case; each case
//! works in its own namespace and every wait has a timeout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kglue_e2e::harness::{self, ClusterEnv, namespaced_trial as trial};
use kglue_e2e::{ControlPlane, HOST_IMAGE, NodeAgent};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Longest any single wait may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// An image mapped (without tag) to a script written at setup.
const TOOL_IMAGE: &str = "example.com/kglue-tool";

struct Env {
    runtime: Runtime,
    client: Client,
    agent: NodeAgent,
    kubectl: PathBuf,
}

impl ClusterEnv for Env {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn client(&self) -> &Client {
        &self.client
    }

    fn failure_log(&self) -> Option<PathBuf> {
        Some(self.agent.log())
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let control_plane = match harness::start_control_plane() {
        Ok(control_plane) => control_plane,
        Err(code) => return code,
    };
    let env = match harness::set_up(|| setup(&control_plane)) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![
        trial(&env, "job_completes_and_its_output_is_in_the_log_file", job_completes),
        trial(
            &env,
            "failing_job_fails_after_backoff_limit_with_exit_code_and_message",
            job_fails,
        ),
        trial(
            &env,
            "env_and_volumes_come_from_secrets_and_config_maps",
            env_from_secrets_and_config_maps,
        ),
        trial(&env, "downward_api_fills_env_and_files", downward_api),
        trial(
            &env,
            "pods_use_their_own_service_account_and_rbac_applies",
            service_account_rbac,
        ),
        trial(&env, "deleting_a_running_pod_kills_its_process", delete_kills),
        trial(
            &env,
            "job_active_deadline_fails_the_job_and_kills_the_process",
            job_deadline,
        ),
        trial(
            &env,
            "pod_active_deadline_fails_the_pod_with_deadline_exceeded",
            pod_deadline,
        ),
        trial(
            &env,
            "unmapped_image_fails_the_pod_with_a_message_naming_it",
            unmapped_image,
        ),
        trial(
            &env,
            "on_failure_restarts_the_container_and_counts_restarts",
            on_failure_restarts,
        ),
        trial(&env, "init_containers_run_first_in_order", init_containers),
        trial(&env, "mapped_image_runs_its_executable_with_args", mapped_image),
        trial(&env, "start_and_status_latency", latency),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    // The agent stops before the control plane (it kills its processes first).
    drop(env);
    drop(control_plane);
    conclusion.exit_code()
}

fn setup(control_plane: &ControlPlane) -> Result<Env, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    let tool = control_plane.state_dir().join("kglue-tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho \"tool $*\"\necho \"pod dir $KGLUE_POD_DIR\"\n")?;
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let binary = Path::new(env!("CARGO_BIN_EXE_kglue-node-agent"));
    let agent = runtime.block_on(control_plane.start_node_agent(binary, &[(TOOL_IMAGE, &tool)]))?;
    let kubectl = bin_dir()?;
    Ok(Env {
        runtime,
        client,
        agent,
        kubectl,
    })
}

/// The kubectl built with the control plane.
fn bin_dir() -> Result<PathBuf, kglue_e2e::Error> {
    let output = std::process::Command::new(kglue_e2e::repo_root().join("e2e/kglue-cluster"))
        .arg("bin-dir")
        .output()
        .map_err(|source| kglue_e2e::Error::Spawn {
            what: "kglue-cluster bin-dir".into(),
            source,
        })?;
    Ok(Path::new(String::from_utf8_lossy(&output.stdout).trim()).join("kubectl"))
}

/// A batch/v1 Job running one container; `container` and `job_spec` are merged into the defaults.
fn job(name: &str, container: Value, pod_spec: Value, job_spec: Value) -> Result<Job, Failed> {
    let mut template_spec = json!({ "restartPolicy": "Never", "containers": [container] });
    merge(&mut template_spec, pod_spec);
    let mut spec = json!({
        "backoffLimit": 0,
        "template": { "metadata": { "labels": { "team": "data" } }, "spec": template_spec },
    });
    merge(&mut spec, job_spec);
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": spec,
    }))?)
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

fn host_container(script: &str, extra: Value) -> Value {
    let mut container = json!({
        "name": "main",
        "image": HOST_IMAGE,
        "command": ["sh", "-c", script, "sh"],
    });
    merge(&mut container, extra);
    container
}

async fn create_job(env: &Env, namespace: &str, job: &Job) -> Result<(), Failed> {
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), namespace);
    jobs.create(&PostParams::default(), job).await?;
    Ok(())
}

fn job_condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

/// Waits until the Job has condition `type_` (Complete or Failed) and returns it; fails at once
/// if it gets the other one.
async fn wait_job(env: &Env, namespace: &str, name: &str, type_: &str) -> Result<Job, Failed> {
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), namespace);
    let other = if type_ == "Complete" { "Failed" } else { "Complete" };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let job = jobs.get(name).await?;
        if job_condition(&job, type_).is_some() {
            return Ok(job);
        }
        if let Some(reason) = job_condition(&job, other) {
            let pods = describe_pods(env, namespace).await;
            return Err(format!("Job {name} is {other} ({reason}), expected {type_}; pods: {pods}").into());
        }
        if Instant::now() > deadline {
            let pods = describe_pods(env, namespace).await;
            return Err(format!(
                "Job {name} not {type_} within {}s; status {:?}; pods: {pods}",
                TIMEOUT.as_secs(),
                job.status
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn describe_pods(env: &Env, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.name_any(),
                    serde_json::to_string(&p.status).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => error.to_string(),
    }
}

async fn job_pods(env: &Env, namespace: &str, job: &str) -> Result<Vec<Pod>, Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?;
    Ok(list.items)
}

async fn one_job_pod(env: &Env, namespace: &str, job: &str) -> Result<Pod, Failed> {
    let mut pods = job_pods(env, namespace, job).await?;
    match pods.len() {
        1 => Ok(pods.remove(0)),
        n => Err(format!("Job {job} has {n} pods, expected 1").into()),
    }
}

fn pod_dir(env: &Env, pod: &Pod) -> PathBuf {
    env.agent.pod_dir(
        &pod.namespace().unwrap_or_default(),
        &pod.name_any(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn container_log(env: &Env, pod: &Pod, container: &str) -> String {
    std::fs::read_to_string(pod_dir(env, pod).join("logs").join(format!("{container}.log"))).unwrap_or_default()
}

fn expect_contains(haystack: &str, needle: &str, what: &str) -> Result<(), Failed> {
    if haystack.contains(needle) {
        Ok(())
    } else {
        Err(format!("{what} does not contain {needle:?}:\n{haystack}").into())
    }
}

fn terminated(pod: &Pod, container: &str) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)?
        .state
        .as_ref()?
        .terminated
        .clone()
}

/// The process id behind a running container (`containerID: kglue://PID`).
fn container_pid(pod: &Pod) -> Option<u32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .as_deref()?
        .strip_prefix("kglue://")?
        .parse()
        .ok()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // The state follows the command name in parentheses; `Z` is an exited, unreaped zombie.
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

async fn wait_pod(
    env: &Env,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Result<Pod, Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pod = pods.get_opt(name).await?;
        if let Some(pod) = pod.filter(|p| check(p)) {
            return Ok(pod);
        }
        if Instant::now() > deadline {
            let pods = describe_pods(env, namespace).await;
            return Err(format!("timed out waiting for {what}; pods: {pods}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_running_job_pod(env: &Env, namespace: &str, job: &str) -> Result<Pod, Failed> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let running = job_pods(env, namespace, job).await?.into_iter().find(is_running);
        if let Some(pod) = running {
            return Ok(pod);
        }
        if Instant::now() > deadline {
            return Err(format!("no pod of Job {job} ran within {}s", TIMEOUT.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------

fn job_completes(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let job = job(
            "hello",
            host_container("echo hi; echo to-stderr >&2", json!({})),
            json!({}),
            json!({}),
        )?;
        create_job(env, namespace, &job).await?;
        let job = wait_job(env, namespace, "hello", "Complete").await?;
        let status = job.status.unwrap_or_default();
        if status.succeeded != Some(1) {
            return Err(format!("expected 1 succeeded pod, got {status:?}").into());
        }
        let pod = one_job_pod(env, namespace, "hello").await?;
        let log = container_log(env, &pod, "main");
        expect_contains(&log, "hi\n", "the log")?;
        expect_contains(&log, "to-stderr\n", "the log")?;
        let state = terminated(&pod, "main").ok_or("no terminated state")?;
        if state.exit_code != 0 || state.reason.as_deref() != Some("Completed") {
            return Err(format!("unexpected terminated state {state:?}").into());
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded") {
            return Err("the pod is not Succeeded".into());
        }
        // The Job controller removed its tracking finalizer once it counted the pod.
        let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == "batch.kubernetes.io/job-tracking") {
            return Err("the job-tracking finalizer is still there".into());
        }
        Ok(())
    })
}

fn job_fails(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        // $1 is /dev/termination-log, rewritten to the container's termination-message file.
        let container = host_container(
            "echo 'disk full at row 7' > \"$1\"; exit 3",
            json!({ "args": ["/dev/termination-log"] }),
        );
        let job = job("fails", container, json!({}), json!({ "backoffLimit": 1 }))?;
        create_job(env, namespace, &job).await?;
        let job = wait_job(env, namespace, "fails", "Failed").await?;
        let status = job.status.clone().unwrap_or_default();
        if status.failed != Some(2) {
            return Err(format!("expected 2 failed pods, got {status:?}").into());
        }
        if job_condition(&job, "Failed").as_deref() != Some("BackoffLimitExceeded") {
            return Err(format!("unexpected Failed reason: {:?}", job_condition(&job, "Failed")).into());
        }
        let pods = job_pods(env, namespace, "fails").await?;
        if pods.len() != 2 {
            return Err(format!("expected 2 pods, found {}", pods.len()).into());
        }
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            let state = terminated(&pod, "main").ok_or("no terminated state")?;
            if phase.as_deref() != Some("Failed")
                || state.exit_code != 3
                || state.reason.as_deref() != Some("Error")
                || state.message.as_deref() != Some("disk full at row 7\n")
            {
                return Err(format!("pod {}: phase {phase:?}, state {state:?}", pod.name_any()).into());
            }
        }
        Ok(())
    })
}

fn env_from_secrets_and_config_maps(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), namespace);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": { "name": "db" },
                    "stringData": { "password": "s3cret", "user": "etl" },
                }))?,
            )
            .await?;
        let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), namespace);
        config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": { "name": "settings" },
                    "data": { "greeting": "hello", "mode": "fast" },
                }))?,
            )
            .await?;
        let script = r#"echo "password=$PASSWORD greeting=$GREETING combined=$COMBINED mode=$CFG_mode"
echo "file=$(cat "$DB_FILE")"
echo "cm=$(cat "$1")"
echo "args=$2""#;
        let container = host_container(
            script,
            json!({
                "args": ["/etc/settings/hello.txt", "$(GREETING)/$(MISSING)"],
                "env": [
                    { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } },
                    { "name": "GREETING", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "greeting" } } },
                    { "name": "COMBINED", "value": "$(GREETING)-$(PASSWORD)" },
                    { "name": "DB_FILE", "value": "/etc/db/password" },
                    { "name": "OPTIONAL", "valueFrom": { "secretKeyRef": { "name": "db", "key": "nope", "optional": true } } },
                ],
                "envFrom": [{ "configMapRef": { "name": "settings" }, "prefix": "CFG_" }],
                "volumeMounts": [
                    { "name": "db", "mountPath": "/etc/db", "readOnly": true },
                    { "name": "settings", "mountPath": "/etc/settings" },
                ],
            }),
        );
        let pod_spec = json!({ "volumes": [
            { "name": "db", "secret": { "secretName": "db" } },
            { "name": "settings", "configMap": { "name": "settings", "items": [{ "key": "greeting", "path": "hello.txt" }] } },
        ] });
        create_job(env, namespace, &job("env", container, pod_spec, json!({}))?).await?;
        wait_job(env, namespace, "env", "Complete").await?;
        let pod = one_job_pod(env, namespace, "env").await?;
        let log = container_log(env, &pod, "main");
        expect_contains(&log, "password=s3cret greeting=hello combined=hello-s3cret mode=fast\n", "the log")?;
        expect_contains(&log, "file=s3cret\n", "the log")?;
        expect_contains(&log, "cm=hello\n", "the log")?;
        expect_contains(&log, "args=hello/$(MISSING)\n", "the log")?;
        let volumes = pod_dir(env, &pod).join("volumes");
        if volumes.join("settings/mode").exists() {
            return Err("configMap items: only the listed keys are written".into());
        }
        Ok(())
    })
}

fn downward_api(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let field = |path: &str| json!({ "fieldRef": { "fieldPath": path } });
        let container = host_container(
            r#"echo "name=$POD_NAME ns=$POD_NAMESPACE uid=$POD_UID node=$NODE sa=$SA team=$TEAM ip=$IP"
echo "cpu=$CPU_MILLIS mem=$MEM_MIB"
echo "file-team=$(cat "$1")""#,
            json!({
                "args": ["/etc/podinfo/team"],
                "resources": { "limits": { "cpu": "250m", "memory": "64Mi" } },
                "env": [
                    { "name": "POD_NAME", "valueFrom": field("metadata.name") },
                    { "name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace") },
                    { "name": "POD_UID", "valueFrom": field("metadata.uid") },
                    { "name": "NODE", "valueFrom": field("spec.nodeName") },
                    { "name": "SA", "valueFrom": field("spec.serviceAccountName") },
                    { "name": "TEAM", "valueFrom": field("metadata.labels['team']") },
                    { "name": "IP", "valueFrom": field("status.podIP") },
                    { "name": "CPU_MILLIS", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "divisor": "1m" } } },
                    { "name": "MEM_MIB", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                ],
                "volumeMounts": [{ "name": "podinfo", "mountPath": "/etc/podinfo" }],
            }),
        );
        let pod_spec = json!({ "volumes": [{ "name": "podinfo", "projected": { "sources": [
            { "downwardAPI": { "items": [{ "path": "team", "fieldRef": { "fieldPath": "metadata.labels['team']" } }] } },
        ] } }] });
        create_job(env, namespace, &job("downward", container, pod_spec, json!({}))?).await?;
        wait_job(env, namespace, "downward", "Complete").await?;
        let pod = one_job_pod(env, namespace, "downward").await?;
        let log = container_log(env, &pod, "main");
        let expected = format!(
            "name={} ns={namespace} uid={} node={} sa=default team=data ip=127.0.0.1\n",
            pod.name_any(),
            pod.metadata.uid.as_deref().unwrap_or_default(),
            env.agent.node_name(),
        );
        expect_contains(&log, &expected, "the log")?;
        expect_contains(&log, "cpu=250 mem=64\n", "the log")?;
        expect_contains(&log, "file-team=data\n", "the log")?;
        Ok(())
    })
}

fn service_account_rbac(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let kubectl = env.kubectl.display().to_string();
        let objects = [
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "nobody" } }),
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "reader" } }),
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": "read-config-maps" },
                    "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }] }),
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": "reader" },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps" },
                    "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": namespace }] }),
        ];
        let applier = kglue_e2e::Applier::new(env.client.clone(), "node-agent-test").await?;
        for object in &objects {
            applier.apply(object, namespace, false).await?;
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
        // A failed kubectl is reported in the log; the Job itself succeeds.
        let nobody = host_container(
            "\"$1\" get secrets; echo \"kubectl exit=$?\"",
            json!({ "args": [kubectl] }),
        );
        let reader = json!({ "name": "main", "image": HOST_IMAGE, "command": [kubectl, "get", "configmaps", "-o", "name"] });
        harness::wait_until("the service accounts", TIMEOUT, || async { Ok(accounts.get_opt("reader").await?.is_some() && accounts.get_opt("nobody").await?.is_some()) }).await?;
        create_job(env, namespace, &job("nobody", nobody, json!({ "serviceAccountName": "nobody" }), json!({}))?).await?;
        create_job(env, namespace, &job("reader", reader, json!({ "serviceAccountName": "reader" }), json!({}))?).await?;
        let unmounted = host_container("test -z \"$KUBECONFIG\" && echo no-credentials", json!({}));
        let unmounted_spec = json!({ "automountServiceAccountToken": false });
        create_job(env, namespace, &job("unmounted", unmounted, unmounted_spec, json!({}))?).await?;
        wait_job(env, namespace, "nobody", "Complete").await?;
        wait_job(env, namespace, "reader", "Complete").await?;
        let nobody_log = container_log(env, &one_job_pod(env, namespace, "nobody").await?, "main");
        expect_contains(&nobody_log, "Forbidden", "the nobody pod's log")?;
        expect_contains(&nobody_log, &format!("system:serviceaccount:{namespace}:nobody"), "the nobody pod's log")?;
        expect_contains(&nobody_log, "kubectl exit=1", "the nobody pod's log")?;
        let reader_log = container_log(env, &one_job_pod(env, namespace, "reader").await?, "main");
        expect_contains(&reader_log, "configmap/kube-root-ca.crt", "the reader pod's log")?;
        wait_job(env, namespace, "unmounted", "Complete").await?;
        let unmounted = one_job_pod(env, namespace, "unmounted").await?;
        expect_contains(&container_log(env, &unmounted, "main"), "no-credentials", "the unmounted pod's log")?;
        if pod_dir(env, &unmounted).join("kubeconfig").exists() {
            return Err("a pod with automountServiceAccountToken: false got a kubeconfig".into());
        }
        Ok(())
    })
}

/// A bare pod that writes `done` into an emptyDir after `sleep` seconds, unless it is killed.
fn sleeper(name: &str, sleep: &str, extra_spec: Value) -> Result<Pod, Failed> {
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [host_container(
            &format!("echo started; sleep {sleep}; echo done > \"$1\""),
            json!({ "args": ["/data/done"], "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }),
        )],
        "volumes": [{ "name": "data", "emptyDir": {} }],
    });
    merge(&mut spec, extra_spec);
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name }, "spec": spec }),
    )?)
}

/// A sleep length no other process on the machine uses, so the `sleep` child can be found.
const SLEEP_DELETED: &str = "5.0371";

/// The pid of a live process with exactly this argv.
fn find_process(argv: &[&str]) -> Option<u32> {
    let wanted: String = argv.iter().map(|a| format!("{a}\0")).collect();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        (cmdline == wanted.as_bytes() && process_exists(pid)).then_some(pid)
    })
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn delete_kills(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        pods.create(&PostParams::default(), &sleeper("sleeper", SLEEP_DELETED, json!({}))?)
            .await?;
        let pod = wait_pod(env, namespace, "sleeper", "the pod to run", is_running).await?;
        let started = Instant::now();
        let pid = container_pid(&pod).ok_or("no container pid")?;
        if !process_exists(pid) {
            return Err(format!("process {pid} of a running pod does not exist").into());
        }
        let dir = pod_dir(env, &pod);
        pods.delete("sleeper", &DeleteParams::default()).await?;
        harness::wait_until("the pod to disappear", TIMEOUT, || async {
            Ok(pods.get_opt("sleeper").await?.is_none())
        })
        .await?;
        let gone_after = started.elapsed();
        if gone_after > Duration::from_secs(4) {
            return Err(format!("the pod took {gone_after:?} to go; it should be killed at once").into());
        }
        if process_exists(pid) {
            return Err(format!("process {pid} still runs after its pod was deleted").into());
        }
        // The shell's child (`sleep`) went with it: the whole process group is killed.
        if let Some(sleeping) = find_process(&["sleep", SLEEP_DELETED]) {
            return Err(format!("the container's child process {sleeping} survived the deletion").into());
        }
        // Past the point where the process would have written its file.
        tokio::time::sleep(Duration::from_secs(6).saturating_sub(started.elapsed())).await;
        if dir.join("volumes/data/done").exists() {
            return Err("the process finished its work although its pod was deleted".into());
        }
        expect_contains(
            &std::fs::read_to_string(dir.join("logs/main.log"))?,
            "started",
            "the log",
        )?;
        Ok(())
    })
}

fn job_deadline(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let container = host_container(
            "echo started; sleep 8; echo done > \"$1\"",
            json!({ "args": ["/data/done"], "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }),
        );
        let pod_spec = json!({ "volumes": [{ "name": "data", "emptyDir": {} }] });
        let started = Instant::now();
        create_job(
            env,
            namespace,
            &job("slow", container, pod_spec, json!({ "activeDeadlineSeconds": 2 }))?,
        )
        .await?;
        let pod = wait_running_job_pod(env, namespace, "slow").await?;
        let pid = container_pid(&pod).ok_or("no container pid")?;
        let job = wait_job(env, namespace, "slow", "Failed").await?;
        if job_condition(&job, "Failed").as_deref() != Some("DeadlineExceeded") {
            return Err(format!("unexpected Failed reason {:?}", job_condition(&job, "Failed")).into());
        }
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        let name = pod.name_any();
        harness::wait_until("the Job's pod to be deleted", TIMEOUT, || async {
            Ok(pods.get_opt(&name).await?.is_none())
        })
        .await?;
        if process_exists(pid) {
            return Err(format!("process {pid} still runs after the Job's deadline").into());
        }
        tokio::time::sleep(Duration::from_secs(9).saturating_sub(started.elapsed())).await;
        if pod_dir(env, &pod).join("volumes/data/done").exists() {
            return Err("the process finished its work although the Job's deadline passed".into());
        }
        Ok(())
    })
}

fn pod_deadline(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        pods.create(
            &PostParams::default(),
            &sleeper("bounded", "30.0173", json!({ "activeDeadlineSeconds": 2 }))?,
        )
        .await?;
        let pod = wait_pod(env, namespace, "bounded", "the pod to run", is_running).await?;
        let pid = container_pid(&pod).ok_or("no container pid")?;
        let pod = wait_pod(env, namespace, "bounded", "the pod to fail", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await?;
        let status = pod.status.clone().unwrap_or_default();
        if status.reason.as_deref() != Some("DeadlineExceeded") {
            return Err(format!("unexpected status {status:?}").into());
        }
        let state = terminated(&pod, "main").ok_or("no terminated state")?;
        if state.exit_code != 143 && state.exit_code != 137 {
            return Err(format!("expected a killed container (143/137), got {state:?}").into());
        }
        if process_exists(pid) {
            return Err(format!("process {pid} still runs after the pod's deadline").into());
        }
        Ok(())
    })
}

fn unmapped_image(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let container = json!({ "name": "main", "image": "example.com/not-mapped:1.0" });
        create_job(env, namespace, &job("unmapped", container, json!({}), json!({}))?).await?;
        wait_job(env, namespace, "unmapped", "Failed").await?;
        let pod = one_job_pod(env, namespace, "unmapped").await?;
        let status = pod.status.clone().unwrap_or_default();
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|s| s.state.as_ref()?.waiting.clone())
            .ok_or("no waiting container state")?;
        if status.phase.as_deref() != Some("Failed") || waiting.reason.as_deref() != Some("ImageNotMapped") {
            return Err(format!("unexpected status {status:?}").into());
        }
        expect_contains(
            &waiting.message.unwrap_or_default(),
            "example.com/not-mapped:1.0",
            "the container's message",
        )?;
        expect_contains(
            &status.message.unwrap_or_default(),
            "example.com/not-mapped:1.0",
            "the pod's message",
        )?;
        Ok(())
    })
}

fn on_failure_restarts(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let container = host_container(
            "if [ -e \"$1\" ]; then echo second run; exit 0; fi; touch \"$1\"; echo first run failed; exit 1",
            json!({
                "args": ["/data/marker"],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
            }),
        );
        let pod_spec = json!({ "restartPolicy": "OnFailure", "volumes": [{ "name": "data", "emptyDir": {} }] });
        create_job(
            env,
            namespace,
            &job("retry", container, pod_spec, json!({ "backoffLimit": 3 }))?,
        )
        .await?;
        wait_job(env, namespace, "retry", "Complete").await?;
        let pod = one_job_pod(env, namespace, "retry").await?;
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|s| s.first())
            .ok_or("no container status")?;
        let last = status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .ok_or("no last terminated state")?;
        if status.restart_count != 1 || last.exit_code != 1 {
            return Err(format!("unexpected container status {status:?}").into());
        }
        expect_contains(
            last.message.as_deref().unwrap_or_default(),
            "first run failed",
            "the first run's message",
        )?;
        let log = container_log(env, &pod, "main");
        expect_contains(
            &log,
            "first run failed\nsecond run\n",
            "the log (appended across restarts)",
        )?;
        Ok(())
    })
}

fn init_containers(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let mount = json!([{ "name": "work", "mountPath": "/work" }]);
        let step = |name: &str| {
            json!({ "name": name, "image": HOST_IMAGE, "command": ["sh", "-c", format!("sleep 0.2; echo {name} >> \"$1\""), "sh", "/work/order"], "volumeMounts": mount })
        };
        let main = host_container("cat \"$1\"", json!({ "args": ["/work/order"], "volumeMounts": mount }));
        let pod_spec = json!({ "initContainers": [step("first"), step("second")], "volumes": [{ "name": "work", "emptyDir": {} }] });
        create_job(env, namespace, &job("init", main, pod_spec, json!({}))?).await?;
        wait_job(env, namespace, "init", "Complete").await?;
        let pod = one_job_pod(env, namespace, "init").await?;
        let log = container_log(env, &pod, "main");
        if log != "first\nsecond\n" {
            return Err(format!("main saw {log:?}, expected the init containers' lines in order").into());
        }
        let init = pod
            .status
            .as_ref()
            .and_then(|s| s.init_container_statuses.clone())
            .unwrap_or_default();
        let done = init
            .iter()
            .filter(|s| s.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0))
            .count();
        if done != 2 {
            return Err(format!("expected 2 completed init containers: {init:?}").into());
        }
        Ok(())
    })
}

fn mapped_image(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let container = json!({ "name": "main", "image": format!("{TOOL_IMAGE}:1.2"), "args": ["crawl", "$(WHAT)"],
                                "env": [{ "name": "WHAT", "value": "sales" }] });
        create_job(env, namespace, &job("tool", container, json!({}), json!({}))?).await?;
        wait_job(env, namespace, "tool", "Complete").await?;
        let pod = one_job_pod(env, namespace, "tool").await?;
        let log = container_log(env, &pod, "main");
        expect_contains(&log, "tool crawl sales\n", "the log")?;
        expect_contains(&log, &format!("pod dir {}\n", pod_dir(env, &pod).display()), "the log")?;
        Ok(())
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Pod created → process started, and process exit → terminated status visible, for bare pods.
fn latency(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        let mut starts = Vec::new();
        let mut exits = Vec::new();
        for i in 0..5 {
            let name = format!("latency-{i}");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": { "name": name },
                "spec": { "restartPolicy": "Never", "containers": [host_container("date +%s.%N; sleep 0.3; date +%s.%N", json!({}))] },
            }))?;
            let created = unix_now();
            pods.create(&PostParams::default(), &pod).await?;
            // A watch, so the moment the status arrives is seen without polling delay.
            let finished = kube::runtime::wait::await_condition(pods.clone(), &name, |p: Option<&Pod>| {
                p.is_some_and(|p| terminated(p, "main").is_some())
            });
            let pod = tokio::time::timeout(TIMEOUT, finished)
                .await
                .map_err(|_| "timed out waiting for the pod to finish")??
                .ok_or("the pod vanished")?;
            let seen = unix_now();
            let log = container_log(env, &pod, "main");
            let times: Vec<f64> = log.lines().filter_map(|l| l.trim().parse().ok()).collect();
            let [started, ended] = times[..] else {
                return Err(format!("unexpected log {log:?}").into());
            };
            starts.push(started - created);
            exits.push(seen - ended);
        }
        let report = |values: &mut Vec<f64>| {
            values.sort_by(|a, b| a.total_cmp(b));
            format!("median {:.0} ms, max {:.0} ms", values[values.len() / 2] * 1000.0, values[values.len() - 1] * 1000.0)
        };
        eprintln!("pod created -> process started: {}", report(&mut starts));
        eprintln!("process exited -> terminated status seen by a watch: {}", report(&mut exits));
        if starts.iter().chain(&exits).any(|v| *v > 5.0) {
            return Err("a latency above 5 s".into());
        }
        Ok(())
    })
}
