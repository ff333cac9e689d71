//! The chart's install and the example pipeline under it, shared by the chart suite (binaries
//! mapped to images) and the images suite (the built images from a local registry).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kglue_e2e::images::LocalRegistry;
use kglue_e2e::{ControlPlane, Kubectl, NodeAgent, S3Server, repo_root};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use libtest_mimic::Failed;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use super::orders_json;

pub const RELEASE: &str = "kglue";
pub const RELEASE_NAMESPACE: &str = "kglue-system";
/// The dev overlay's namespace.
pub const PIPELINES: &str = "sales-dev";
/// How long the example's workflow (a crawl and two jobs) may take.
pub const WORKFLOW_SETTLE: Duration = Duration::from_secs(240);

/// Fields drop in order: the node agent (which kills and unmounts its containers) and the registry
/// go before the control plane removes its state directory.
pub struct Env {
    pub _agent: NodeAgent,
    /// The local registry the images and the chart came from (image mode).
    pub _registry: Option<LocalRegistry>,
    pub runtime: Runtime,
    pub client: kube::Client,
    pub control_plane: ControlPlane,
    pub s3: S3Server,
    pub kubectl: Kubectl,
    pub tools: PathBuf,
    pub metrics_port: u16,
    /// What `helm install` installs: the chart directory, or an `oci://` reference with its
    /// version, registry and image values.
    pub chart: Vec<String>,
}

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/kglue")
}

impl Env {
    /// Runs helm against the cluster, with its config and caches in the cluster's state directory.
    pub fn helm(&self, args: &[&str]) -> Result<Output, Failed> {
        let home = self.control_plane.state_dir().join("helm");
        Command::new(self.tools.join("helm"))
            .args(args)
            .env("KUBECONFIG", self.control_plane.kubeconfig())
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .map_err(|e| format!("helm {args:?}: {e}").into())
    }

    /// Runs helm and returns its stdout, or fails with everything it said.
    pub fn helm_ok(&self, args: &[&str]) -> Result<String, Failed> {
        let output = self.helm(args)?;
        ok_stdout(&format!("helm {}", args.join(" ")), output)
    }

    /// `helm template` of the chart with `values` (`--set` expressions), as objects.
    pub fn render(&self, values: &[&str]) -> Result<Vec<Value>, Failed> {
        let chart = chart_dir().display().to_string();
        let mut args = vec!["template", RELEASE, chart.as_str(), "--namespace", RELEASE_NAMESPACE];
        for value in values {
            args.extend(["--set", value]);
        }
        let yaml = self.helm_ok(&args)?;
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&yaml).map_err(|e| format!("helm template output: {e}"))?;
        Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, Failed> {
        let output = self.kubectl.run(args)?;
        ok_stdout(&format!("kubectl {}", args.join(" ")), output)
    }

