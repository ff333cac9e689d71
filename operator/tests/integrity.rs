//! Exactly once under faults (docs/runs.md, "Exactly once"), on a real local control plane: the
//! operator, the node agent running the `kglue` runner as local processes under the real Job
//! controller, the S3 server, and the API server's own admission (a ValidatingAdmissionPolicy, a
//! webhook that never answers) to make the runner's writes fail or hang at chosen points.
//!
//! - the decision to commit refused: nothing committed, nothing staged left, and the next run
//!   reads every object once;
//! - the runner stopped, and timed out, after it decided to commit (its catalog write hanging in
//!   a webhook): the run is finished by a settle attempt and Succeeded, its bookmark committed
//!   once, and the next run reads only new objects;
//! - the operator down while a run finishes and for longer than `--run-ttl-seconds`: the run is
//!   still recorded Succeeded with its bookmark, and its Kubernetes Job goes only afterwards;
//! - an Overwrite whose Table write conflicts with a field another manager owns: it fails before
//!   its commit, and the old data is still there;
//! - a retry waits until the previous attempt's process is gone;
//! - what a killed attempt staged (files, an incomplete multipart upload) is gone once its retry
//!   starts, and what a stopped attempt staged once its cleanup attempt ran;
//! - two runs of an Overwrite Job with `maxConcurrentRuns: 2` run one at a time, and the location
//!   holds one run's rows;
//! - 30,000 objects landing inside the safety band: the Job's status stays small, each object is
//!   read once;
//! - a Job whose sink shares a location with an older Job's replacing sink is Stalled, its runs
//!   refused, until the older Job goes.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Operator, runner_pids, tail};
use futures::{StreamExt, TryStreamExt};
use kglue_e2e::harness::{self, trial};
use kube::api::{DeleteParams, DynamicObject};
use kube::discovery::ApiResource;
use libtest_mimic::{Arguments, Failed};
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "lake";
/// How long a run may take to reach the expected state.
const SETTLE: Duration = Duration::from_secs(150);

struct Env {
    cluster: Cluster,
    operator: Mutex<Option<Operator>>,
    requests: Mutex<u32>,
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
            "a_refused_decision_commits_nothing_and_the_next_run_reads_everything_once",
            refused_decision,
        ),
        trial(
            &env,
            "a_stop_after_the_decision_finishes_the_commit_and_moves_the_bookmark_once",
            stop_after_decision,
        ),
        trial(
            &env,
            "a_timeout_after_the_decision_finishes_the_commit_and_moves_the_bookmark_once",
            timeout_after_decision,
        ),
        trial(
            &env,
            "an_operator_down_past_the_run_ttl_still_records_the_run_and_its_bookmark",
            operator_outage,
        ),
        trial(
            &env,
            "an_overwrite_whose_table_write_conflicts_fails_before_its_commit_and_keeps_the_old_data",
            overwrite_conflict,
        ),
        trial(
            &env,
            "a_retry_waits_until_the_previous_attempts_process_is_gone",
            retry_after_pod_gone,
        ),
        trial(
            &env,
            "what_killed_and_stopped_attempts_staged_is_removed",
            leftovers_removed,
        ),
        trial(
            &env,
            "overwriting_runs_of_one_job_run_one_at_a_time",
            overwrites_serialized,
        ),
        trial(
            &env,
            "thirty_thousand_objects_inside_the_band_keep_the_status_small_and_are_read_once",
            many_objects_in_the_band,
        ),
        trial(
            &env,
            "a_job_sharing_a_replaced_location_is_stalled_until_the_other_goes",
            shared_location_refused,
        ),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(env) = Arc::try_unwrap(env)
        && let Some(operator) = env.operator.lock().unwrap_or_else(|p| p.into_inner()).take()
        && conclusion.has_failed()
    {
        eprintln!(
            "--- {} ---\n{}",
            operator.log.display(),
            tail(&operator.log_text(), 120)
        );
    }
    conclusion.exit_code()
}

/// The Kubernetes Jobs of recorded runs live this long.
const RUN_TTL_SECONDS: u64 = 5;

fn operator_flags() -> Vec<String> {
    [
        "--leader-elect",
        "false",
        "--retry-backoff-seconds",
        "1",
        "--run-ttl-seconds",
    ]
    .into_iter()
    .map(String::from)
    .chain([RUN_TTL_SECONDS.to_string()])
    .collect()
}

fn start_operator(cluster: &Cluster) -> Result<Operator, Box<dyn std::error::Error>> {
    let flags = operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Operator::start(&cluster.control_plane, "integrity", &flags)
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["landing", "curated"])?;
    let operator = start_operator(&cluster)?;
    let env = Env {
        cluster,
        operator: Mutex::new(Some(operator)),
        requests: Mutex::new(0),
    };
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "lake"},
        "spec": {"s3": {"endpoint": env.s3.endpoint(), "region": env.s3.region(), "forcePathStyle": true,
                        "credentialsSecretRef": {"name": "lake-credentials"}}}
    }))
    .map_err(|e| format!("{e:?}"))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "curated"},
        "spec": {"databaseName": "curated"}
    }))
    .map_err(|e| format!("{e:?}"))?;
    Ok(env)
}

