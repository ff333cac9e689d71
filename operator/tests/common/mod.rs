//! What the operator's integration tests share: a `kglue-operator` process against a local
//! control plane, its metrics endpoint, and the CRDs installed from the committed YAML.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kglue_e2e::{ControlPlane, load_manifests, repo_root};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use libtest_mimic::Failed;

/// The field manager of the tests' own writes.
pub const FIELD_MANAGER: &str = "kglue-e2e";
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
        let metrics_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = control_plane.state_dir().join(format!("operator-{name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_kglue-operator"))
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

/// Installs the committed CRDs and waits until they are established.
pub async fn install_crds(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in load_manifests(&repo_root().join("crds/yaml"))? {
        let crd: CustomResourceDefinition = serde_json::from_value(manifest.object)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await?;
    }
    for crd in kglue_crds::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| format!("CRD {name} did not become Established within 30s"))??;
    }
    Ok(())
}
