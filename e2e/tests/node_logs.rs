//! `kubectl logs` against pods the node agent runs: the API server reaches the agent's kubelet API
//! (`/containerLogs`, HTTPS on 127.0.0.1, the port in the Node's daemonEndpoints) with its kubelet
//! client certificate. Covered: whole logs, `--tail`, `--limit-bytes`, `--timestamps` (ignored),
//! `-f` on a running pod (lines arrive as written, the stream ends with the pod), `--previous`
//! after a restart, an unknown container, and the agent's own errors and client-cert check.
//!
//! A custom harness (libtest-mimic): one control plane and one agent serve every case; each case
//! works in its own namespace and every wait has a timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kglue_e2e::harness::{self, ClusterEnv, namespaced_trial as trial};
use kglue_e2e::{ControlPlane, HOST_IMAGE, Kubectl, NodeAgent};
use kube::Client;
use kube::api::{Api, LogParams, PostParams};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Longest any single wait may take.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Env {
    runtime: Runtime,
    client: Client,
    agent: NodeAgent,
    kubectl: Kubectl,
    /// The cluster's PKI (`ca.crt`, `admin.{crt,key}`), for calling the agent directly.
    pki: std::path::PathBuf,
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
        trial(
            &env,
            "kubectl_logs_returns_the_lines_and_tail_returns_the_last",
            whole_and_tail,
        ),
        trial(&env, "follow_streams_lines_as_written_and_ends_with_the_pod", follow),
        trial(&env, "previous_returns_the_run_before_a_restart", previous),
        trial(&env, "unknown_container_is_an_error_naming_it", unknown_container),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    drop(control_plane);
    conclusion.exit_code()
}

fn setup(control_plane: &ControlPlane) -> Result<Env, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    let binary = Path::new(env!("CARGO_BIN_EXE_kglue-node-agent"));
    let agent = runtime.block_on(control_plane.start_node_agent(binary, &[]))?;
    Ok(Env {
        runtime,
        client,
        agent,
        kubectl: control_plane.kubectl()?,
        pki: control_plane.state_dir().join("pki"),
    })
}

/// A bare pod with one host-image container `c` running `sh -c script`.
fn host_pod(name: &str, script: &str, extra_spec: Value) -> Result<Pod, Failed> {
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [{ "name": "c", "image": HOST_IMAGE, "command": ["sh", "-c", script] }],
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name }, "spec": spec }),
    )?)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