impl Env {
    /// Asks for a run of Job `name` with a fresh request id; returns the request id.
    fn start(&self, name: &str) -> Result<String, Failed> {
        let id = {
            let mut n = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            format!("test-{n}")
        };
        self.annotate("jobs", name, &format!("run.kglue.dev/{id}"), "{}")?;
        Ok(id)
    }

    /// Waits until the newest record of the run for `request` satisfies `done`; returns it.
    fn wait_run(&self, name: &str, request: &str, done: impl Fn(&Value) -> bool) -> Result<Value, Failed> {
        self.wait_run_within(name, request, SETTLE, done)
    }

    fn wait_run_within(
        &self,
        name: &str,
        request: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failed> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let runs = self.runs("jobs", name)?;
            if let Some(run) = runs.iter().find(|r| r["requestId"] == request) {
                if done(run) {
                    return Ok(run.clone());
                }
                last = run.clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("jobs/{name} request {request}: not there within {limit:?}; last seen: {last:#}").into())
    }

    fn restart_operator(&self, down: impl FnOnce() -> Result<(), Failed>) -> Result<(), Failed> {
        let mut slot = self.operator.lock().unwrap_or_else(|p| p.into_inner());
        drop(slot.take());
        let outcome = down();
        *slot = Some(start_operator(&self.cluster).map_err(|e| e.to_string())?);
        outcome
    }

    fn batch_jobs(&self) -> kube::Api<k8s_openapi::api::batch::v1::Job> {
        kube::Api::namespaced(self.client.clone(), NAMESPACE)
    }

    fn wait_final(&self, name: &str, request: &str) -> Result<Value, Failed> {
        self.wait_final_within(name, request, SETTLE)
    }

    fn wait_final_within(&self, name: &str, request: &str, limit: Duration) -> Result<Value, Failed> {
        self.wait_run_within(name, request, limit, |run| {
            ["Succeeded", "Failed", "Timeout", "Stopped", "Error"].contains(&state(run))
        })
    }

    /// Every object under `s3://bucket/prefix`.
    fn objects(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, Failed> {
        let store = self.s3.store(bucket).map_err(|e| e.to_string())?;
        let prefix = object_store::path::Path::from(prefix);
        let listed: Vec<object_store::ObjectMeta> = self
            .block(store.list(Some(&prefix)).try_collect())
            .map_err(|e| format!("list s3://{bucket}/{prefix}: {e}"))?;
        Ok(listed.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Applies Job `name` and waits until the operator finds it Ready (runs of a Job that is not
    /// are refused).
    fn apply_job(&self, name: &str, timeout_minutes: u32) -> Result<(), Failed> {
        self.apply_ready(&job(name, timeout_minutes))
    }

    fn apply_ready(&self, object: &Value) -> Result<(), Failed> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        self.apply_object(object)?;
        self.wait_ready("jobs", name, SETTLE)
    }

    fn delete_cluster_object(&self, resource: &ApiResource, name: &str) -> Result<(), Failed> {
        let api: kube::Api<DynamicObject> = kube::Api::all_with(self.client.clone(), resource);
        self.block(api.delete(name, &DeleteParams::default()))
            .map_err(|e| format!("deleting {name}: {e}"))?;
        Ok(())
    }
}

fn state(run: &Value) -> &str {
    run["state"].as_str().unwrap_or_default()
}

fn expect_state(run: &Value, wanted: &str) -> Result<(), Failed> {
    if state(run) == wanted {
        Ok(())
    } else {
        Err(format!("expected {wanted}, got {run:#}").into())
    }
}

fn sink_rows(run: &Value) -> i64 {
    run["metrics"]["sinks"]["out"]["rows"].as_i64().unwrap_or(-1)
}

/// A bookmarked Job copying `s3://landing/<name>/` (CSV) to `s3://curated/<name>/` (Parquet,
/// Append) and the Table `curated.<name>`.
fn job(name: &str, timeout_minutes: u32) -> Value {
    job_with(name, timeout_minutes, "Append", "SELECT id, amount FROM src")
}

fn job_with(name: &str, timeout_minutes: u32, write_mode: &str, select: &str) -> Value {
    json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "bookmark": {"option": "Enable"},
            "timeoutMinutes": timeout_minutes,
            "sources": [{"name": "src", "storage": {"location": format!("s3://landing/{name}/"), "format": "Csv", "connection": "lake"}}],
            "sql": format!("CREATE VIEW out AS {select}"),
            "sinks": [{"name": "out", "storage": {"location": format!("s3://curated/{name}/"), "format": "Parquet", "connection": "lake"},
                       "writeMode": write_mode, "table": {"database": "curated", "table": name}}],
            "runHistoryLimit": 20
        }
    })
}

