//! What the operator's integration tests share: a `kglue-operator` process against a local
//! control plane, its metrics endpoint, and the CRDs installed from the committed YAML.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod chart;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kglue_e2e::{Applier, ControlPlane, NodeAgent, S3Server};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use libtest_mimic::Failed;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

pub use kglue_e2e::harness::{FIELD_MANAGER, install_crds};
/// Short, so the takeover case is quick; renewal every 4 s.
pub const LEASE_SECONDS: u64 = 6;
/// Renew this long before the Lease expires.
pub const RENEW_BEFORE_SECONDS: u64 = 2;
/// Where the Lease lives.
pub const LEASE_NAMESPACE: &str = "default";

/// A running `kglue-operator` process. Dropping it kills the process.
pub struct Operator {
    pub child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub identity_prefix: String,
}

impl Operator {
    /// Starts `kglue-operator` as replica `name`, with `extra` flags.
    pub fn start(control_plane: &ControlPlane, name: &str, extra: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_binary(
            env!("CARGO_BIN_EXE_kglue-operator").as_ref(),
            control_plane,
            name,
            extra,
        )
    }

    /// [`Operator::start`] with another build of the operator (the benchmark measures a release
    /// build).
    pub fn start_binary(
        binary: &std::path::Path,
        control_plane: &ControlPlane,
        name: &str,
        extra: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let metrics_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = control_plane.state_dir().join(format!("operator-{name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(control_plane.kubeconfig())
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--lease-namespace", LEASE_NAMESPACE])
            .args(["--lease-duration-seconds", &LEASE_SECONDS.to_string()])
            .args(["--renew-before-seconds", &RENEW_BEFORE_SECONDS.to_string()])
            .args(["--identity", name])
            .args(["--owner-pid", &std::process::id().to_string()])
            .args(extra)
            .env("RUST_LOG", "info,kglue_operator=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        Ok(Operator {
            child,
            metrics_port,
            log,
            identity_prefix: format!("{name}-"),
        })
    }

    /// `/metrics`, or an error while the endpoint is not up.
    pub fn metrics(&self) -> Result<String, Failed> {
        http_get(self.metrics_port, "/metrics")
    }

    /// The value of an unlabelled or fully labelled sample, e.g. `kglue_operator_leader`.
    pub fn sample(&self, series: &str) -> Option<f64> {
        let metrics = self.metrics().ok()?;
        metrics.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    pub fn is_leader(&self) -> bool {
        self.sample("kglue_operator_leader") == Some(1.0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// GET `path` on the loopback `port`; the body of a 200 response.
pub fn http_get(port: u16, path: &str) -> Result<String, Failed> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect :{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("GET {path}: {response}").into()),
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The image name the node agent maps to the `kglue` binary.
pub const RUNNER_IMAGE: &str = "ghcr.io/kglue/kglue-runner";
/// The operator's image, as the chart names it.
pub const OPERATOR_IMAGE: &str = "ghcr.io/kglue/kglue-operator";

/// A local cluster that runs pipelines: the control plane, the S3 server with `buckets`, the
/// node agent running the `kglue` runner for [`RUNNER_IMAGE`], the CRDs, and a namespace with the
/// runner's service account and Role (as `kglue-operator runner-rbac` prints them) and the
/// `lake-credentials` Secret holding the S3 server's keys.
pub struct Cluster {
    pub runtime: Runtime,
    pub client: Client,
    pub control_plane: ControlPlane,
    pub s3: S3Server,
    pub applier: Applier,
    pub namespace: String,
    /// The `kglue` binary (runner and CLI).
    pub kglue: PathBuf,
    /// Kept alive while the cluster is.
    _agent: NodeAgent,
}

impl Cluster {
    pub fn start(namespace: &str, buckets: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        let runner = kglue_e2e::workspace_binary("kglue")?;
        let agent_binary = kglue_e2e::workspace_binary("kglue-node-agent")?;
        let control_plane = ControlPlane::start()?;
        let s3 = S3Server::start()?;
        for bucket in buckets {
            s3.create_bucket(bucket)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let client = runtime.block_on(control_plane.client())?;
        runtime.block_on(install_crds(&client))?;
        let agent =
            runtime.block_on(control_plane.start_node_agent(&agent_binary, &[(RUNNER_IMAGE, runner.as_path())]))?;
        let applier = runtime.block_on(Applier::new(client.clone(), FIELD_MANAGER))?;
        runtime.block_on(install_runresult_policy(&client, namespace))?;
        runtime.block_on(async {
            create_runner_identity(&client, namespace, kglue_operator::rbac::RUNNER, |_| {}).await?;
            let pp = PostParams::default();
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": "lake-credentials", "labels": {"kglue.dev/secret-type": "connection"}},
                "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key(), "AWS_SECRET_ACCESS_KEY": s3.secret_key()},
            }))?;
            Api::<Secret>::namespaced(client.clone(), namespace)
                .create(&pp, &secret)
                .await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        Ok(Cluster {
            runtime,
            client,
            control_plane,
            s3,
            applier,
            namespace: namespace.to_string(),
            kglue: runner,
            _agent: agent,
        })
    }

    pub fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// Writes `body` to `s3://bucket/key`.
    pub fn land(&self, bucket: &str, key: &str, body: &str) -> Result<(), Failed> {
        let store = self.s3.store(bucket).map_err(|e| e.to_string())?;
        self.block(store.put(&ObjectPath::from(key), body.to_string().into()))
            .map_err(|e| format!("put s3://{bucket}/{key}: {e}"))?;
        Ok(())
    }

    /// Applies an object in the namespace.
    pub fn apply_object(&self, object: &Value) -> Result<(), Failed> {
        self.block(self.applier.apply(object, &self.namespace, false))
            .map_err(|e| format!("applying {object}: {e}"))?;
        Ok(())
    }

    /// Applies a manifest (a YAML string) in the namespace.
    pub fn apply(&self, yaml: &str) -> Result<(), Failed> {
        let object: Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        self.apply_object(&object)
    }

    /// The API of a kglue kind by its plural (`jobs`, `crawlers`, `workflows`, `triggers`,
    /// `connections`).
    pub fn api(&self, plural: &str) -> Api<DynamicObject> {
        let resource = match plural {
            "connections" => ApiResource::erase::<kglue_crds::Connection>(&()),
            "crawlers" => ApiResource::erase::<kglue_crds::Crawler>(&()),
            "workflows" => ApiResource::erase::<kglue_crds::Workflow>(&()),
            "triggers" => ApiResource::erase::<kglue_crds::Trigger>(&()),
            _ => ApiResource::erase::<kglue_crds::Job>(&()),
        };
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    pub fn annotate(&self, plural: &str, name: &str, key: &str, value: &str) -> Result<(), Failed> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.block(
            self.api(plural)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .map_err(|e| format!("annotating {plural}/{name}: {e}"))?;
        Ok(())
    }

    /// `status` of `plural`/`name`, as JSON.
    pub fn status(&self, plural: &str, name: &str) -> Result<Value, Failed> {
        let object = self
            .block(self.api(plural).get(name))
            .map_err(|e| format!("get {plural}/{name}: {e}"))?;
        Ok(object.data["status"].clone())
    }

    /// `status.runs` of `plural`/`name`, as JSON.
    pub fn runs(&self, plural: &str, name: &str) -> Result<Vec<Value>, Failed> {
        Ok(self.status(plural, name)?["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Runs the `kglue` CLI against the cluster: (succeeded, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> Result<(bool, String, String), Failed> {
        let output = Command::new(&self.kglue)
            .args(args)
            .env("KUBECONFIG", self.control_plane.kubeconfig())
            .output()
            .map_err(|e| format!("kglue {args:?}: {e}"))?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Waits until the `plural` object `name` has the condition Ready=True, up to `limit`.
    pub fn wait_ready(&self, plural: &str, name: &str, limit: Duration) -> Result<(), Failed> {
        self.wait_for(&format!("{plural}/{name} Ready"), limit, || {
            let status = self.status(plural, name)?;
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            Ok(ready.then_some(()))
        })
    }

    /// Polls `check` every 200 ms until it returns Some, up to `limit`; `what` names the wait.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        check: impl FnMut() -> Result<Option<T>, Failed>,
    ) -> Result<T, Failed> {
        wait_for(what, limit, check)
    }
}

/// Creates the runner's ServiceAccount, Role and RoleBinding named `name` in `namespace`, as
/// `kglue-operator runner-rbac` prints them, with `edit` applied to the Role first.
pub async fn create_runner_identity(
    client: &Client,
    namespace: &str,
    name: &str,
    edit: impl FnOnce(&mut Role),
) -> Result<(), kube::Error> {
    let (account, mut role, binding) = kglue_operator::rbac::runner_objects(name, namespace);
    edit(&mut role);
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&pp, &account)
        .await?;
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&pp, &role)
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&pp, &binding)
        .await?;
    Ok(())
}

/// Creates `namespace` and installs the chart's RunResult admission policy, bound to every
/// namespace of the cluster, so that every run of a suite reports through it. Returns once the API
/// server enforces it (a policy takes effect when its informer sees it): an admin's RunResult is
/// refused in `namespace`.
pub async fn install_runresult_policy(client: &Client, namespace: &str) -> Result<(), Box<dyn std::error::Error>> {
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    use kglue_operator::admission;
    kglue_e2e::create_namespace(client, namespace).await?;
    let pp = PostParams::default();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&pp, &admission::policy())
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&pp, &admission::binding("all", Default::default()))
        .await?;
    let probe: kglue_crds::RunResult = serde_json::from_value(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "RunResult", "metadata": {"name": "probe"},
        "spec": {"ownerKind": "Job", "ownerName": "probe", "runId": "jr-0", "attempt": 0, "outcome": "Failed"}
    }))?;
    let results: Api<kglue_crds::RunResult> = Api::namespaced(client.clone(), namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match results.create(&dry_run, &probe).await {
            Err(kube::Error::Api(status)) if status.message.contains("created only by a run's own pod") => {
                return Ok(());
            }
            _ if Instant::now() > deadline => {
                return Err("the RunResult admission policy is not enforced after 30 s".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Polls `check` every 200 ms until it returns Some, up to `limit`; `what` names the wait.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>, Failed>,
) -> Result<T, Failed> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Orders as the example's landing zone receives them: JSON lines, items nested.
pub fn orders_json(first_id: u32, count: u32, day: &str) -> String {
    let mut text = String::new();
    for id in first_id..first_id + count {
        text.push_str(&format!(
            "{{\"order_id\":{id},\"customer_id\":{},\"amount\":{}.25,\"ordered_at\":\"{day} 10:{:02}:00\",\"items\":[{{\"sku\":\"s{}\",\"quantity\":{}}}]}}\n",
            id % 3,
            id * 2,
            id % 60,
            id % 7,
            id % 5 + 1
        ));
    }
    text
}

/// The pids of runner processes working on `run_id` (`kglue attempt`).
pub fn runner_pids(run_id: &str) -> Vec<i32> {
    kglue_pids("attempt", run_id)
}

/// The pids of `kglue <subcommand>` processes with `run_id` among their arguments.
pub fn kglue_pids(subcommand: &str, run_id: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                    args.contains(&subcommand.as_bytes()) && args.contains(&run_id.as_bytes())
                })
                .unwrap_or(false)
        })
        .collect()
}
