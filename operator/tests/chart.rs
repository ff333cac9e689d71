//! The Helm chart (charts/kglue) and the GitOps examples on a real local control plane.
//!
//! The chart is linted and rendered, its runner Role is checked against operator/src/rbac.rs, and
//! then it is really installed with `helm install`: the Deployment's pod runs on the node agent,
//! which starts `kglue-operator` from the rendered command, under the chart's own ServiceAccount
//! and RBAC. That operator then runs the dev environment of the example pipeline
//! (examples/environments/dev) end to end when order files land. The GitOps objects of
//! examples/gitops are checked against what they point at.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Duration;

use common::orders_json;
use k8s_openapi::api::core::v1::Secret;
use kglue_e2e::harness::{self, trial};
use kglue_e2e::{ControlPlane, Kubectl, NodeAgent, S3Server, repo_root, workspace_binary};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use libtest_mimic::{Arguments, Failed};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const RELEASE: &str = "kglue";
const RELEASE_NAMESPACE: &str = "kglue-system";
/// The dev overlay's namespace.
const PIPELINES: &str = "sales-dev";
const OPERATOR_IMAGE: &str = "ghcr.io/kglue/kglue-operator";
/// How long the example's workflow (a crawl and two jobs) may take.
const WORKFLOW_SETTLE: Duration = Duration::from_secs(240);