fn rows_csv(first: u32, count: u32) -> String {
    let mut text = String::from("id,amount\n");
    for id in first..first + count {
        text.push_str(&format!("{id},{}.5\n", id * 3));
    }
    text
}

/// The run ids that own the committed files under `s3://curated/<name>/`, and whether anything
/// staged is left there.
fn committed_runs(env: &Env, name: &str) -> Result<(BTreeSet<String>, Vec<String>), Failed> {
    let objects = env.objects("curated", name)?;
    let staged: Vec<String> = objects
        .iter()
        .filter(|o| o.contains("_kglue_staging"))
        .cloned()
        .collect();
    let runs = objects
        .iter()
        .filter(|o| !o.contains("_kglue_staging"))
        .filter_map(|o| {
            let file = o.rsplit('/').next()?;
            let rest = file.strip_prefix("part-")?;
            // part-<run id>-<stream>-<seq>.<ext>; run ids are `jr-<hex>`.
            let mut parts = rest.splitn(3, '-');
            Some(format!("{}-{}", parts.next()?, parts.next()?))
        })
        .collect();
    Ok((runs, staged))
}

fn policy_resources() -> (ApiResource, ApiResource) {
    (
        ApiResource::erase::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>(&()),
        ApiResource::erase::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(&()),
    )
}

/// The runner's decision (a Committing RunResult) refused by the API server: the run is Failed,
/// naming the refusal; nothing reached the sink's location, staged or committed; once the policy
/// goes, the next run reads every object, once.
fn refused_decision(env: &Env) -> Result<(), Failed> {
    let name = "refused";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 5))?;
    env.apply_job(name, 10)?;
    env.apply_object(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "no-commit-for-refused"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["kglue.dev"], "apiVersions": ["*"],
                "operations": ["CREATE"], "resources": ["runresults"]}]},
            "validations": [{
                "expression": "!(object.spec.ownerName == 'refused' && object.spec.outcome == 'Committing')",
                "message": "commits of refused are not allowed today"
            }]
        }
    }))?;
    env.apply_object(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "no-commit-for-refused"},
        "spec": {"policyName": "no-commit-for-refused", "validationActions": ["Deny"]}
    }))?;
    // Policies take effect when the API server's informer sees them: wait a little longer than
    // its sync before starting.
    std::thread::sleep(Duration::from_secs(3));
    let request = env.start(name)?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Failed")?;
    let message = run["message"].as_str().unwrap_or_default();
    if !message.contains("commits of refused are not allowed today") {
        return Err(format!("the run's message should name the refusal: {run:#}").into());
    }
    let objects = env.objects("curated", name)?;
    if !objects.is_empty() {
        return Err(format!("a refused decision must leave nothing at the location: {objects:?}").into());
    }
    if env.status("jobs", name)?["bookmark"]["runId"].is_string() {
        return Err("a refused decision must not move the bookmark".into());
    }

    let (policy, binding) = policy_resources();
    env.delete_cluster_object(&binding, "no-commit-for-refused")?;
    env.delete_cluster_object(&policy, "no-commit-for-refused")?;
    std::thread::sleep(Duration::from_secs(3));
    let request = env.start(name)?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Succeeded")?;
    if sink_rows(&run) != 5 {
        return Err(format!("the next run reads every object once: {run:#}").into());
    }
    let (runs, staged) = committed_runs(env, name)?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if runs != BTreeSet::from([id]) || !staged.is_empty() {
        return Err(format!("only the succeeded run's files, nothing staged: {runs:?} {staged:?}").into());
    }
    Ok(())
}

/// A TCP listener that accepts connections and never answers: an admission webhook that hangs
/// until the API server's timeout. Its sockets are held by a thread until the test process ends.
fn hanging_webhook() -> Result<u16, Failed> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    Ok(port)
}