async fn wait_phase(env: &Env, namespace: &str, name: &str, phases: &[&str]) -> Result<Pod, Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(pod) = pods.get_opt(name).await?
            && phase(&pod).is_some_and(|p| phases.contains(&p))
        {
            return Ok(pod);
        }
        if Instant::now() > deadline {
            return Err(format!("pod {namespace}/{name} did not reach {phases:?} within {TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs kubectl; its stdout on success, else an error with its stderr.
fn kubectl(env: &Env, args: &[&str]) -> Result<String, Failed> {
    let output = env.kubectl.run(args)?;
    if !output.status.success() {
        return Err(format!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn expect_eq(actual: &str, expected: &str, what: &str) -> Result<(), Failed> {
    if actual == expected {
        return Ok(());
    }
    Err(format!("{what}: expected {expected:?}, got {actual:?}").into())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

fn whole_and_tail(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        pods.create(&PostParams::default(), &host_pod("three", "echo one; echo two; echo three", json!({}))?)
            .await?;
        wait_phase(env, namespace, "three", &["Succeeded"]).await?;

        let started = Instant::now();
        let all = kubectl(env, &["logs", "-n", namespace, "three"])?;
        let kubectl_time = started.elapsed();
        expect_eq(&all, "one\ntwo\nthree\n", "kubectl logs")?;
        expect_eq(&kubectl(env, &["logs", "-n", namespace, "three", "--tail=1"])?, "three\n", "--tail=1")?;
        expect_eq(&kubectl(env, &["logs", "-n", namespace, "pod/three", "-c", "c", "--tail=2"])?, "two\nthree\n", "--tail=2")?;
        expect_eq(&kubectl(env, &["logs", "-n", namespace, "three", "--limit-bytes=6"])?, "one\ntw", "--limit-bytes=6")?;
        // The lines carry no time, so --timestamps is ignored rather than invented.
        expect_eq(&kubectl(env, &["logs", "-n", namespace, "three", "--timestamps"])?, "one\ntwo\nthree\n", "--timestamps")?;

        let tail = LogParams {
            tail_lines: Some(1),
            ..Default::default()
        };
        expect_eq(&pods.logs("three", &tail).await?, "three\n", "kube-rs logs, tail_lines 1")?;
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let text = pods.logs("three", &LogParams::default()).await?;
            times.push(started.elapsed());
            expect_eq(&text, "one\ntwo\nthree\n", "kube-rs logs")?;
        }
        let max = times.iter().max().copied().unwrap_or_default();
        eprintln!(
            "log fetch latency: kube-rs logs median {:?}, max {max:?} (20 calls); one `kubectl logs` process {kubectl_time:?}",
            median(times)
        );
        Ok(())
    })
}

fn follow(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        let script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done";
        pods.create(&PostParams::default(), &host_pod("ticker", script, json!({}))?)
            .await?;
        wait_phase(env, namespace, "ticker", &["Running"]).await?;
        // kubectl -f at the same time: it must end by itself when the pod ends.
        let mut kubectl_follow = Command::new(env.kubectl_binary()?)
            .args([
                "--kubeconfig",
                &env.kubeconfig()?,
                "logs",
                "-f",
                "-n",
                namespace,
                "ticker",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let opened = Instant::now();
        let params = LogParams {
            follow: true,
            ..Default::default()
        };
        let mut lines = pods.log_stream("ticker", &params).await?.lines();
        let mut arrivals = Vec::new();
        let read_all = async {
            while let Some(line) = lines.next().await {
                arrivals.push((line?, opened.elapsed()));
            }
            Ok::<_, Failed>(())
        };
        tokio::time::timeout(TIMEOUT, read_all)
            .await
            .map_err(|_| "the follow stream did not end within the timeout")??;
        let ended = opened.elapsed();
        let texts: Vec<&str> = arrivals.iter().map(|(line, _)| line.as_str()).collect();
        let expected: Vec<String> = (1..=6).map(|i| format!("line {i}")).collect();
        if texts != expected {
            return Err(format!("follow returned {texts:?}").into());
        }
        // Lines written after the stream opened arrive while the pod still runs, not all at the end.
        let last = arrivals.last().map(|(_, at)| *at).unwrap_or_default();
        let first_new = arrivals.get(3).map(|(_, at)| *at).unwrap_or_default();
        if last.saturating_sub(first_new) < Duration::from_millis(400) {
            return Err(format!("lines did not arrive as written: {arrivals:?}").into());
        }
        let pod = wait_phase(env, namespace, "ticker", &["Succeeded"]).await?;
        let finished = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|s| s.into_iter().next())
            .and_then(|s| s.state)
            .and_then(|s| s.terminated)
            .and_then(|t| t.finished_at);
        eprintln!("follow: lines at {arrivals:?}; stream ended at {ended:?} (container finished at {finished:?})");

        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = kubectl_follow.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = kubectl_follow.kill();
                let _ = kubectl_follow.wait();
                return Err("kubectl logs -f did not end after the pod ended".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let output = kubectl_follow.wait_with_output()?;
        if !status.success() {
            return Err(format!("kubectl logs -f failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        expect_eq(
            &String::from_utf8_lossy(&output.stdout),
            &format!("{}\n", expected.join("\n")),
            "kubectl logs -f",
        )
    })
}

fn previous(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        // The first run leaves a marker in the emptyDir and fails; the restarted run succeeds.
        let script = r#"if [ -e "$1" ]; then echo second run; else touch "$1"; echo first run; exit 1; fi"#;
        let mut pod = host_pod(
            "restarts",
            script,
            json!({ "restartPolicy": "OnFailure", "volumes": [{ "name": "data", "emptyDir": {} }] }),
        )?;
        if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            container.args = Some(vec!["sh".into(), "/data/marker".into()]);
            container.volume_mounts = Some(vec![serde_json::from_value(
                json!({ "name": "data", "mountPath": "/data" }),
            )?]);
        }
        pods.create(&PostParams::default(), &pod).await?;
        wait_phase(env, namespace, "restarts", &["Succeeded", "Failed"]).await?;
        expect_eq(
            &kubectl(env, &["logs", "-n", namespace, "restarts"])?,
            "second run\n",
            "current run",
        )?;
        expect_eq(
            &kubectl(env, &["logs", "-n", namespace, "restarts", "--previous"])?,
            "first run\n",
            "--previous",
        )?;
        // A container that never restarted has no previous run.
        pods.create(&PostParams::default(), &host_pod("once", "echo once", json!({}))?)
            .await?;
        wait_phase(env, namespace, "once", &["Succeeded"]).await?;
        let output = env.kubectl.run(&["logs", "-n", namespace, "once", "--previous"])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("previous terminated container \"c\"") {
            return Err(format!("--previous without a restart: {}, {stderr}", output.status).into());
        }
        Ok(())
    })
}

fn unknown_container(env: &Env, namespace: &str) -> Result<(), Failed> {
    env.runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
        pods.create(&PostParams::default(), &host_pod("known", "echo hi", json!({}))?)
            .await?;
        wait_phase(env, namespace, "known", &["Succeeded"]).await?;
        let output = env
            .kubectl
            .run(&["logs", "-n", namespace, "known", "-c", "nosuchcontainer"])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("nosuchcontainer") {
            return Err(format!("kubectl logs -c nosuchcontainer: {}, {stderr}", output.status).into());
        }
        // The API server checks container names itself; the agent's own answers, called directly:
        let port = env.agent.kubelet_port();
        let base = format!("https://127.0.0.1:{port}/containerLogs/{namespace}");
        let (code, body) = env.curl(&format!("{base}/known/nosuchcontainer"), true)?;
        if code != "404" || !body.contains("container \"nosuchcontainer\" not found") {
            return Err(format!("agent, unknown container: {code} {body:?}").into());
        }
        let (code, body) = env.curl(&format!("{base}/nosuchpod/c"), true)?;
        if code != "404" || !body.contains("nosuchpod") {
            return Err(format!("agent, unknown pod: {code} {body:?}").into());
        }
        let (code, body) = env.curl(&format!("{base}/known/c?tailLines=1"), true)?;
        if code != "200" || body != "hi\n" {
            return Err(format!("agent, known container: {code} {body:?}").into());
        }
        // Without a client certificate signed by the cluster CA, no TLS session.
        let (code, _) = env.curl(&format!("{base}/known/c"), false)?;
        if code != "000" {
            return Err(format!("agent answered a caller without a client certificate: {code}").into());
        }
        Ok(())
    })
}

impl Env {
    fn kubectl_binary(&self) -> Result<String, Failed> {
        let output = Command::new(kglue_e2e::repo_root().join("e2e/kglue-cluster"))
            .arg("bin-dir")
            .output()?;
        Ok(format!("{}/kubectl", String::from_utf8_lossy(&output.stdout).trim()))
    }

    fn kubeconfig(&self) -> Result<String, Failed> {
        let kubeconfig = self.pki.parent().ok_or("no state directory")?.join("kubeconfig");
        Ok(kubeconfig.display().to_string())
    }

    /// GETs `url` on the agent with curl (the serving cert is self-signed, hence `-k`), with or
    /// without the admin client certificate; (HTTP code, body). Code `000`: no HTTP exchange.
    fn curl(&self, url: &str, client_cert: bool) -> Result<(String, String), Failed> {
        let mut command = Command::new("curl");
        command.args(["-sk", "--max-time", "5", "-w", "\n%{http_code}"]);
        if client_cert {
            command
                .arg("--cert")
                .arg(self.pki.join("admin.crt"))
                .arg("--key")
                .arg(self.pki.join("admin.key"));
        }
        let output = command.arg(url).output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.to_string(), body.to_string()))
    }
}
