//! The built OCI images, run for real (issue: installable on a real cluster).
//!
//! `e2e/kglue-images build` assembled the operator and runner images from the workspace's binaries
//! (the test command builds them before `cargo test`). Here they are pushed to a local registry
//! (go-containerregistry's, on 127.0.0.1) with the chart, packaged and pushed as an OCI artifact.
//! The node agent runs in container mode: every pod's image is pulled from that registry and its
//! container runs inside the image's filesystem under runc, as the image's non-root user, with the
//! read-only root the chart and the operator ask for. Then `helm install oci://…` with the images
//! pinned by digest, and the dev environment of the example pipeline (a crawl and two jobs) runs
//! end to end. A missing shared library, CA bundle or user in an image, or a write to its root,
//! fails this suite.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::chart::{Env, PIPELINES, RELEASE_NAMESPACE, chart_dir, install_and_run, ok_stdout};
use k8s_openapi::api::core::v1::Pod;
use kglue_e2e::harness::{self, trial};
use kglue_e2e::images::{LocalRegistry, built_images_dir, images_bin_dir};
use kglue_e2e::{ControlPlane, S3Server, workspace_binary};
use kube::api::{Api, ListParams, PostParams};
use libtest_mimic::{Arguments, Failed};

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let env = match harness::set_up(setup) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![
        trial(
            &env,
            "helm_install_from_the_oci_registry_runs_the_dev_pipeline_in_the_images",
            from_images,
        ),
        trial(
            &env,
            "the_root_is_the_image_under_a_layer_of_the_containers_own_read_only_when_asked",
            writable_root,
        ),
        trial(&env, "root_is_refused_when_the_pod_asks_for_non_root", root_refused),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let tools = kglue_e2e::tools_bin_dir()?;
    let image_tools = images_bin_dir()?;
    let images = built_images_dir();
    if !images.join("images.env").exists() {
        return Err(format!(
            "no images in {}: run `e2e/kglue-images build` first (the test command does)",
            images.display()
        )
        .into());
    }
    let agent_binary = workspace_binary("kglue-node-agent")?;
    let control_plane = ControlPlane::start()?;
    let s3 = S3Server::start()?;
    for bucket in ["sales-landing", "sales-curated", "sales-reports"] {
        s3.create_bucket(bucket)?;
    }
    let registry = LocalRegistry::start(&image_tools.join("crane"), &control_plane.state_dir().join("registry"))?;
    let pushed = registry.push_images(&images)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    // No image is mapped to a local binary: the operator's and the runner's pods pull theirs.
    let agent = runtime.block_on(control_plane.start_container_node_agent(&agent_binary, &[], &image_tools))?;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let version = env!("CARGO_PKG_VERSION");
    let mut env = Env {
        runtime,
        client,
        kubectl: control_plane.kubectl()?,
        control_plane,
        s3,
        tools,
        metrics_port,
        chart: Vec::new(),
        _agent: agent,
        _registry: None,
    };
    // The chart as a release ships it: packaged, pushed to the registry, installed from there.
    let packaged = env.control_plane.state_dir().join("chart");
    let chart = chart_dir().display().to_string();
    let packaged_dir = packaged.display().to_string();
    let failed = |e: Failed| format!("{e:?}");
    env.helm_ok(&["package", &chart, "--destination", &packaged_dir])
        .map_err(failed)?;
    let archive = packaged.join(format!("kglue-{version}.tgz")).display().to_string();
    let charts = format!("oci://{}/charts", registry.address());
    env.helm_ok(&["push", &archive, &charts, "--plain-http"])
        .map_err(failed)?;
    env.chart = vec![
        format!("{charts}/kglue"),
        "--version".into(),
        version.into(),
        "--plain-http".into(),
        "--set".into(),
        format!("image.operator.repository={}", pushed.operator_repository),
        "--set".into(),
        format!("image.operator.digest={}", pushed.operator_digest),
        "--set".into(),
        format!("image.runner.repository={}", pushed.runner_repository),
        "--set".into(),
        format!("image.runner.digest={}", pushed.runner_digest),
    ];
    env._registry = Some(registry);
    Ok(env)
}