/// A webhook on writes of Table `curated.<name>` that are not dry runs: the runner's check of the
/// Table (a dry run, before its decision) passes, and its write after the decision hangs.
fn hang_table_writes(env: &Env, name: &str, port: u16) -> Result<(), Failed> {
    env.apply_object(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("hang-{name}")},
        "webhooks": [{
            "name": "hang.kglue.test",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/hang")},
            "rules": [{"apiGroups": ["kglue.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["tables"], "scope": "Namespaced"}],
            "matchConditions": [
                {"name": "this-table", "expression": format!("object.metadata.name == 'curated.{name}'")},
                {"name": "not-a-dry-run", "expression": "request.dryRun != true"}
            ],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 30
        }]
    }))?;
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

fn unhang_table_writes(env: &Env, name: &str) -> Result<(), Failed> {
    let resource =
        ApiResource::erase::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>(&());
    env.delete_cluster_object(&resource, &format!("hang-{name}"))
}

/// Runs Job `name` with its catalog write hanging; `interrupt` ends the attempt after its
/// decision (a stop, or nothing and its timeout). The run must be Settling, then Succeeded once
/// the webhook goes, with the first run's rows committed once and its bookmark; a second run
/// then reads only the new object.
fn interrupted_after_decision(
    env: &Env,
    name: &str,
    timeout_minutes: u32,
    interrupt: impl Fn(&Value) -> Result<(), Failed>,
    why: &str,
) -> Result<(), Failed> {
    let port = hanging_webhook()?;
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 4))?;
    hang_table_writes(env, name, port)?;
    env.apply_job(name, timeout_minutes)?;
    let request = env.start(name)?;
    // The decision is made: the attempt's RunResult says Committing.
    let decided = env.wait_for("the decision to commit", SETTLE, || {
        let results: kube::Api<kglue_crds::RunResult> = kube::Api::namespaced(env.client.clone(), NAMESPACE);
        let listed = env
            .block(results.list(&kube::api::ListParams::default()))
            .map_err(|e| e.to_string())?;
        Ok(listed.items.into_iter().find(|r| {
            r.spec.owner_name == name && r.spec.outcome == kglue_crds::run_result::AttemptOutcome::Committing
        }))
    })?;
    // Frozen right there, so that whatever ends the attempt comes after the decision and before
    // the commit is finished (the hanging webhook holds it until then).
    let frozen = freeze_runner(&decided.spec.run_id)?;
    let running = env.wait_run(name, &request, |run| state(run) == "Running")?;
    interrupt(&running)?;
    let settling = env.wait_run(name, &request, |run| !["Running", "Stopping"].contains(&state(run)))?;
    expect_state(&settling, "Settling")?;
    if !settling["message"].as_str().unwrap_or_default().contains(why) {
        return Err(format!("a Settling run says why its attempt ended ({why}): {settling:#}").into());
    }
    eprintln!("froze runner process(es) {frozen:?}; settling: {}", settling["message"]);
    unhang_table_writes(env, name)?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Succeeded")?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if decided.spec.run_id != id {
        return Err(format!("the decision was run {}, the record {id}", decided.spec.run_id).into());
    }
    if sink_rows(&run) != 4 {
        return Err(format!("the settled run keeps its figures: {run:#}").into());
    }
    let status = env.status("jobs", name)?;
    if status["bookmark"]["runId"] != id.as_str() {
        return Err(format!("the bookmark is the settled run's: {status:#}").into());
    }
    let history = status["bookmarkHistory"].as_array().cloned().unwrap_or_default();
    if history.iter().filter(|h| h["runId"] == id.as_str()).count() != 1 {
        return Err(format!("the bookmark moved once: {status:#}").into());
    }
    let (runs, staged) = committed_runs(env, name)?;
    if runs != BTreeSet::from([id.clone()]) || !staged.is_empty() {
        return Err(format!("the settled run's files, nothing staged: {runs:?} {staged:?}").into());
    }
    let table: kglue_crds::Table = env
        .block(kube::Api::namespaced(env.client.clone(), NAMESPACE).get(&format!("curated.{name}")))
        .map_err(|e| format!("the Table written by the settle attempt: {e}"))?;
    let updated = table.status.and_then(|s| s.last_updated).and_then(|u| u.run_id);
    if updated.as_deref() != Some(id.as_str()) {
        return Err(format!("the Table's lastUpdated names the run: {updated:?}").into());
    }

    env.land("landing", &format!("{name}/b.csv"), &rows_csv(100, 3))?;
    let request = env.start(name)?;
    let next = env.wait_final(name, &request)?;
    expect_state(&next, "Succeeded")?;
    if sink_rows(&next) != 3 {
        return Err(format!("the next run reads only the new object: {next:#}").into());
    }
    Ok(())
}

/// SIGSTOPs the runner processes of `run_id` (the node agent's SIGKILL still ends them); returns
/// their pids.
fn freeze_runner(run_id: &str) -> Result<Vec<i32>, Failed> {
    let pids = runner_pids(run_id);
    for pid in &pids {
        if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        }
    }
    if pids.is_empty() {
        return Err(format!("no runner process of {run_id} to freeze").into());
    }
    Ok(pids)
}

/// Whether process `pid` still exists (a zombie does not count: it has ended).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn stop_after_decision(env: &Env) -> Result<(), Failed> {
    interrupted_after_decision(
        env,
        "stopped",
        10,
        |run| {
            let id = run["id"].as_str().unwrap_or_default();
            env.annotate("jobs", "stopped", &format!("stop.kglue.dev/{id}"), "")
        },
        "stopped on request after it decided to commit",
    )
}

fn timeout_after_decision(env: &Env) -> Result<(), Failed> {
    interrupted_after_decision(env, "late", 1, |_| Ok(()), "ran past timeoutMinutes (1 min)")
}