struct Env {
    runtime: Runtime,
    client: kube::Client,
    control_plane: ControlPlane,
    s3: S3Server,
    kubectl: Kubectl,
    tools: PathBuf,
    metrics_port: u16,
    _agent: NodeAgent,
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let env = match harness::set_up(setup) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![
        trial(&env, "helm_lint_passes_with_default_and_full_values", helm_lint),
        trial(&env, "the_chart_version_is_the_workspace_version", chart_version),
        trial(&env, "the_runner_role_is_the_one_rbac_rs_defines", runner_role),
        trial(&env, "inconsistent_values_are_refused_with_the_value_named", bad_values),
        trial(
            &env,
            "helm_install_starts_the_operator_which_runs_the_dev_pipeline",
            install_and_run,
        ),
        trial(
            &env,
            "the_rendered_chart_passes_a_server_side_dry_run",
            server_side_dry_run,
        ),
        trial(&env, "gitops_objects_point_at_what_exists", gitops_objects),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let tools = kglue_e2e::tools_bin_dir()?;
    let operator = workspace_binary("kglue-operator")?;
    let runner = workspace_binary("kglue")?;
    let agent_binary = workspace_binary("kglue-node-agent")?;
    let control_plane = ControlPlane::start()?;
    let s3 = S3Server::start()?;
    for bucket in ["sales-landing", "sales-curated", "sales-reports"] {
        s3.create_bucket(bucket)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    let agent = runtime.block_on(control_plane.start_node_agent(
        &agent_binary,
        &[
            (common::RUNNER_IMAGE, runner.as_path()),
            (OPERATOR_IMAGE, operator.as_path()),
        ],
    ))?;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(Env {
        runtime,
        client,
        kubectl: control_plane.kubectl()?,
        control_plane,
        s3,
        tools,
        metrics_port,
        _agent: agent,
    })
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/kglue")
}

impl Env {
    /// Runs helm against the cluster, with its config and caches in the cluster's state directory.
    fn helm(&self, args: &[&str]) -> Result<Output, Failed> {
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
    fn helm_ok(&self, args: &[&str]) -> Result<String, Failed> {
        let output = self.helm(args)?;
        ok_stdout(&format!("helm {}", args.join(" ")), output)
    }

    /// `helm template` of the chart with `values` (`--set` expressions), as objects.
    fn render(&self, values: &[&str]) -> Result<Vec<Value>, Failed> {
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

    fn kubectl_ok(&self, args: &[&str]) -> Result<String, Failed> {
        let output = self.kubectl.run(args)?;
        ok_stdout(&format!("kubectl {}", args.join(" ")), output)
    }

    fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), PIPELINES, resource)
    }

    /// The operator pod's log, through the node agent's kubelet API.
    fn operator_log(&self) -> String {
        let deployment = format!("deployment/{RELEASE}");
        self.kubectl
            .run(&["logs", "-n", RELEASE_NAMESPACE, &deployment, "--tail=-1"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

fn ok_stdout(what: &str, output: Output) -> Result<String, Failed> {
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

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Values that switch on every optional part of the chart.
const FULL_VALUES: &[&str] = &[
    "runner.namespaces={sales-dev,sales-prod}",
    "defaultConnection.create=true",
    "defaultConnection.s3.endpoint=http://object-store:9000",
    "defaultConnection.s3.credentialsSecret=lake-credentials",
    "metrics.serviceMonitor.enabled=true",
    "workerSizes.Small.cpu=1",
    "workerSizes.Small.memoryGiB=4",
    "runner.networkPolicy.enabled=true",
    "runner.networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    "runner.networkPolicy.extraEgress[0].ports[0].port=9000",
];

fn helm_lint(env: &Env) -> Result<(), Failed> {
    let chart = chart_dir().display().to_string();
    env.helm_ok(&["lint", "--strict", &chart])?;
    let mut args = vec!["lint", "--strict", chart.as_str()];
    for value in FULL_VALUES {
        args.extend(["--set", value]);
    }
    env.helm_ok(&args)?;
    env.helm_ok(&["lint", "--strict", &chart, "--set", "operator.watchNamespace=sales-dev"])?;
    Ok(())
}

fn chart_version(_env: &Env) -> Result<(), Failed> {
    let chart: Value = serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml"))?)
        .map_err(|e| format!("Chart.yaml: {e}"))?;
    let workspace = env!("CARGO_PKG_VERSION");
    if text(&chart["version"]) != workspace || text(&chart["appVersion"]) != workspace {
        return Err(format!(
            "charts/kglue/Chart.yaml has version {} and appVersion {}; the workspace is {workspace}",
            chart["version"], chart["appVersion"]
        )
        .into());
    }
    Ok(())
}

/// The chart's runner Role has exactly operator/src/rbac.rs's rules, in every pipeline namespace.
fn runner_role(env: &Env) -> Result<(), Failed> {
    let objects = env.render(FULL_VALUES)?;
    let expected: Vec<Value> = kglue_operator::rbac::RUNNER_RULES
        .iter()
        .map(|rule| {
            json!({
                "apiGroups": [kglue_crds::API_GROUP],
                "resources": rule.resources,
                "verbs": rule.verbs,
            })
        })
        .collect();
    for namespace in ["sales-dev", "sales-prod"] {
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == "Role"
                    && o["metadata"]["name"] == kglue_operator::rbac::RUNNER
                    && o["metadata"]["namespace"] == namespace
            })
            .ok_or_else(|| format!("no runner Role in {namespace}"))?;
        if role["rules"].as_array() != Some(&expected) {
            return Err(format!(
                "the chart's runner Role differs from operator/src/rbac.rs:\nchart: {:#}\nrbac.rs: {:#}",
                role["rules"],
                json!(expected)
            )
            .into());
        }
        for kind in ["ServiceAccount", "RoleBinding", "Connection"] {
            if !objects
                .iter()
                .any(|o| o["kind"] == kind && o["metadata"]["namespace"] == namespace)
            {
                return Err(format!("no {kind} rendered in {namespace}").into());
            }
        }
    }
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .ok_or("no Deployment rendered")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().into_iter().flatten().map(text).collect();
    if !args.contains(&r#"--worker-sizes={"Small":{"cpu":1,"memoryGiB":4}}"#) || !args.contains(&"--leader-elect=true")
    {
        return Err(format!("the operator's arguments miss the worker sizes or leader election: {args:?}").into());
    }
    let security = &container["securityContext"];
    if security["readOnlyRootFilesystem"] != true || security["allowPrivilegeEscalation"] != false {
        return Err(format!("the operator container is not locked down: {security:#}").into());
    }
    if deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] != true {
        return Err("the operator pod may run as root".into());
    }
    Ok(())
}

fn bad_values(env: &Env) -> Result<(), Failed> {
    let chart = chart_dir().display().to_string();
    let output = env.helm(&[
        "template",
        RELEASE,
        &chart,
        "--set",
        "metrics.service.enabled=false",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("metrics.serviceMonitor.enabled needs metrics.service.enabled") {
        return Err(format!("a ServiceMonitor without its Service was not refused clearly: {stderr}").into());
    }
    let output = env.helm(&["template", RELEASE, &chart, "--set", "serviceAccount.create=false"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("serviceAccount.name is required") {
        return Err(format!("a missing service account name was not refused clearly: {stderr}").into());
    }
    let output = env.helm(&[
        "template",
        RELEASE,
        &chart,
        "--set",
        "runner.namespaces={sales-dev}",
        "--set",
        "runner.networkPolicy.enabled=true",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success()
        || !stderr.contains("runner.networkPolicy.enabled needs runner.networkPolicy.apiServer.cidrs")
    {
        return Err(
            format!("a NetworkPolicy without the API server's address was not refused clearly: {stderr}").into(),
        );
    }
    Ok(())
}

/// `helm install`, then the dev environment of the example pipeline runs end to end under the
/// operator the chart started.
fn install_and_run(env: &Env) -> Result<(), Failed> {
    env.runtime.block_on(async {
        for namespace in [RELEASE_NAMESPACE, PIPELINES] {
            kglue_e2e::create_namespace(&env.client, namespace).await?;
        }
        // The credentials the dev Connection refers to: created by hand, never kept in Git.
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "lake-credentials", "labels": {"kglue.dev/secret-type": "connection"}},
            "stringData": {"AWS_ACCESS_KEY_ID": env.s3.access_key(), "AWS_SECRET_ACCESS_KEY": env.s3.secret_key()},
        }))?;
        Api::<Secret>::namespaced(env.client.clone(), PIPELINES)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let chart = chart_dir().display().to_string();
    let port = format!("operator.metricsPort={}", env.metrics_port);
    env.helm_ok(&[
        "install",
        RELEASE,
        &chart,
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
    ])?;
    common::wait_for("the operator to lead", Duration::from_secs(60), || {
        let metrics = common::http_get(env.metrics_port, "/metrics").unwrap_or_default();
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
            &PatchParams::apply(common::FIELD_MANAGER).force(),
            &Patch::Apply(&endpoint),
        ))
        .map_err(|e| format!("pointing the Connection at the local S3 server: {e}"))?;

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
    let run = common::wait_for("the dev workflow run to finish", WORKFLOW_SETTLE, || {
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
            common::tail(&env.operator_log(), 40)
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

/// The chart with other values, against the API server that now has its CRDs: a server-side dry
/// run validates every object (schemas, CEL, RBAC objects) without creating it.
fn server_side_dry_run(env: &Env) -> Result<(), Failed> {
    let dir = env.control_plane.state_dir().join("dry-run");
    std::fs::create_dir_all(&dir)?;
    // A namespace of its own, so the dry run creates rather than updates what the install made.
    env.runtime
        .block_on(kglue_e2e::create_namespace(&env.client, "dry-run"))
        .map_err(|e| e.to_string())?;
    for (name, values) in [
        (
            "all-namespaces",
            &[
                "runner.namespaces={dry-run}",
                "defaultConnection.create=true",
                "defaultConnection.s3.credentialsSecret=lake-credentials",
                "workerSizes.Large.cpu=2",
                "workerSizes.Large.memoryGiB=12",
                "runner.networkPolicy.enabled=true",
                "runner.networkPolicy.apiServer.cidrs={127.0.0.1/32}",
            ][..],
        ),
        (
            "one-namespace",
            &["operator.watchNamespace=sales-dev", "operator.replicas=2"][..],
        ),
    ] {
        let chart = chart_dir().display().to_string();
        let mut args = vec!["template", "dry", chart.as_str(), "--namespace", RELEASE_NAMESPACE];
        for value in values {
            args.extend(["--set", value]);
        }
        let rendered = dir.join(format!("{name}.yaml"));
        std::fs::write(&rendered, env.helm_ok(&args)?)?;
        let path = rendered.display().to_string();
        // The cluster-scoped admission policy exists already (the install made it, with Helm as
        // its manager): a dry run checks what the server accepts, so it may take its fields over.
        let applied = env.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            &path,
        ])?;
        if !applied.contains("deployment.apps/dry-kglue serverside-applied (server dry run)") {
            return Err(format!("{name}: the dry run did not apply the Deployment:\n{applied}").into());
        }
        if name == "all-namespaces"
            && !applied.contains("networkpolicy.networking.k8s.io/kglue-runner serverside-applied (server dry run)")
        {
            return Err(format!("{name}: the dry run did not apply the runner's NetworkPolicy:\n{applied}").into());
        }
        if name == "all-namespaces"
            && !applied.contains(&format!(
                "validatingadmissionpolicybinding.admissionregistration.k8s.io/kglue-runresults-{RELEASE_NAMESPACE}-dry serverside-applied"
            ))
        {
            return Err(format!("{name}: the dry run did not apply the RunResult policy's binding:\n{applied}").into());
        }
    }
    Ok(())
}

/// The Flux and Argo CD objects refer to paths that exist and render: each Kustomization's and
/// Application's path renders with kustomize (or is the chart, rendered with the values given).
fn gitops_objects(env: &Env) -> Result<(), Failed> {
    let root = repo_root();
    let flux = env.kubectl.kustomize(&root.join("examples/gitops/flux"))?;
    let argocd = kglue_e2e::load_manifests(&root.join("examples/gitops/argocd"))?;
    let mut checked = 0;
    for manifest in flux.iter().chain(argocd.iter()) {
        let object = &manifest.object;
        let (path, values) = match text(&object["kind"]) {
            "Kustomization" => (text(&object["spec"]["path"]), Value::Null),
            "HelmRelease" => (
                text(&object["spec"]["chart"]["spec"]["chart"]),
                object["spec"]["values"].clone(),
            ),
            "Application" => (
                text(&object["spec"]["source"]["path"]),
                object["spec"]["source"]["helm"]["valuesObject"].clone(),
            ),
            _ => continue,
        };
        let name = text(&object["metadata"]["name"]);
        let dir = root.join(path.trim_start_matches("./"));
        if !dir.is_dir() || path.is_empty() {
            return Err(format!("{} {name} points at {path:?}, which is not a directory", object["kind"]).into());
        }
        if dir.join("Chart.yaml").exists() {
            check_chart_values(env, &dir, &values)
                .map_err(|e| format!("{} {name}: {}", object["kind"], e.message().unwrap_or_default()))?;
        } else {
            let rendered = env.kubectl.kustomize(&dir)?;
            if rendered.is_empty() {
                return Err(format!("{} {name}: {path} renders nothing", object["kind"]).into());
            }
        }
        checked += 1;
    }
    if checked < 6 {
        return Err(format!("expected 3 Flux and 3 Argo CD objects with paths, checked {checked}").into());
    }
    Ok(())
}

fn check_chart_values(env: &Env, chart: &Path, values: &Value) -> Result<(), Failed> {
    let file = env.control_plane.state_dir().join("gitops-values.json");
    std::fs::write(&file, values.to_string())?;
    let chart = chart.display().to_string();
    let file = file.display().to_string();
    env.helm_ok(&["template", RELEASE, &chart, "-f", &file])?;
    Ok(())
}