    pub fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), PIPELINES, resource)
    }

    /// The operator pod's log, through the node agent's kubelet API.
    pub fn operator_log(&self) -> String {
        let deployment = format!("deployment/{RELEASE}");
        self.kubectl
            .run(&["logs", "-n", RELEASE_NAMESPACE, &deployment, "--tail=-1"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

pub fn ok_stdout(what: &str, output: Output) -> Result<String, Failed> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .into())
}

pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// `helm install`, then the dev environment of the example pipeline runs end to end under the
/// operator the chart started.
pub fn install_and_run(env: &Env) -> Result<(), Failed> {
    env.runtime.block_on(async {
        for namespace in [RELEASE_NAMESPACE, PIPELINES] {
            kglue_e2e::create_namespace(&env.client, namespace).await?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let port = format!("operator.metricsPort={}", env.metrics_port);
    let mut install = vec!["install", RELEASE];
    install.extend(env.chart.iter().map(String::as_str));
    install.extend([
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "120s",
        "--set",
        "runner.namespaces={sales-dev}",
        // Servers in tests listen on loopback only; in a cluster the default is the pod's IP.
        "--set",
        "operator.metricsBindAddress=127.0.0.1",
        "--set",
        &port,
        "--set",
        "operator.logFormat=plain",
    ]);
    env.helm_ok(&install)?;
    super::wait_for("the operator to lead", Duration::from_secs(60), || {
        let metrics = super::http_get(env.metrics_port, "/metrics").unwrap_or_default();
        Ok(metrics.lines().any(|l| l == "kglue_operator_leader 1").then_some(()))
    })?;

    // The dev environment as GitOps would apply it, then pointed at the local S3 server.
    let dev = repo_root().join("examples/environments/dev").display().to_string();
    env.kubectl_ok(&["apply", "--server-side", "--field-manager=gitops", "-k", &dev])?;
    let connection = ApiResource::erase::<kglue_crds::Connection>(&());
    let endpoint = json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection",
        "metadata": {"name": "lake"},
        "spec": {"s3": {"endpoint": env.s3.endpoint()}},
    });
    env.runtime
        .block_on(env.api(&connection).patch(
            "lake",
            &PatchParams::apply(super::FIELD_MANAGER).force(),
            &Patch::Apply(&endpoint),
        ))
        .map_err(|e| format!("pointing the Connection at the local S3 server: {e}"))?;
    // The overlay's lake-credentials hold the in-cluster store's dev keys; here they become the
    // local server's (`data`: server-side apply tracks stringData's fields poorly).
    let key = |value: &str| k8s_openapi::ByteString(value.as_bytes().to_vec());
    let credentials = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "lake-credentials", "labels": {"kglue.dev/secret-type": "connection"}},
        "data": {"AWS_ACCESS_KEY_ID": key(env.s3.access_key()), "AWS_SECRET_ACCESS_KEY": key(env.s3.secret_key())},
    });
    env.runtime
        .block_on(Api::<Secret>::namespaced(env.client.clone(), PIPELINES).patch(
            "lake-credentials",
            &PatchParams::apply(super::FIELD_MANAGER).force(),
            &Patch::Apply(&credentials),
        ))
        .map_err(|e| format!("giving the Connection the local S3 server's keys: {e}"))?;

    // The overlay's objects become Ready under the chart's operator (`jobs.kglue.dev`: plain
    // `jobs` is batch/v1). clean-orders waits for the tables its first crawl creates.
    let mut waited = String::new();
    for selection in [
        &[
            "--all",
            "databases,tables,connections,classifiers,crawlers,triggers,workflows",
        ][..],
        &["jobs.kglue.dev/publish-revenue"][..],
    ] {
        let mut args = vec!["wait", "--for=condition=Ready", "--timeout=60s", "-n", PIPELINES];
        args.extend(selection);
        waited.push_str(&env.kubectl_ok(&args)?);
    }
    if waited.matches("condition met").count() < 12 {
        return Err(format!("kubectl wait did not see the overlay's objects:\n{waited}").into());
    }

    // Land a day of orders and the customer list: the dev Event trigger fires on the first file.
    let landing = env.s3.store("sales-landing").map_err(|e| e.to_string())?;
    env.runtime
        .block_on(async {
            landing
                .put(
                    &ObjectPath::from("customers/part-0.csv"),
                    "customer_id|country\n0|NL\n1|DE\n2|FR\n".to_string().into(),
                )
                .await?;
            landing
                .put(
                    &ObjectPath::from("orders/dt=2024-05-01/part-0.json"),
                    orders_json(1, 30, "2024-05-01").into(),
                )
                .await
        })
        .map_err(|e| format!("landing data: {e}"))?;
    let workflows = ApiResource::erase::<kglue_crds::Workflow>(&());
    let run = super::wait_for("the dev workflow run to finish", WORKFLOW_SETTLE, || {
        let workflow = env
            .runtime
            .block_on(env.api(&workflows).get("sales-pipeline"))
            .map_err(|e| e.to_string())?;
        let run = workflow.data["status"]["runs"]
            .as_array()
            .and_then(|runs| runs.last())
            .cloned();
        Ok(run.filter(|r| ["Succeeded", "Failed", "Stopped", "Error"].contains(&text(&r["state"]))))
    })?;
    if run["state"] != "Succeeded" {
        return Err(format!(
            "the dev workflow run ended {}: {run:#}\noperator log:\n{}",
            run["state"],
            super::tail(&env.operator_log(), 40)
        )
        .into());
    }
    let tables = ApiResource::erase::<kglue_crds::Table>(&());
    let curated = env
        .runtime
        .block_on(env.api(&tables).get("sales-curated.orders-daily"))
        .map_err(|e| format!("the curated table: {e}"))?;
    let partitions = &curated.data["status"]["partitions"]["count"];
    if partitions.as_u64().unwrap_or_default() < 1 {
        return Err(format!("the curated table has no partitions: {:#}", curated.data["status"]).into());
    }

    // The chart's RBAC sufficed: the operator was never refused anything.
    let log = env.operator_log();
    if log.is_empty() {
        return Err("kubectl logs found no operator log".into());
    }
    if let Some(line) = log.lines().find(|l| l.contains("forbidden") || l.contains("Forbidden")) {
        return Err(format!("the operator was refused by the chart's RBAC: {line}").into());
    }
    Ok(())
}