/// The operator is down while a run finishes and for longer than the run TTL: when it is back,
/// the run is recorded Succeeded with its bookmark (the Kubernetes Job and its RunResult waited
/// for it), the Job then goes with its TTL, and the next run reads only new objects.
fn operator_outage(env: &Env) -> Result<(), Failed> {
    let name = "outage";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 6))?;
    env.apply_job(name, 10)?;
    let request = env.start(name)?;
    let running = env.wait_run(name, &request, |run| ["Starting", "Running"].contains(&state(run)))?;
    let id = running["id"].as_str().unwrap_or_default().to_string();
    let attempt_job = format!("{name}-{id}-0");
    env.restart_operator(|| {
        env.wait_for("the attempt's Kubernetes Job to complete", SETTLE, || {
            let job = env
                .block(env.batch_jobs().get_opt(&attempt_job))
                .map_err(|e| e.to_string())?;
            let complete = job
                .and_then(|j| j.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"));
            Ok(complete.then_some(()))
        })?;
        // Longer than the TTL, with a margin for the TTL controller.
        std::thread::sleep(Duration::from_secs(RUN_TTL_SECONDS * 3));
        if env
            .block(env.batch_jobs().get_opt(&attempt_job))
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Err(format!("{attempt_job} was deleted before its run was recorded").into());
        }
        Ok(())
    })?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Succeeded")?;
    if sink_rows(&run) != 6 {
        return Err(format!("the recorded run has its figures: {run:#}").into());
    }
    let status = env.status("jobs", name)?;
    if status["bookmark"]["runId"] != id.as_str() {
        return Err(format!("the bookmark is the run's: {status:#}").into());
    }
    // Recorded, the Job is retired: its TTL passes and it goes.
    env.wait_for("the recorded run's Kubernetes Job to go with its TTL", SETTLE, || {
        let job = env
            .block(env.batch_jobs().get_opt(&attempt_job))
            .map_err(|e| e.to_string())?;
        Ok(job.is_none().then_some(()))
    })?;
    env.land("landing", &format!("{name}/b.csv"), &rows_csv(50, 2))?;
    let request = env.start(name)?;
    let next = env.wait_final(name, &request)?;
    expect_state(&next, "Succeeded")?;
    if sink_rows(&next) != 2 {
        return Err(format!("the next run reads only the new object: {next:#}").into());
    }
    Ok(())
}

/// An Overwrite whose Table write would change a column another field manager owns (a Git
/// manifest): the run fails before its commit, naming the conflict; the previous run's files are
/// still the location's, nothing is staged.
fn overwrite_conflict(env: &Env) -> Result<(), Failed> {
    let name = "over";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 3))?;
    let mut first = job_with(name, 10, "Overwrite", "SELECT id, amount FROM src");
    first["spec"]["bookmark"] = json!({"option": "Disable"});
    env.apply_ready(&first)?;
    let request = env.start(name)?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Succeeded")?;
    let (before, _) = committed_runs(env, name)?;

    // A manifest declares the table with `amount` as an int and owns its columns.
    let tables: kube::Api<kglue_crds::Table> = kube::Api::namespaced(env.client.clone(), NAMESPACE);
    let table = env
        .block(tables.get(&format!("curated.{name}")))
        .map_err(|e| e.to_string())?;
    let mut spec = serde_json::to_value(&table.spec).map_err(|e| e.to_string())?;
    for column in spec["columns"].as_array_mut().into_iter().flatten() {
        if column["name"] == "amount" {
            column["type"] = json!("int");
        }
    }
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Table",
        "metadata": {"name": format!("curated.{name}")}, "spec": spec
    }))?;
    // The job now writes `amount` as a double: Overwrite may change the type, the manifest's
    // owner says no.
    let mut second = job_with(
        name,
        10,
        "Overwrite",
        "SELECT id, CAST(amount AS DOUBLE) * 2 AS amount FROM src",
    );
    second["spec"]["bookmark"] = json!({"option": "Disable"});
    env.apply_ready(&second)?;
    let request = env.start(name)?;
    let run = env.wait_final(name, &request)?;
    expect_state(&run, "Failed")?;
    let message = run["message"].as_str().unwrap_or_default();
    if !message.contains("curated.over") || !message.to_lowercase().contains("conflict") {
        return Err(format!("the run should name the table and the conflict: {run:#}").into());
    }
    let (after, staged) = committed_runs(env, name)?;
    if after != before || !staged.is_empty() {
        return Err(
            format!("the old data stays, nothing staged: before {before:?}, after {after:?} {staged:?}").into(),
        );
    }
    Ok(())
}

