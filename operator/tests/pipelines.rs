//! Triggers and Workflows on a real local control plane: the operator, the node agent playing the
//! kubelet (runs are real Kubernetes Jobs running the `kglue` runner), and the S3 server.
//!
//! The cases run in order on one cluster: the example pipeline started by its Event trigger when
//! order files land, then a failure injected into its clean job, fixed, and the workflow run
//! resumed without crawling again; a chain of Conditional triggers taken down its success path
//! and its failure branch; a real every-minute schedule.

mod common;
mod gitops;

use std::process::ExitCode;
use std::time::Duration;

use common::{Cluster, Operator, orders_json, tail};
use kglue_e2e::harness::{self, trial};
use kglue_e2e::{load_manifests, repo_root};
use kube::api::{Patch, PatchParams};
use libtest_mimic::{Arguments, Failed};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};

const NAMESPACE: &str = "pipelines";
/// How long a workflow run (a crawl and two jobs, each a Kubernetes Job) may take.
const WORKFLOW_SETTLE: Duration = Duration::from_secs(240);
/// How long a job run may take.
const RUN_SETTLE: Duration = Duration::from_secs(90);

struct Env {
    cluster: Cluster,
    operator: Operator,
    /// Argo CD and kstatus health of objects captured at the moments that matter.
    gitops: gitops::Checker,
}

impl std::ops::Deref for Env {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

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
            "an_event_trigger_runs_the_example_workflow_and_a_fixed_failure_resumes_without_recrawling",
            event_workflow_resume,
        ),
        trial(
            &env,
            "a_conditional_chain_runs_its_success_path_or_its_failure_branch",
            conditional_chain,
        ),
        trial(&env, "a_scheduled_trigger_fires_every_minute", every_minute),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!(
            "--- {} ---\n{}",
            env.operator.log.display(),
            tail(&env.operator.log_text(), 80)
        );
    }
    conclusion.exit_code()
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["sales-landing", "sales-curated", "sales-reports", "chain"])?;
    let operator = Operator::start(
        &cluster.control_plane,
        "pipelines",
        &["--leader-elect", "false", "--retry-backoff-seconds", "1"],
    )?;
    let gitops = gitops::Checker::new().map_err(|e| format!("{e:?}"))?;
    Ok(Env {
        cluster,
        operator,
        gitops,
    })
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The runs of `plural`/`name` that `starter` (`Workflow/x`, `Trigger/y`) started.
fn started_by(env: &Env, plural: &str, name: &str, starter: &str) -> Result<Vec<Value>, Failed> {
    let (kind, starter_name) = starter.split_once('/').unwrap_or((starter, ""));
    let mut ids = std::collections::BTreeSet::new();
    Ok(env
        .runs(plural, name)?
        .into_iter()
        .filter(|r| r["startedBy"]["kind"] == kind && r["startedBy"]["name"] == starter_name)
        // One entry per run: retries are further records of the same run id.
        .filter(|r| ids.insert(text(&r["id"]).to_string()))
        .collect())
}

/// Waits until workflow `name` has `count` runs and the newest is final; returns it.
fn wait_workflow_run(env: &Env, name: &str, count: usize) -> Result<Value, Failed> {
    env.wait_for(&format!("workflow {name} run {count} to end"), WORKFLOW_SETTLE, || {
        let runs = env.runs("workflows", name)?;
        let newest = runs.first().filter(|_| runs.len() >= count);
        Ok(newest
            .filter(|r| ["Succeeded", "Failed", "Stopped", "Error"].contains(&text(&r["state"])))
            .cloned())
    })
}

fn node<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
        .unwrap_or(&Value::Null)
}

fn expect(run: &Value, state: &str, what: &str) -> Result<(), Failed> {
    if run["state"] == state {
        Ok(())
    } else {
        Err(format!("{what}: expected {state}, got {run:#}").into())
    }
}

/// `plural`/`name` as the API server returns it, as JSON.
fn object(env: &Env, plural: &str, name: &str) -> Result<Value, Failed> {
    let object = env
        .block(env.api(plural).get(name))
        .map_err(|e| format!("get {plural}/{name}: {e}"))?;
    Ok(serde_json::to_value(object)?)
}

/// Checks the Argo CD and kstatus health of `plural`/`name` as it is now.
fn health(env: &Env, moment: &str, plural: &str, name: &str, argocd: &str, says: &str) -> Result<(), Failed> {
    let object = object(env, plural, name)?;
    env.gitops.expect(moment, &object, argocd, "Current", says)?;
    Ok(())
}