/// The chart from the registry, the pipeline in the images; then every container that ran is
/// checked to have run its pinned image, pulled from the registry.
fn from_images(env: &Env) -> Result<(), Failed> {
    install_and_run(env).map_err(|failed| format!("{failed:?}\n{}", diagnostics(env)))?;
    let operator = pushed_image(env, "operator")?;
    let runner = pushed_image(env, "runner")?;
    let mut seen = Vec::new();
    for (namespace, expected) in [(RELEASE_NAMESPACE, &operator), (PIPELINES, &runner)] {
        let pods = env
            .runtime
            .block_on(Api::<Pod>::namespaced(env.client.clone(), namespace).list(&ListParams::default()))
            .map_err(|e| format!("listing pods in {namespace}: {e}"))?;
        let statuses: Vec<_> = pods
            .items
            .iter()
            .flat_map(|pod| pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
            .filter(|status| status.state.as_ref().is_some_and(|s| s.waiting.is_none()))
            .collect();
        if statuses.is_empty() {
            return Err(format!("no container ran in {namespace}").into());
        }
        for status in statuses {
            if &status.image_id != expected {
                return Err(format!(
                    "a container in {namespace} ran image {:?}, not the pushed {expected}",
                    status.image_id
                )
                .into());
            }
            seen.push(status.image_id.clone());
        }
    }
    // Every runner attempt ran as the image's non-root user inside its read-only root: the node
    // agent's runc containers say so in their runtime spec.
    let bundles = env.control_plane.state_dir().join("node-agent/pods");
    let mut specs = 0;
    for pod in std::fs::read_dir(&bundles)?.flatten() {
        let containers = pod.path().join("containers");
        for container in std::fs::read_dir(&containers).into_iter().flatten().flatten() {
            let spec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(container.path().join("config.json"))?)?;
            if spec["process"]["user"]["uid"] != 65532 || spec["root"]["readonly"] != true {
                return Err(format!(
                    "{} ran as {} with a root that is not read-only",
                    container.path().display(),
                    spec["process"]["user"]
                )
                .into());
            }
            specs += 1;
        }
    }
    if specs < seen.len() {
        return Err(format!("{specs} runtime specs for {} containers", seen.len()).into());
    }
    let listed = ok_stdout(
        "kubectl get pods",
        env.kubectl.run(&["get", "pods", "-A", "-o", "wide"])?,
    )?;
    eprintln!("{} containers ran from the pushed images:\n{listed}", seen.len());
    Ok(())
}

/// What the node saw, for a failure: every pod's container states and the agent's log tail.
fn diagnostics(env: &Env) -> String {
    let pods = env
        .kubectl
        .run(&[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.phase} {.status.containerStatuses[*].state}{\"\\n\"}{end}",
        ])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let agent = env.control_plane.state_dir().join("node-agent");
    let mut containers = String::new();
    for pod in std::fs::read_dir(agent.join("pods")).into_iter().flatten().flatten() {
        for log in std::fs::read_dir(pod.path().join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            containers.push_str(&format!("--- {}\n{}\n", log.path().display(), common::tail(&text, 15)));
        }
    }
    let log = std::fs::read_to_string(agent.join("agent.log")).unwrap_or_default();
    format!(
        "pods:\n{pods}\ncontainer logs (tails):\n{containers}\nnode agent log (tail):\n{}",
        common::tail(&log, 20)
    )
}

/// An image's reference in the local registry (`operator` or `runner`), as the chart was given it.
fn pushed_image(env: &Env, image: &str) -> Result<String, Failed> {
    let value = |field: &str| {
        let prefix = format!("image.{image}.{field}=");
        env.chart
            .iter()
            .find_map(|arg| arg.strip_prefix(&prefix))
            .map(str::to_string)
            .ok_or_else(|| format!("no {prefix} in the install arguments"))
    };
    Ok(format!("{}@{}", value("repository")?, value("digest")?))
}

/// Creates a one-container pod in `default` and waits for it to end.
fn run_pod(
    env: &Env,
    name: &str,
    container: serde_json::Value,
    pod_security: serde_json::Value,
    volumes: serde_json::Value,
) -> Result<Pod, Failed> {
    let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": pod_security,
            "containers": [container],
            "volumes": volumes,
        },
    }))?;
    env.runtime
        .block_on(pods.create(&PostParams::default(), &pod))
        .map_err(|e| format!("creating pod {name}: {e}"))?;
    common::wait_for(&format!("pod {name} to end"), Duration::from_secs(60), || {
        let pod = env.runtime.block_on(pods.get(name)).map_err(|e| e.to_string())?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        Ok(["Succeeded", "Failed"].contains(&phase.as_str()).then_some(pod))
    })
}