/// The runner of attempt 0 is frozen and its pod deleted with a grace period: attempt 0 fails,
/// and attempt 1 is not started while the frozen process still exists (it ends with the grace
/// period's SIGKILL).
fn retry_after_pod_gone(env: &Env) -> Result<(), Failed> {
    let name = "frozen";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 2))?;
    let mut spin = job_with(
        name,
        10,
        "Append",
        "SELECT count(*) AS n FROM range(1, 2000000000000) CROSS JOIN (SELECT 1 FROM src LIMIT 1)",
    );
    spin["spec"]["maxRetries"] = json!(1);
    spin["spec"]["sinks"][0]["table"] = Value::Null;
    spin["spec"]["sinks"][0].as_object_mut().map(|s| s.remove("table"));
    env.apply_ready(&spin)?;
    let request = env.start(name)?;
    let running = env.wait_run(name, &request, |run| state(run) == "Running")?;
    let id = running["id"].as_str().unwrap_or_default().to_string();
    let frozen = env.wait_for("the runner process", SETTLE, || Ok(freeze_runner(&id).ok()))?;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(env.client.clone(), NAMESPACE);
    let listed = env
        .block(
            pods.list(&kube::api::ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}-{id}-0"))),
        )
        .map_err(|e| e.to_string())?;
    let deleted_at = Instant::now();
    for pod in listed.items {
        let params = DeleteParams {
            grace_period_seconds: Some(10),
            ..DeleteParams::default()
        };
        env.block(pods.delete(&pod.metadata.name.unwrap_or_default(), &params))
            .map_err(|e| e.to_string())?;
    }
    let retry = env.wait_run(name, &request, |run| run["attempt"] == 1)?;
    let still = frozen.iter().filter(|pid| alive(**pid)).count();
    eprintln!(
        "attempt 1 recorded {:.1} s after the pod's deletion (grace 10 s), {still} process(es) of attempt 0 alive",
        deleted_at.elapsed().as_secs_f64()
    );
    if still > 0 {
        return Err(format!(
            "attempt 1 ({}) was recorded while attempt 0's process still ran",
            retry["state"]
        )
        .into());
    }
    env.annotate("jobs", name, &format!("stop.kglue.dev/{id}"), "")?;
    let stopped = env.wait_run(name, &request, |run| state(run) == "Stopped")?;
    if stopped["attempt"] != 1 {
        return Err(format!("the stopped record should be attempt 1: {stopped:#}").into());
    }
    Ok(())
}

/// A Job whose query spins for a long time (until stopped or killed), writing `s3://curated/<name>/`.
fn spinning_job(name: &str, retries: u32) -> Value {
    let mut spin = job_with(
        name,
        10,
        "Append",
        "SELECT count(*) AS n FROM range(1, 2000000000000) CROSS JOIN (SELECT 1 FROM src LIMIT 1)",
    );
    spin["spec"]["maxRetries"] = json!(retries);
    spin["spec"]["bookmark"] = json!({"option": "Disable"});
    spin["spec"]["sinks"][0].as_object_mut().map(|s| s.remove("table"));
    spin
}

/// The S3 requests object_store does not make (listing incomplete multipart uploads).
fn s3_requests(env: &Env, bucket: &str) -> Result<kglue_runner::multipart::S3Requests, Failed> {
    let store = env.s3.store(bucket).map_err(|e| e.to_string())?;
    kglue_runner::multipart::S3Requests::new(&env.s3.store_builder(bucket), Arc::new(store))
        .map_err(|e| e.to_string().into())
}

/// What an attempt of `run_id` would leave when killed mid-write: a staged file and an
/// incomplete multipart upload under its staging folder.
fn stage_leftovers(env: &Env, name: &str, run_id: &str) -> Result<(), Failed> {
    let staging = format!("{name}/_kglue_staging/{run_id}");
    env.land(
        "curated",
        &format!("{staging}/part-{run_id}-00000-00000.parquet"),
        "half a file",
    )?;
    let store = env.s3.store("curated").map_err(|e| e.to_string())?;
    let key = object_store::path::Path::from(format!("{staging}/part-{run_id}-00001-00000.parquet"));
    env.block(async {
        let mut upload = store.put_multipart(&key).await?;
        upload.put_part(vec![7u8; 1024].into()).await?;
        // Neither completed nor aborted: the upload stays, as a killed writer leaves it.
        Ok::<_, object_store::Error>(())
    })
    .map_err(|e| format!("starting an upload: {e}"))?;
    Ok(())
}

/// The staged objects and incomplete uploads left under `s3://curated/<name>/_kglue_staging/`.
fn leftovers(env: &Env, name: &str) -> Result<(Vec<String>, usize), Failed> {
    let staged = env.objects("curated", &format!("{name}/_kglue_staging"))?;
    let uploads = env
        .block(s3_requests(env, "curated")?.incomplete_uploads(&format!("{name}/_kglue_staging/")))
        .map_err(|e| e.to_string())?;
    Ok((staged, uploads.len()))
}