fn patch_job_sql(env: &Env, job: &str, sql: &str) -> Result<(), Failed> {
    let patch = json!({"spec": {"sql": sql}});
    let changed = env
        .block(
            env.api("jobs")
                .patch(job, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .map_err(|e| format!("patching job {job}: {e}"))?;
    // The response is a generation ahead of what the operator has seen.
    env.gitops.expect(
        "sql-changed",
        &serde_json::to_value(changed)?,
        "Progressing",
        "InProgress",
        "Waiting for the kglue operator to reconcile generation",
    )?;
    Ok(())
}

/// The example pipeline from Git, as a dev overlay would change it: the Connection points at the
/// local S3 server, the Event trigger fires on 2 files and polls every 5 s, the nightly schedule
/// is suspended. Order files land → the Event trigger starts the workflow → crawl, clean,
/// publish. Then the clean job breaks: the next workflow run fails at clean (the Conditional
/// trigger of the example reacts with a crawl), the job is fixed, and resuming the run runs clean
/// and publish again but not the crawl, and reads exactly the orders the failed run did not
/// commit.
fn event_workflow_resume(env: &Env) -> Result<(), Failed> {
    let mut clean_sql = String::new();
    for manifest in load_manifests(&repo_root().join("examples/sales-pipeline")).map_err(|e| e.to_string())? {
        let mut object = manifest.object.clone();
        match (text(&object["kind"]), text(&object["metadata"]["name"])) {
            ("Connection", _) => object["spec"]["s3"]["endpoint"] = json!(env.s3.endpoint()),
            ("Trigger", "orders-landed") => {
                object["spec"]["event"]["batchSize"] = json!(2);
                object["spec"]["event"]["pollIntervalSeconds"] = json!(5);
            }
            ("Trigger", "nightly") => object["spec"]["suspend"] = json!(true),
            ("Job", "clean-orders") => clean_sql = text(&object["spec"]["sql"]).to_string(),
            _ => {}
        }
        env.apply_object(&object)?;
    }
    // Not under the watched prefix: customers do not fire the trigger.
    env.land(
        "sales-landing",
        "customers/part-0.csv",
        "customer_id|country\n0|NL\n1|DE\n2|FR\n",
    )?;
    env.land(
        "sales-landing",
        "orders/dt=2024-05-01/part-0.json",
        &orders_json(1, 20, "2024-05-01"),
    )?;
    // The trigger sees the file (one pending) and waits for the second.
    let trigger = env.wait_for(
        "the Event trigger to count the first file",
        Duration::from_secs(30),
        || {
            let status = env.status("triggers", "orders-landed")?;
            Ok((status["pendingObjects"] == 1).then_some(status))
        },
    )?;
    if trigger["fires"].as_array().is_some_and(|f| !f.is_empty()) {
        return Err(format!("one file of a batch of 2 fired the trigger: {trigger:#}").into());
    }
    env.land(
        "sales-landing",
        "orders/dt=2024-05-01/part-1.json",
        &orders_json(21, 20, "2024-05-01"),
    )?;

    // While the first run is going, the Workflow is Healthy and says so.
    let running = env.wait_for("the first workflow run to be Running", WORKFLOW_SETTLE, || {
        let workflow = object(env, "workflows", "sales-pipeline")?;
        Ok((workflow["status"]["runs"][0]["state"] == "Running").then_some(workflow))
    })?;
    env.gitops
        .expect("running", &running, "Healthy", "Current", "Running")?;
    let first = wait_workflow_run(env, "sales-pipeline", 1)?;
    expect(&first, "Succeeded", "the first workflow run")?;
    health(env, "succeeded", "workflows", "sales-pipeline", "Healthy", "Succeeded")?;
    health(env, "succeeded", "jobs", "clean-orders", "Healthy", "Succeeded")?;
    health(env, "succeeded", "jobs", "publish-revenue", "Healthy", "Succeeded")?;
    health(env, "succeeded", "crawlers", "landing", "Healthy", "Succeeded")?;
    health(env, "fired", "triggers", "orders-landed", "Healthy", "last fired")?;
    // The overlay suspended the nightly schedule: Argo CD shows it Suspended; kstatus has no
    // such state and reads the Ready condition (Current).
    health(env, "suspended", "triggers", "nightly", "Suspended", "suspended")?;
    if first["startedBy"] != json!({"kind": "Trigger", "name": "orders-landed"}) {
        return Err(format!("the run was not started by the Event trigger: {first:#}").into());
    }
    for name in ["crawl-landing", "clean", "publish"] {
        if node(&first, name)["state"] != "Succeeded" {
            return Err(format!("node {name} of {first:#}").into());
        }
    }
    // clean hands the newest order date on; publish receives it as an argument.
    if first["runProperties"]["orders_through"] != "2024-05-01" {
        return Err(format!("clean's run property should reach the workflow run: {first:#}").into());
    }
    let publish = started_by(env, "jobs", "publish-revenue", "Workflow/sales-pipeline")?;
    if publish.first().map(|r| &r["arguments"]["orders_through"]) != Some(&json!("2024-05-01")) {
        return Err(format!("publish should receive orders_through: {publish:#?}").into());
    }
    let fired = env.status("triggers", "orders-landed")?;
    let started = fired["fires"][0]["started"][0].as_str().unwrap_or_default().to_string();
    if started != format!("Workflow/sales-pipeline/{}", text(&first["id"])) {
        return Err(format!("the trigger's fire should name the run it started: {fired:#}").into());
    }
    let reports = env.s3.store("sales-reports").map_err(|e| e.to_string())?;
    let published = env
        .block(futures::TryStreamExt::try_collect::<Vec<_>>(
            reports.list(Some(&ObjectPath::from("revenue"))),
        ))
        .map_err(|e| e.to_string())?;
    if published.is_empty() {
        return Err("publish wrote no report".into());
    }

    // Break the clean job; two more files land and fire the second run, which fails at clean.
    let broken = clean_sql.replace(
        "WHERE o.version = 1;",
        "WHERE o.version = 1 AND CAST('boom' AS INT) = 1;",
    );
    if broken == clean_sql {
        return Err("the example's clean SQL changed; update the failure injection".into());
    }
    patch_job_sql(env, "clean-orders", &broken)?;
    env.land(
        "sales-landing",
        "orders/dt=2024-05-02/part-0.json",
        &orders_json(41, 20, "2024-05-02"),
    )?;
    env.land(
        "sales-landing",
        "orders/dt=2024-05-02/part-1.json",
        &orders_json(61, 20, "2024-05-02"),
    )?;
    let second = wait_workflow_run(env, "sales-pipeline", 2)?;
    expect(&second, "Failed", "the run with the broken clean job")?;
    let run_id = text(&second["id"]).to_string();
    let crawl_run = node(&second, "crawl-landing")["runId"].clone();
    if node(&second, "clean")["state"] != "Failed"
        || node(&second, "publish")["skipped"] != true
        || node(&second, "crawl-landing")["state"] != "Succeeded"
    {
        return Err(format!("clean should fail and publish be skipped: {second:#}").into());
    }
    if !text(&second["message"]).contains("node clean ended Failed") {
        return Err(format!("the run's message should name the failed node: {second:#}").into());
    }
    // A last run that failed makes the Workflow and the Job Degraded (as Argo CD's CronJob check
    // does), the message naming what failed; kstatus reads the conditions, which stay Ready.
    health(
        env,
        "failed",
        "workflows",
        "sales-pipeline",
        "Degraded",
        "node clean ended Failed",
    )?;
    health(env, "failed", "jobs", "clean-orders", "Degraded", "Failed")?;
    // The example's Conditional trigger answers the failed clean with a crawl.
    let reaction = env.wait_for("the Conditional trigger's crawl", RUN_SETTLE, || {
        let runs = started_by(env, "crawlers", "landing", "Trigger/alert-on-clean-failure")?;
        Ok(runs.first().filter(|r| r["state"] == "Succeeded").cloned())
    })?;
    let crawls_before = env.runs("crawlers", "landing")?.len();

    // Fix the job and resume the run from its failed node with the CLI.
    patch_job_sql(env, "clean-orders", &clean_sql)?;
    let (ok, out, err) = env.cli(&[
        "resume",
        "workflow",
        "sales-pipeline",
        "-n",
        NAMESPACE,
        "--run",
        &run_id,
        "--wait",
    ])?;
    if !ok {
        return Err(format!("kglue resume --wait failed:\n{out}\n{err}").into());
    }
    let runs = env.runs("workflows", "sales-pipeline")?;
    let resumed = runs
        .iter()
        .find(|r| r["id"] == run_id.as_str())
        .ok_or("the resumed run is gone")?;
    expect(resumed, "Succeeded", "the resumed run")?;
    health(env, "resumed", "workflows", "sales-pipeline", "Healthy", "Succeeded")?;
    health(env, "resumed", "jobs", "clean-orders", "Healthy", "Succeeded")?;
    if resumed["resumes"] != 1 || node(resumed, "crawl-landing")["runId"] != crawl_run {
        return Err(format!("the resume should keep the crawl node's run: {resumed:#}").into());
    }
    if env.runs("crawlers", "landing")?.len() != crawls_before {
        return Err("resuming crawled again".into());
    }
    if resumed["runProperties"]["orders_through"] != "2024-05-02" {
        return Err(format!("the resumed clean's run property should replace the old one: {resumed:#}").into());
    }
    let workflow_crawls = started_by(env, "crawlers", "landing", "Workflow/sales-pipeline")?;
    if workflow_crawls.len() != 2 {
        return Err(format!("two workflow runs crawl twice, the resume not at all: {workflow_crawls:#?}").into());
    }
    // The failed clean committed nothing, so the resumed clean reads the 40 orders it missed.
    let clean_runs = started_by(env, "jobs", "clean-orders", "Workflow/sales-pipeline")?;
    if clean_runs.len() != 3 {
        return Err(format!("clean ran for run 1, failed for run 2 and ran on resume: {clean_runs:#?}").into());
    }
    let read = clean_runs[0]["metrics"]["sources"]["orders"]["rows"].as_i64();
    if read != Some(40) {
        return Err(format!("the resumed clean should read the 40 new orders: {:#}", clean_runs[0]).into());
    }
    let (ok, listed, err) = env.cli(&["runs", "workflow", "sales-pipeline", "-n", NAMESPACE])?;
    if !ok || !listed.contains(&run_id) || !listed.contains("clean=Succeeded") {
        return Err(format!("kglue runs workflow should list the resumed run:\n{listed}\n{err}").into());
    }
    println!(
        "workflow runs:\n{listed}conditional reaction: crawl {} started by Trigger/alert-on-clean-failure",
        text(&reaction["id"])
    );

    // Fires and workflow runs are counted.
    let metrics = env.operator.metrics()?;
    for series in [
        "kglue_operator_trigger_fires_total{trigger_type=\"Event\"} 2",
        "kglue_operator_runs_total{kind=\"Workflow\",state=\"Failed\"} 1",
    ] {
        if !metrics.lines().any(|line| line == series) {
            return Err(format!("/metrics should have {series}:\n{metrics}").into());
        }
    }

    // By hand: a workflow run with a run property, and the example's OnDemand trigger.
    let (ok, out, err) = env.cli(&[
        "start",
        "workflow",
        "sales-pipeline",
        "-n",
        NAMESPACE,
        "--arg",
        "requested_by=test",
        "--wait",
    ])?;
    let manual = env
        .runs("workflows", "sales-pipeline")?
        .first()
        .cloned()
        .unwrap_or_default();
    if !ok || manual["runProperties"]["requested_by"] != "test" || manual["startedBy"]["kind"] != "Manual" {
        return Err(
            format!("kglue start workflow --wait should run it with the property:\n{out}\n{err}\n{manual:#}").into(),
        );
    }
    let (ok, out, err) = env.cli(&["start", "trigger", "backfill-2024", "-n", NAMESPACE])?;
    let started = out
        .lines()
        .find_map(|l| l.strip_prefix("started Job/clean-orders/"))
        .map(str::to_string);
    let Some(run_id) = started.filter(|_| ok) else {
        return Err(format!("kglue start trigger should print the run it started:\n{out}\n{err}").into());
    };
    let backfill = env.wait_for("the backfill run", RUN_SETTLE, || {
        let runs = env.runs("jobs", "clean-orders")?;
        Ok(runs
            .into_iter()
            .find(|r| r["id"] == run_id.as_str() && r["state"] == "Succeeded"))
    })?;
    if backfill["arguments"]["since"] != "2024-01-01" || backfill["startedBy"]["name"] != "backfill-2024" {
        return Err(format!("the OnDemand trigger's run should carry its arguments: {backfill:#}").into());
    }
    Ok(())
}

/// A small job for the chain: reads `s3://chain/input/`, checks its `check` argument (a value
/// that is not a number fails the run), writes its own folder.
fn chain_job(name: &str) -> String {
    format!(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {{name: {name}}}
spec:
  sources:
    - name: input
      storage: {{location: "s3://chain/input/", format: Csv, connection: lake, csv: {{header: true}}}}
  sql: "CREATE VIEW output AS SELECT id, CAST($check AS BIGINT) AS checked FROM input;"
  sinks:
    - name: output
      storage: {{location: "s3://chain/{name}/", format: Parquet, connection: lake}}
      writeMode: Overwrite
  defaultArguments: {{check: "1"}}
  bookmark: {{option: Disable}}
"#
    )
}

fn conditional(name: &str, logical: &str, conditions: &[(&str, &str)], action: &str) -> String {
    let conditions: Vec<String> = conditions
        .iter()
        .map(|(job, state)| format!("      - {{job: {job}, state: {state}}}"))
        .collect();
    format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  type: Conditional\n  predicate:\n    logical: {logical}\n    conditions:\n{}\n  actions:\n    - job: {action}\n",
        conditions.join("\n")
    )
}

/// The `lake` Connection to the S3 server (as the example declares it) and the chain's input.
fn chain_input(env: &Env) -> Result<(), Failed> {
    env.apply(&format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\nspec:\n  s3:\n    endpoint: {}\n    forcePathStyle: true\n    credentialsSecretRef: {{name: lake-credentials}}\n",
        env.s3.endpoint()
    ))?;
    env.land("chain", "input/part-0.csv", "id\n1\n2\n3\n")
}