/// The root filesystem is the image under a layer of the container's own: without
/// `readOnlyRootFilesystem` what the container writes lands there (and the image's unpacked
/// filesystem, which other containers share, stays as pulled); with it, the write fails.
/// The writer is `kglue crawl` of a local folder (from a ConfigMap) into a catalog directory in
/// the image's home, /home/nonroot.
fn writable_root(env: &Env) -> Result<(), Failed> {
    let image = pushed_image(env, "runner")?;
    let crawler = "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {name: local}\nspec:\n  databaseName: raw\n  targets:\n    - path: file:///input/data/\n";
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "crawl-input"},
        "data": {"crawler.yaml": crawler, "events.csv": "id,name\n1,a\n2,b\n"},
    }))?;
    env.runtime
        .block_on(
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client.clone(), "default")
                .create(&PostParams::default(), &config_map),
        )
        .map_err(|e| format!("creating the ConfigMap: {e}"))?;
    let container = |read_only: bool| {
        serde_json::json!({
            "name": "main", "image": image,
            "args": ["crawl", "-f", "/input/crawler.yaml", "--catalog", "/home/nonroot"],
            "securityContext": {"readOnlyRootFilesystem": read_only},
            "volumeMounts": [{"name": "input", "mountPath": "/input", "readOnly": true}],
        })
    };
    let volumes = serde_json::json!([{"name": "input", "configMap": {"name": "crawl-input", "items": [
        {"key": "crawler.yaml", "path": "crawler.yaml"},
        {"key": "events.csv", "path": "data/events/part-0.csv"},
    ]}}]);

    let pod = run_pod(
        env,
        "writable-root",
        container(false),
        serde_json::json!({}),
        volumes.clone(),
    )?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let log = ok_stdout("kubectl logs", env.kubectl.run(&["logs", "writable-root"])?)?;
    if phase != "Succeeded" || !log.contains("1 table(s)") {
        return Err(format!("the crawl ended {phase}, printing {log:?}\n{}", diagnostics(env)).into());
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let layer = env
        .control_plane
        .state_dir()
        .join(format!("node-agent/pods/default_writable-root_{uid}/containers/main"));
    let table = layer.join("upper/home/nonroot/raw.data.yaml");
    if !table.exists() {
        return Err(format!(
            "the crawl's table is not in the container's layer: no {}",
            table.display()
        )
        .into());
    }
    let images = env.control_plane.state_dir().join("node-agent/images");
    for image in std::fs::read_dir(&images)?.flatten() {
        if image.path().join("rootfs/home/nonroot/raw.data.yaml").exists() {
            return Err(format!(
                "the write reached the shared image filesystem {}",
                image.path().display()
            )
            .into());
        }
    }

    let pod = run_pod(env, "read-only-root", container(true), serde_json::json!({}), volumes)?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let log = ok_stdout("kubectl logs", env.kubectl.run(&["logs", "read-only-root"])?)?;
    if phase != "Failed" || !log.contains("Read-only file system") {
        return Err(
            format!("a write to a read-only root did not fail: the pod ended {phase}, printing {log:?}").into(),
        );
    }
    Ok(())
}

/// `runAsNonRoot` with a root user: the container does not start, and the pod says why, as a
/// kubelet does.
fn root_refused(env: &Env) -> Result<(), Failed> {
    let image = pushed_image(env, "runner")?;
    let pod = run_pod(
        env,
        "root-refused",
        serde_json::json!({"name": "main", "image": image, "args": ["--version"],
                           "securityContext": {"runAsUser": 0}}),
        serde_json::json!({"runAsNonRoot": true}),
        serde_json::json!([]),
    )?;
    let status = pod.status.unwrap_or_default();
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|s| s.state.as_ref()?.waiting.clone())
        .find(|w| w.reason.as_deref() == Some("CreateContainerConfigError"));
    let message = waiting.and_then(|w| w.message).unwrap_or_default();
    if status.phase.as_deref() != Some("Failed") || !message.contains("runAsNonRoot and image will run as root") {
        return Err(format!("a root container under runAsNonRoot was not refused: {message:?}").into());
    }
    Ok(())
}