fn leftovers_removed(env: &Env) -> Result<(), Failed> {
    let name = "leftover";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 2))?;
    env.apply_ready(&spinning_job(name, 1))?;
    let request = env.start(name)?;
    let running = env.wait_run(name, &request, |run| state(run) == "Running")?;
    let id = running["id"].as_str().unwrap_or_default().to_string();
    stage_leftovers(env, name, &id)?;
    let (staged, uploads) = leftovers(env, name)?;
    if staged.len() != 1 || uploads != 1 {
        return Err(format!("the test's leftovers are in place: {staged:?}, {uploads} upload(s)").into());
    }
    // Attempt 0 killed: its retry removes what it left before it works.
    let pids = env.wait_for("the runner process", SETTLE, || Ok(freeze_runner(&id).ok()))?;
    for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    env.wait_run(name, &request, |run| run["attempt"] == 1 && state(run) == "Running")?;
    env.wait_for("attempt 1 to remove attempt 0's staging and upload", SETTLE, || {
        let (staged, uploads) = leftovers(env, name)?;
        Ok((staged.is_empty() && uploads == 0).then_some(()))
    })?;
    // Attempt 1 leaves the same, and is stopped: its cleanup attempt removes it.
    stage_leftovers(env, name, &id)?;
    env.annotate("jobs", name, &format!("stop.kglue.dev/{id}"), "")?;
    let stopped = env.wait_run(name, &request, |run| state(run) == "Stopped")?;
    if stopped["attempt"] != 1 {
        return Err(format!("attempt 1 is the stopped one: {stopped:#}").into());
    }
    env.wait_for(
        "the cleanup attempt to remove the stopped attempt's staging and upload",
        SETTLE,
        || {
            let (staged, uploads) = leftovers(env, name)?;
            Ok((staged.is_empty() && uploads == 0).then_some(()))
        },
    )?;
    if !env.objects("curated", name)?.is_empty() {
        return Err("nothing of the stopped run is committed".into());
    }
    Ok(())
}

fn overwrites_serialized(env: &Env) -> Result<(), Failed> {
    let name = "twice";
    env.land("landing", &format!("{name}/a.csv"), &rows_csv(1, 4))?;
    let mut over = job_with(name, 10, "Overwrite", "SELECT id, amount FROM src");
    over["spec"]["bookmark"] = json!({"option": "Disable"});
    over["spec"]["maxConcurrentRuns"] = json!(2);
    env.apply_ready(&over)?;
    env.annotate("jobs", name, "run.kglue.dev/twice-a", "{}")?;
    env.annotate("jobs", name, "run.kglue.dev/twice-b", "{}")?;
    let mut peak = 0;
    let runs = env.wait_for("both overwriting runs to end", SETTLE, || {
        let runs = env.runs("jobs", name)?;
        let active = runs
            .iter()
            .filter(|r| ["Starting", "Running", "Settling"].contains(&state(r)))
            .count();
        peak = peak.max(active);
        let done = runs.len() == 2 && runs.iter().all(|r| state(r) == "Succeeded");
        Ok(done.then_some(runs))
    })?;
    if peak > 1 {
        return Err(format!("{peak} overwriting runs were active at once").into());
    }
    // The newest record is the run that committed last: its files alone remain, 4 rows.
    let last = runs[0]["id"].as_str().unwrap_or_default().to_string();
    let (committed, staged) = committed_runs(env, name)?;
    if committed != BTreeSet::from([last]) || !staged.is_empty() {
        return Err(format!("one run's files, nothing staged: {committed:?} {staged:?} {runs:#?}").into());
    }
    if runs.iter().any(|r| sink_rows(r) != 4) {
        return Err(format!("each run wrote the 4 rows: {runs:#?}").into());
    }
    Ok(())
}