/// Runs of `job`, one per run id.
fn run_count(env: &Env, job: &str) -> Result<usize, Failed> {
    let ids: std::collections::BTreeSet<String> = env
        .runs("jobs", job)?
        .iter()
        .map(|r| text(&r["id"]).to_string())
        .collect();
    Ok(ids.len())
}

fn wait_runs(env: &Env, job: &str, count: usize, state: &str) -> Result<Value, Failed> {
    env.wait_for(
        &format!("job {job} to have {count} run(s), the newest {state}"),
        RUN_SETTLE,
        || {
            let runs = env.runs("jobs", job)?;
            let newest = runs.first().filter(|r| r["state"] == state);
            Ok(newest.filter(|_| run_count(env, job).unwrap_or(0) >= count).cloned())
        },
    )
}

/// A → B (when A Succeeded) → C (when A and B Succeeded), and D when A Failed. A run of A that
/// succeeds runs B then C and not D; a run of A that fails runs D and neither B nor C.
fn conditional_chain(env: &Env) -> Result<(), Failed> {
    chain_input(env)?;
    for job in ["a", "b", "c", "d"] {
        env.apply(&chain_job(job))?;
    }
    env.apply(&conditional("b-after-a", "And", &[("a", "Succeeded")], "b"))?;
    env.apply(&conditional(
        "c-after-a-and-b",
        "And",
        &[("a", "Succeeded"), ("b", "Succeeded")],
        "c",
    ))?;
    env.apply(&conditional("d-when-a-fails", "Any", &[("a", "Failed")], "d"))?;

    let (ok, out, err) = env.cli(&["start", "job", "a", "-n", NAMESPACE, "--wait"])?;
    if !ok {
        return Err(format!("job a should succeed:\n{out}\n{err}").into());
    }
    let b = wait_runs(env, "b", 1, "Succeeded")?;
    let c = wait_runs(env, "c", 1, "Succeeded")?;
    if b["startedBy"]["name"] != "b-after-a" || c["startedBy"]["name"] != "c-after-a-and-b" {
        return Err(format!("b and c should be started by their triggers: {b:#} {c:#}").into());
    }
    // Give a wrong trigger time to fire before checking it did not.
    std::thread::sleep(Duration::from_secs(3));
    if run_count(env, "d")? != 0 || run_count(env, "c")? != 1 || run_count(env, "b")? != 1 {
        return Err("the success path should run b and c once each and not d".into());
    }

    let (ok, out, err) = env.cli(&["start", "job", "a", "-n", NAMESPACE, "--arg", "check=oops", "--wait"])?;
    if ok {
        return Err(format!("job a with check=oops should fail:\n{out}\n{err}").into());
    }
    let d = wait_runs(env, "d", 1, "Succeeded")?;
    if d["startedBy"]["name"] != "d-when-a-fails" {
        return Err(format!("d should be started by its trigger: {d:#}").into());
    }
    health(env, "failed", "jobs", "a", "Degraded", "Failed")?;
    health(env, "succeeded", "jobs", "d", "Healthy", "Succeeded")?;
    health(env, "fired", "triggers", "d-when-a-fails", "Healthy", "last fired")?;
    std::thread::sleep(Duration::from_secs(3));
    if run_count(env, "b")? != 1 || run_count(env, "c")? != 1 || run_count(env, "d")? != 1 {
        return Err("the failure branch should run d once and neither b nor c again".into());
    }
    let c_trigger = env.status("triggers", "c-after-a-and-b")?;
    if c_trigger["fires"].as_array().map(Vec::len) != Some(1) {
        return Err(format!("c's trigger should have fired once: {c_trigger:#}").into());
    }
    Ok(())
}

