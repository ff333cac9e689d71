//! Streaming Jobs on a real local control plane: the operator runs a streaming Job's run as one
//! long-lived attempt on the node agent (the built `kglue` binary), against a real Kafka broker and
//! the S3 server. Through two SIGKILLs of the runner, a stop and a start, a paused broker, a
//! broker stopped and started again, a spec change that rolls the stream and its pod deleted, every event reaches the sink exactly once (compared by
//! partition and offset), bad records reach the dead-letter location with their offsets, and the
//! Job's `status.streaming` shows the state, the outage and the lag returning to 0.

mod common;

use std::ops::Deref;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, Operator, http_get, runner_pids, tail};
use datafusion::prelude::SessionContext;
use k8s_openapi::api::core::v1::Pod;
use kglue_e2e::harness::{self, trial};
use kglue_e2e::kafka::{KafkaBroker, Offsets, produce, read_sink};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};

const NAMESPACE: &str = "clickstream";
/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 3;

struct Env {
    cluster: Cluster,
    operator: Operator,
    broker: KafkaBroker,
    /// Where the streaming attempt serves its metrics.
    metrics_port: u16,
}

impl Deref for Env {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let env = match harness::set_up(setup) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![trial(
        &env,
        "a_stream_in_the_cluster_writes_each_event_once_through_kills_a_stop_an_outage_and_a_roll",
        stream_in_the_cluster,
    )];
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed()
        && let Ok(env) = Arc::try_unwrap(env)
    {
        eprintln!(
            "--- {} ---\n{}",
            env.operator.log.display(),
            tail(&env.operator.log_text(), 80)
        );
    }
    conclusion.exit_code()
}

fn job(window_seconds: u32) -> Value {
    json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": "clicks"},
        "spec": {
            "maxRetries": 3,
            "sources": [
                {"name": "clicks", "table": {"database": "raw", "table": "clicks"}},
                {"name": "pages", "table": {"database": "ref", "table": "pages"}}
            ],
            "sql": "CREATE VIEW enriched AS SELECT c.id, c.page, COALESCE(p.section, 'other') AS section, c.ms, c.\"partition\", c.\"offset\" FROM clicks c LEFT JOIN pages p ON c.page = p.page",
            "sinks": [{"name": "enriched", "from": "enriched", "writeMode": "Append", "partitionBy": ["section"],
                       "storage": {"location": "s3://lake/clicks/", "format": "Parquet", "connection": "lake"}}],
            "streaming": {"windowSeconds": window_seconds, "maxRecordsPerBatch": 2000, "startingOffsets": "earliest"}
        }
    })
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["lake"])?;
    // The node agent runs pods on this host: the runner's metrics listen on loopback.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let operator = Operator::start(
        &cluster.control_plane,
        "streams",
        &[
            "--leader-elect",
            "false",
            "--retry-backoff-seconds",
            "1",
            "--stream-metrics-address",
            &metrics_address,
        ],
    )?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("clicks", PARTITIONS as u32)?;
    let env = Env {
        cluster,
        operator,
        broker,
        metrics_port,
    };
    let objects = [
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "lake"},
               "spec": {"s3": {"endpoint": env.s3.endpoint(), "region": "us-east-1", "forcePathStyle": true,
                               "credentialsSecretRef": {"name": "lake-credentials"}}}}),
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "events"},
               "spec": {"kafka": {"bootstrapServers": [env.broker.bootstrap()]}}}),
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "raw"},
               "spec": {"databaseName": "raw"}}),
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "ref"},
               "spec": {"databaseName": "ref"}}),
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Table", "metadata": {"name": "raw.clicks"},
               "spec": {"databaseName": "raw", "tableName": "clicks",
                        "storage": {"location": "clicks", "format": "Kafka", "connection": "events",
                                    "kafka": {"valueFormat": "Json"}},
                        "columns": [{"name": "id", "type": "bigint"}, {"name": "page", "type": "string"},
                                    {"name": "ms", "type": "bigint"}]}}),
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Table", "metadata": {"name": "ref.pages"},
               "spec": {"databaseName": "ref", "tableName": "pages",
                        "storage": {"location": "s3://lake/ref/pages/", "format": "Csv", "connection": "lake"},
                        "columns": [{"name": "page", "type": "string"}, {"name": "section", "type": "string"}]}}),
        job(2),
    ];
    for object in &objects {
        env.apply_object(object).map_err(|e| format!("{e:?}"))?;
    }
    env.land(
        "lake",
        "ref/pages/pages.csv",
        "page,section\n/p0,home\n/p1,shop\n/p2,shop\n/p3,help\n",
    )
    .map_err(|e| format!("{e:?}"))?;
    env.wait_ready("jobs", "clicks", STEP).map_err(|e| format!("{e:?}"))?;
    Ok(env)
}