/// 30,000 one-row objects land inside the safety band (45 s) before one bookmarked run. Their
/// keys would not fit a bookmark: the run succeeds and defers them, and its status stays small;
/// once they are older than the band the next run reads all of them; a third reads nothing.
fn many_objects_in_the_band(env: &Env) -> Result<(), Failed> {
    const OBJECTS: usize = 30_000;
    const BAND_SECONDS: u64 = 45;
    let name = "many";
    let store = env.s3.store("landing").map_err(|e| e.to_string())?;
    let landing = Instant::now();
    env.block(async {
        futures::stream::iter(0..OBJECTS)
            .map(|i| {
                let store = &store;
                async move {
                    let key = object_store::path::Path::from(format!("{name}/2024/05/01/part-{i:05}.csv"));
                    store.put(&key, format!("id,amount\n{i},1.5\n").into()).await
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await
    })
    .map_err(|e| format!("landing the objects: {e}"))?;
    let landed = Instant::now();
    eprintln!("landed {OBJECTS} objects in {:.1} s", landing.elapsed().as_secs_f64());
    let mut many = job_with(name, 10, "Append", "SELECT id, amount FROM src");
    many["spec"]["bookmark"] = json!({"option": "Enable", "safetyBandSeconds": BAND_SECONDS});
    many["spec"]["sinks"][0].as_object_mut().map(|s| s.remove("table"));
    env.apply_ready(&many)?;
    let status_size = || -> Result<usize, Failed> {
        let status = env.status("jobs", name)?;
        Ok(serde_json::to_vec(&status).map_err(|e| e.to_string())?.len())
    };

    let request = env.start(name)?;
    let first = env.wait_final(name, &request)?;
    expect_state(&first, "Succeeded")?;
    let first_rows = sink_rows(&first);
    let deferred = first["metrics"]["sources"]["src"]["objectsDeferred"]
        .as_i64()
        .unwrap_or(0);
    let first_size = status_size()?;
    eprintln!("run 1: {first_rows} rows read, {deferred} objects deferred, status {first_size} bytes");
    if first_rows + deferred != OBJECTS as i64 || deferred == 0 {
        return Err(format!("run 1 reads or defers each object: {first:#}").into());
    }

    let wait = Duration::from_secs(BAND_SECONDS + 3).saturating_sub(landed.elapsed());
    std::thread::sleep(wait);
    let request = env.start(name)?;
    // Reading 30,000 objects takes the debug build minutes, more beside another suite.
    let second = env.wait_final_within(name, &request, Duration::from_secs(600))?;
    expect_state(&second, "Succeeded")?;
    let second_size = status_size()?;
    eprintln!(
        "run 2: {} rows read in {} s, status {second_size} bytes",
        sink_rows(&second),
        second["durationSeconds"]
    );
    if first_rows + sink_rows(&second) != OBJECTS as i64 {
        return Err(format!("each object read once over the two runs: {first_rows} + {second:#}").into());
    }
    let request = env.start(name)?;
    let third = env.wait_final(name, &request)?;
    expect_state(&third, "Succeeded")?;
    if sink_rows(&third) > 0 {
        return Err(format!("a third run reads nothing again: {third:#}").into());
    }
    let size = first_size.max(second_size).max(status_size()?);
    eprintln!("FIGURES: Job status with 30,000 objects landed inside the band: at most {size} bytes");
    if size >= 256 * 1024 {
        return Err(format!("the Job's status is {size} bytes").into());
    }
    Ok(())
}

/// The condition `type_` of Job `name`, as (status, reason, message).
fn condition(env: &Env, name: &str, type_: &str) -> Result<Option<(String, String, String)>, Failed> {
    let status = env.status("jobs", name)?;
    Ok(status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("status"), text("reason"), text("message"))
        }))
}

/// An Overwrite Job owns `s3://curated/shared/`; a newer Job appending below it is Stalled naming
/// the older one, and its run is refused; once the older Job is deleted, the newer one is Ready
/// and runs.
fn shared_location_refused(env: &Env) -> Result<(), Failed> {
    env.land("landing", "shared/a.csv", &rows_csv(1, 2))?;
    let mut keeper = job_with("keeper", 10, "Overwrite", "SELECT id, amount FROM src");
    keeper["spec"]["sources"][0]["storage"]["location"] = json!("s3://landing/shared/");
    keeper["spec"]["sinks"][0]["storage"]["location"] = json!("s3://curated/shared/");
    keeper["spec"]["sinks"][0].as_object_mut().map(|s| s.remove("table"));
    env.apply_ready(&keeper)?;
    // Creation times have whole seconds (a tie goes by name): the intruder comes a second later.
    std::thread::sleep(Duration::from_millis(1100));
    let mut intruder = keeper.clone();
    intruder["metadata"]["name"] = json!("intruder");
    intruder["spec"]["sinks"][0]["storage"]["location"] = json!("s3://curated/shared/eu/");
    intruder["spec"]["sinks"][0]["writeMode"] = json!("Append");
    env.apply_object(&intruder)?;
    let (_, reason, message) = env.wait_for("the newer Job to be Stalled", SETTLE, || {
        Ok(condition(env, "intruder", "Stalled")?.filter(|(status, _, _)| status == "True"))
    })?;
    if reason != "SinkLocationShared"
        || !message.contains("Job \"keeper\"")
        || !message.contains("s3://curated/shared/")
    {
        return Err(format!("the Stalled condition names the other Job and location: {reason}: {message}").into());
    }
    if condition(env, "keeper", "Ready")?.map(|c| c.0) != Some("True".into()) {
        return Err("the Job that was there first stays Ready".into());
    }
    let request = env.start("intruder")?;
    let refused = env.wait_final("intruder", &request)?;
    expect_state(&refused, "Error")?;

    let api = env.api("jobs");
    env.block(api.delete("keeper", &DeleteParams::default()))
        .map_err(|e| format!("deleting keeper: {e}"))?;
    env.wait_for("the newer Job to be Ready once the other is gone", SETTLE, || {
        Ok(condition(env, "intruder", "Ready")?.filter(|(status, _, _)| status == "True"))
    })?;
    let request = env.start("intruder")?;
    let run = env.wait_final("intruder", &request)?;
    expect_state(&run, "Succeeded")?;
    Ok(())
}