/// A `* * * * *` schedule with concurrency policy Forbid fires at the next minute and shows the
/// one after in status; a Crawler's own `* * * * *` schedule crawls at that minute too.
fn every_minute(env: &Env) -> Result<(), Failed> {
    chain_input(env)?;
    env.apply(&chain_job("e"))?;
    env.apply(
        "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: chain}\nspec:\n  databaseName: chain\n",
    )?;
    env.apply(
        "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {name: chain-input}\nspec:\n  databaseName: chain\n  targets:\n    - {path: \"s3://chain/input/\", connection: lake}\n  schedule: {cron: \"* * * * *\"}\n",
    )?;
    env.apply(
        "apiVersion: kglue.dev/v1alpha1\nkind: Trigger\nmetadata: {name: minutely}\nspec:\n  type: Scheduled\n  schedule: {cron: \"* * * * *\", concurrencyPolicy: Forbid}\n  actions:\n    - job: e\n",
    )?;
    let next = env.wait_for("the schedule's next fire time", Duration::from_secs(30), || {
        Ok(env.status("triggers", "minutely")?["nextFireTime"]
            .as_str()
            .map(str::to_string))
    })?;
    let fired = env.wait_for("a fire of the every-minute schedule", Duration::from_secs(75), || {
        let status = env.status("triggers", "minutely")?;
        Ok(status["fires"].as_array().and_then(|f| f.first()).cloned())
    })?;
    // The announced tick (or, if the trigger was created a hair before a minute turned, the tick
    // it fired at once).
    let tick = text(&fired["reason"])
        .strip_prefix("schedule tick ")
        .unwrap_or_default()
        .to_string();
    if tick.is_empty() || tick > next {
        return Err(format!("the fire should be a tick no later than the announced {next}: {fired:#}").into());
    }
    let run = wait_runs(env, "e", 1, "Succeeded")?;
    if run["startedBy"]["name"] != "minutely" {
        return Err(format!("job e should be started by the schedule: {run:#}").into());
    }
    let status = env.status("triggers", "minutely")?;
    if status["nextFireTime"].as_str() <= Some(tick.as_str()) {
        return Err(format!("nextFireTime should move on: {status:#}").into());
    }
    let crawl = env.wait_for("a crawl on the crawler's own schedule", RUN_SETTLE, || {
        let runs = env.runs("crawlers", "chain-input")?;
        Ok(runs.first().filter(|r| r["state"] == "Succeeded").cloned())
    })?;
    health(env, "scheduled", "triggers", "minutely", "Healthy", "fires next")?;
    let crawler = env.status("crawlers", "chain-input")?;
    let scheduled = crawl["startedBy"]["kind"] == "Schedule" && text(&crawl["requestId"]).starts_with("schedule-");
    if !scheduled || crawler["nextScheduledCrawl"].as_str().is_none() {
        return Err(format!("the crawl should be the schedule's, with the next tick in status: {crawler:#}").into());
    }
    // Stop both before they fire again while the cluster shuts down.
    env.apply("apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {name: chain-input}\nspec:\n  databaseName: chain\n  targets:\n    - {path: \"s3://chain/input/\", connection: lake}\n")?;
    env.apply(
        "apiVersion: kglue.dev/v1alpha1\nkind: Trigger\nmetadata: {name: minutely}\nspec:\n  type: Scheduled\n  suspend: true\n  schedule: {cron: \"* * * * *\", concurrencyPolicy: Forbid}\n  actions:\n    - job: e\n",
    )?;
    Ok(())
}
