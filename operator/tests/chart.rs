//! The Helm chart (charts/kglue) and the GitOps examples on a real local control plane.
//!
//! The chart is linted and rendered, its runner Role is checked against operator/src/rbac.rs, and
//! then it is really installed with `helm install`: the Deployment's pod runs on the node agent,
//! which starts `kglue-operator` from the rendered command, under the chart's own ServiceAccount
//! and RBAC. That operator then runs the dev environment of the example pipeline
//! (examples/environments/dev) end to end when order files land. The GitOps objects of
//! examples/gitops are checked against what they point at.

mod common;

use std::path::Path;
use std::process::ExitCode;

use common::chart::{Env, RELEASE, RELEASE_NAMESPACE, chart_dir, install_and_run, text};
use kglue_e2e::harness::{self, trial};
use kglue_e2e::{ControlPlane, S3Server, repo_root, workspace_binary};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};

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
            (common::OPERATOR_IMAGE, operator.as_path()),
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
        chart: vec![chart_dir().display().to_string()],
        _agent: agent,
        _registry: None,
    })
}

/// Values that switch on every optional part of the chart.
const FULL_VALUES: &[&str] = &[
    "runner.namespaces={sales-dev,sales-prod}",
    "runner.serviceAccountAnnotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/kglue-runner",
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
        let account = objects
            .iter()
            .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["namespace"] == namespace)
            .ok_or_else(|| format!("no runner ServiceAccount in {namespace}"))?;
        if account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            != "arn:aws:iam::123456789012:role/kglue-runner"
        {
            return Err(format!("the runner ServiceAccount lacks the IRSA annotation: {account:#}").into());
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
        let text = env.helm_ok(&args)?;
        if name == "all-namespaces" {
            runner_pods_reach_each_other(&text)?;
        }
        std::fs::write(&rendered, text)?;
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

/// The runner NetworkPolicy in `rendered` admits, and lets runner pods reach, the namespace's
/// runner pods (a distributed run's driver and executors), and nothing else from outside.
fn runner_pods_reach_each_other(rendered: &str) -> Result<(), Failed> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(rendered).map_err(|e| e.to_string())?;
    let policy = documents
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy")
        .ok_or("no runner NetworkPolicy rendered")?;
    let runner = json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "kglue-runner"}}});
    let ingress = &policy["spec"]["ingress"];
    let admits_runners = ingress.as_array().is_some_and(|rules| {
        rules.len() == 1
            && rules[0]["from"]
                .as_array()
                .is_some_and(|from| from == &vec![runner.clone()])
    });
    let reaches_runners = policy["spec"]["egress"].as_array().is_some_and(|rules| {
        rules
            .iter()
            .any(|r| r["to"].as_array().is_some_and(|to| to.contains(&runner)))
    });
    if !admits_runners || !reaches_runners {
        return Err(format!("the runner NetworkPolicy should admit and reach only runner pods: {policy:#}").into());
    }
    Ok(())
}