/// Clicks with ids `from..from + count`, as JSON lines.
fn values(from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|id| format!(r#"{{"id": {id}, "page": "/p{}", "ms": {}}}"#, id % 5, id * 3))
        .collect()
}

/// What was produced: the good records and the bad ones, by (partition, offset).
#[derive(Default)]
struct Produced {
    good: Offsets,
    bad: Offsets,
    next_id: usize,
}

impl Produced {
    fn clicks(&mut self, broker: &KafkaBroker, count: usize) {
        self.good
            .extend(produce(broker, "clicks", PARTITIONS, &values(self.next_id, count), 50));
        self.next_id += count;
    }

    fn all(&self) -> i64 {
        (self.good.len() + self.bad.len()) as i64
    }
}

fn streaming(env: &Env) -> Result<Value, Failed> {
    Ok(env.status("jobs", "clicks")?["streaming"].clone())
}

/// Waits until `status.streaming` says the stream read all `produced` records and has no lag.
fn caught_up(env: &Env, produced: &Produced, moment: &str) -> Result<Value, Failed> {
    let mut last = Value::Null;
    env.wait_for(&format!("{moment}: the stream caught up"), STEP, || {
        let status = streaming(env)?;
        last = status.clone();
        let read: i64 = status["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["offset"].as_i64())
            .sum();
        let done = read == produced.all() && status["lag"] == 0 && status["state"] == "Running";
        Ok(done.then_some(status))
    })
    .map_err(|e| format!("{e:?}; last status.streaming: {last:#}").into())
}

fn newest_run(env: &Env) -> Result<Value, Failed> {
    env.runs("jobs", "clicks")?
        .first()
        .cloned()
        .ok_or_else(|| "no run in status.runs".into())
}

fn kill_runner(run_id: &str) -> Result<(), Failed> {
    let deadline = Instant::now() + STEP;
    let pids = loop {
        let pids = runner_pids(run_id);
        if !pids.is_empty() {
            break pids;
        }
        if Instant::now() > deadline {
            return Err(format!("no runner process for {run_id}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    Ok(())
}

fn cli(env: &Env, args: &[&str]) -> Result<String, Failed> {
    let args: Vec<&str> = args.iter().copied().chain(["-n", NAMESPACE]).collect();
    let (ok, stdout, stderr) = env.cli(&args)?;
    if !ok {
        return Err(format!("kglue {args:?} failed:\n{stdout}\n{stderr}").into());
    }
    Ok(stdout)
}

fn signal_broker(env: &Env, signal: rustix::process::Signal) -> Result<(), Failed> {
    let pid = env.broker.pid().map_err(|e| e.to_string())?;
    let pid = rustix::process::Pid::from_raw(pid).ok_or("the broker's pid is not a pid")?;
    rustix::process::kill_process(pid, signal).map_err(|e| format!("signalling the broker: {e}"))?;
    Ok(())
}

fn stream_in_the_cluster(env: &Env) -> Result<(), Failed> {
    let mut produced = Produced::default();
    produced.clicks(&env.broker, 3_000);
    let bad = vec![
        "not json".to_string(),
        r#"{"id": "seven"}"#.to_string(),
        "{".to_string(),
    ];
    produced.bad.extend(produce(&env.broker, "clicks", PARTITIONS, &bad, 1));

    // Started as any Job: a run whose one attempt streams.
    cli(env, &["start", "job", "clicks"])?;
    let status = caught_up(env, &produced, "started")?;
    if status["badRecords"] != 3 {
        return Err(format!("the 3 bad records should be counted: {status:#}").into());
    }
    let run = newest_run(env)?;
    let run_id = run["id"].as_str().unwrap_or_default().to_string();
    if run["state"] != "Running" || status["runId"] != run_id.as_str() {
        return Err(format!("the run should be Running and reporting: {run:#}\n{status:#}").into());
    }

    // The runner's endpoint counts what status shows.
    let metrics = http_get(env.metrics_port, "/metrics")?;
    for wanted in [
        format!("kglue_stream_records_total{{kglue_job=\"clicks\"}} {}", produced.all()),
        "kglue_stream_bad_records_total{kglue_job=\"clicks\"} 3".to_string(),
        "kglue_stream_lag_records{kglue_job=\"clicks\",partition=\"2\"} 0".to_string(),
        "kglue_stream_outage{kglue_job=\"clicks\"} 0".to_string(),
    ] {
        if !metrics.contains(&wanted) {
            return Err(format!("/metrics should have {wanted}:\n{metrics}").into());
        }
    }
    if !metrics.contains("kglue_stream_batch_duration_seconds_count{kglue_job=\"clicks\"}") {
        return Err(format!("/metrics should time batches:\n{metrics}").into());
    }

    // SIGKILL twice, while new events arrive: each time a new attempt resumes from the checkpoint.
    for attempt in 1..=2 {
        produced.clicks(&env.broker, 1_500);
        std::thread::sleep(Duration::from_millis(300));
        kill_runner(&run_id)?;
        env.wait_for(&format!("attempt {attempt} running"), STEP, || {
            let run = newest_run(env)?;
            Ok((run["attempt"] == attempt && run["state"] == "Running").then_some(()))
        })?;
    }
    caught_up(env, &produced, "after two kills")?;
    let runs = env.runs("jobs", "clicks")?;
    let failed = runs
        .iter()
        .filter(|r| r["id"] == run_id.as_str() && r["state"] == "Failed")
        .count();
    if failed != 2 {
        return Err(format!("two attempts should be Failed: {runs:#?}").into());
    }

    // Stopped, then started again: a new run resumes where the last one left.
    cli(env, &["stop", "job", "clicks", "--run", &run_id])?;
    env.wait_for("the run stopped", STEP, || {
        let run = newest_run(env)?;
        let status = streaming(env)?;
        Ok((run["state"] == "Stopped" && status["state"] == "Stopped").then_some(()))
    })?;
    if !runner_pids(&run_id).is_empty() {
        return Err("the stopped run's runner is still alive".into());
    }
    produced.clicks(&env.broker, 1_000);
    cli(env, &["start", "job", "clicks"])?;
    caught_up(env, &produced, "started again")?;
    let run = newest_run(env)?;
    if run["id"] == run_id.as_str() {
        return Err(format!("a new run should have started: {run:#}").into());
    }
    let run_id = run["id"].as_str().unwrap_or_default().to_string();

    // The broker stops answering: status says so; when it answers again, nothing is lost.
    signal_broker(env, rustix::process::Signal::STOP)?;
    let paused = env.wait_for("status.streaming to report the outage", STEP, || {
        let status = streaming(env)?;
        Ok((status["state"] == "Outage").then_some(status))
    });
    signal_broker(env, rustix::process::Signal::CONT)?;
    let outage = paused?;
    if outage["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("the outage should say why: {outage:#}").into());
    }
    produced.clicks(&env.broker, 500);
    caught_up(env, &produced, "after the outage")?;

    // The broker stopped and started again: refused connections, waited out; nothing is lost.
    // Down for 45 s: rskafka retries a lost connection itself, so the stream may see the outage
    // only when its fetch's patience (window + 20 s) runs out, and status shows it up to 10 s later.
    let restarted = std::thread::scope(|scope| {
        let restart = scope.spawn(|| env.broker.restart(Duration::from_secs(45)));
        let seen = env.wait_for("status.streaming to report the broker gone", STEP, || {
            let status = streaming(env)?;
            Ok((status["state"] == "Outage").then_some(status))
        });
        let restart = restart.join().map_err(|_| "restarting the broker panicked")?;
        restart.map_err(|e| format!("restarting the broker: {e}"))?;
        seen
    })?;
    if restarted["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("the outage should say why: {restarted:#}").into());
    }
    produced.clicks(&env.broker, 500);
    caught_up(env, &produced, "after the broker's restart")?;
    let run = newest_run(env)?;
    if run["id"] != run_id.as_str() || run["attempt"] != 0 {
        return Err(format!("an outage is waited out by the same attempt: {run:#}").into());
    }

    // A spec change rolls the stream: the attempt stops after its batch, the next runs the new spec.
    env.apply_object(&job(1))?;
    env.wait_for("the stream rolled to the new spec", STEP, || {
        let runs = env.runs("jobs", "clicks")?;
        let rolled = runs.iter().any(|r| {
            r["id"] == run_id.as_str()
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("rolled to the Job's new spec"))
        });
        let running = runs
            .first()
            .is_some_and(|r| r["state"] == "Running" && r["attempt"] == 1);
        Ok((rolled && running).then_some(()))
    })?;
    produced.clicks(&env.broker, 500);
    caught_up(env, &produced, "after the roll")?;

    // Its pod deleted by someone else (a drain, say): SIGTERM, the batch commits, the runner
    // exits 0, and the next attempt goes on at once.
    let attempt_job = newest_run(env)?["kubernetesJob"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let listed =
        env.block(pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={attempt_job}"))))?;
    for pod in &listed.items {
        env.block(pods.delete(&pod.name_any(), &DeleteParams::default()))?;
    }
    if listed.items.is_empty() {
        return Err(format!("no pod of {attempt_job}").into());
    }
    env.wait_for("the next attempt after the pod's deletion", STEP, || {
        let runs = env.runs("jobs", "clicks")?;
        let restarted = runs.iter().any(|r| {
            r["attempt"] == 1
                && r["state"] == "Stopped"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("its pod ended without a stop request"))
        });
        let running = runs
            .first()
            .is_some_and(|r| r["state"] == "Running" && r["attempt"] == 2);
        Ok((restarted && running).then_some(()))
    })?;
    produced.clicks(&env.broker, 500);
    caught_up(env, &produced, "after the pod's deletion")?;
    cli(env, &["stop", "job", "clicks", "--run", &run_id])?;
    env.wait_for("the run stopped", STEP, || {
        Ok((newest_run(env)?["state"] == "Stopped").then_some(()))
    })?;

    // Each event once, by partition and offset; each bad record in the dead letters.
    let store = Arc::new(env.s3.store("lake").map_err(|e| e.to_string())?);
    let ctx = SessionContext::new();
    ctx.register_object_store(&url::Url::parse("s3://lake").map_err(|e| e.to_string())?, store.clone());
    let (rows, written, _) = read_sink(ctx, "s3://lake/clicks/");
    if rows != produced.good.len() || written != produced.good {
        let missing = produced.good.difference(&written).count();
        let extra = written.difference(&produced.good).count();
        return Err(format!(
            "the sink has {rows} rows for {} events: {missing} missing, {extra} not produced",
            produced.good.len()
        )
        .into());
    }
    let letters = dead_letters(env, &store)?;
    if letters != produced.bad {
        return Err(format!("dead letters {letters:?}, bad records {:?}", produced.bad).into());
    }
    Ok(())
}

/// The (partition, offset) of every dead letter in the bucket.
fn dead_letters(env: &Env, store: &Arc<object_store::aws::AmazonS3>) -> Result<Offsets, Failed> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    env.block(async {
        let prefix = object_store::path::Path::from("clicks/_kglue_dead_letter/clicks");
        let files: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut offsets = Offsets::new();
        for file in files {
            let bytes = store
                .get(&file.location)
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            for line in String::from_utf8_lossy(&bytes).lines() {
                let letter: Value = serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
                offsets.insert((
                    letter["partition"].as_i64().unwrap_or(-1) as i32,
                    letter["offset"].as_i64().unwrap_or(-1),
                ));
            }
        }
        Ok::<_, Failed>(offsets)
    })
}
