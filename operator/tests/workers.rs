//! Distributed runs on a real local control plane: a Job with `workers: 3` runs as the attempt's
//! pod (planning, Ballista's scheduler, the commit) and three executor pods that the operator
//! creates once that pod runs, all run by the node agent as local processes, counted by the real
//! Job controller, reading and writing the S3 server.
//!
//! The cases run in order on one cluster: the example pipeline's two jobs with 1 and with 3
//! workers (the curated table and the report compared row for row); the TPC-H benchmark's curate
//! job likewise (over generated TPC-H-shaped orders and line items); a larger job with 3 workers whose executor is SIGKILLed
//! mid-run; the same job whose driver is SIGKILLed mid-run (a clean retry). After each, no pod
//! and no process of the run is left.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Operator, kglue_pids, orders_json, runner_pids, tail};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use k8s_openapi::api::core::v1::Pod;
use kglue_e2e::harness::{self, trial};
use kglue_e2e::{load_manifests, repo_root};
use kube::api::{Api, ListParams};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};

const NAMESPACE: &str = "sales";
/// How long a run may take to reach the expected state.
const SETTLE: Duration = Duration::from_secs(180);

struct Env {
    cluster: Cluster,
    _operator: Operator,
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
            "the_example_pipelines_jobs_with_three_workers_write_exactly_the_rows_of_one",
            example_job,
        ),
        trial(
            &env,
            "the_tpch_curate_job_with_three_workers_writes_exactly_the_rows_of_one",
            tpch_curate,
        ),
        trial(
            &env,
            "an_executor_killed_mid_run_still_gives_exactly_one_runs_rows",
            executor_killed,
        ),
        trial(
            &env,
            "a_driver_killed_mid_run_fails_the_attempt_and_the_retry_is_clean",
            driver_killed,
        ),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed()
        && let Ok(env) = Arc::try_unwrap(env)
    {
        eprintln!("--- operator ---\n{}", tail(&env._operator.log_text(), 80));
    }
    conclusion.exit_code()
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["sales-landing", "sales-curated", "sales-reports"])?;
    let operator = Operator::start(
        &cluster.control_plane,
        "workers",
        &["--leader-elect", "false", "--retry-backoff-seconds", "1"],
    )?;
    Ok(Env {
        cluster,
        _operator: operator,
    })
}

impl Env {
    /// Asks for a run of Job `name`; returns the request id.
    fn start(&self, name: &str, request: &str) -> Result<(), Failed> {
        self.annotate("jobs", name, &format!("run.kglue.dev/{request}"), "{}")
    }

    /// Waits until the newest record of the run for `request` satisfies `done`.
    fn wait_run(&self, name: &str, request: &str, done: impl Fn(&Value) -> bool) -> Result<Value, Failed> {
        let mut last = Value::Null;
        self.wait_for(&format!("jobs/{name} request {request}"), SETTLE, || {
            let runs = self.runs("jobs", name)?;
            let newest = runs.iter().find(|r| r["requestId"] == request);
            if let Some(run) = newest {
                if done(run) {
                    return Ok(Some(run.clone()));
                }
                last = run.clone();
            }
            Ok(None)
        })
        .map_err(|e| format!("{}; last seen: {last:#}", e.message().unwrap_or_default()).into())
    }

    fn wait_final(&self, name: &str, request: &str) -> Result<Value, Failed> {
        self.wait_run(name, request, |run| {
            run["state"]
                .as_str()
                .is_some_and(|s| ["Succeeded", "Failed", "Timeout", "Stopped", "Error"].contains(&s))
        })
    }

    /// The rows under `s3://bucket/prefix` (Parquet, partitioned by `partition` when given), each
    /// as one line, sorted.
    fn rows(&self, bucket: &str, prefix: &str, partition: Option<&str>) -> Result<Vec<String>, Failed> {
        let store = Arc::new(self.s3.store(bucket).map_err(|e| e.to_string())?);
        self.block(async {
            let ctx = SessionContext::new();
            let url = url::Url::parse(&format!("s3://{bucket}")).map_err(|e| e.to_string())?;
            ctx.register_object_store(&url, store);
            let partitions: Vec<(String, datafusion::arrow::datatypes::DataType)> = partition
                .map(|p| (p.to_string(), datafusion::arrow::datatypes::DataType::Utf8))
                .into_iter()
                .collect();
            let options = ParquetReadOptions::default().table_partition_cols(partitions);
            let frame = ctx
                .read_parquet(format!("s3://{bucket}/{prefix}"), options)
                .await
                .map_err(|e| format!("reading s3://{bucket}/{prefix}: {e}"))?;
            let batches = frame.collect().await.map_err(|e| e.to_string())?;
            let mut lines = Vec::new();
            for batch in &batches {
                let columns: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| datafusion::arrow::util::display::ArrayFormatter::try_new(c, &Default::default()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = columns.iter().map(|c| c.value(row).to_string()).collect();
                    lines.push(cells.join("|"));
                }
            }
            lines.sort();
            Ok::<_, Failed>(lines)
        })
    }

    /// Waits until no pod and no process of run `run_id` is left running.
    fn nothing_left(&self, run_id: &str) -> Result<(), Failed> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        self.wait_for(&format!("every pod and process of {run_id} gone"), SETTLE, || {
            let listed = self
                .block(pods.list(&ListParams::default().labels(&format!("kglue.dev/run-id={run_id}"))))
                .map_err(|e| e.to_string())?;
            let alive: Vec<String> = listed
                .items
                .iter()
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            let processes = runner_pids(run_id).len() + executor_pids(run_id).len();
            Ok((alive.is_empty() && processes == 0).then_some(()))
        })
    }
}

/// The pids of executor processes serving `run_id`.
fn executor_pids(run_id: &str) -> Vec<i32> {
    kglue_pids("executor", run_id)
}

fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// The example pipeline's objects (its triggers aside, which would start runs of their own), its
/// Connection pointed at the S3 server, its Jobs with `workers` and the cleaning job without a
/// bookmark (so that a second run reads what the first read).
fn example_objects(env: &Env, workers: u32) -> Result<Vec<Value>, Failed> {
    let mut objects = Vec::new();
    for manifest in load_manifests(&repo_root().join("examples/sales-pipeline")).map_err(|e| e.to_string())? {
        let mut object = manifest.object;
        match object["kind"].as_str() {
            Some("Trigger") => continue,
            Some("Connection") => object["spec"]["s3"]["endpoint"] = json!(env.s3.endpoint()),
            Some("Job") => {
                object["spec"]["workers"] = json!(workers);
                if object["spec"]["bookmark"].is_object() {
                    object["spec"]["bookmark"] = json!({"option": "Disable"});
                }
            }
            _ => {}
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Runs Job `name` (request `request`) to success; returns its run.
fn run_to_success(env: &Env, name: &str, request: &str) -> Result<Value, Failed> {
    env.wait_ready("jobs", name, SETTLE)?;
    env.start(name, request)?;
    let run = env.wait_final(name, request)?;
    if run["state"] != "Succeeded" {
        return Err(format!("{name}: {run:#}").into());
    }
    env.nothing_left(run["id"].as_str().unwrap_or_default())?;
    Ok(run)
}

/// A distributed run's figures: `executors` executors, and stages with tasks and wall times, of
/// which at least one shuffled bytes if `shuffles` (at least two stages then).
fn expect_figures(name: &str, run: &Value, executors: i64, shuffles: bool) -> Result<(), Failed> {
    let workers = &run["metrics"]["workers"];
    let stages = workers["stages"].as_array().cloned().unwrap_or_default();
    let timed = stages
        .iter()
        .all(|s| s["wallSeconds"].is_number() && s["tasks"].as_i64() > Some(0));
    let shuffled = stages.iter().any(|s| s["shuffleBytes"].as_i64() > Some(0));
    let staged = !stages.is_empty() && (!shuffles || (stages.len() >= 2 && shuffled));
    if workers["executors"] != executors || !timed || !staged {
        return Err(format!(
            "{name}'s run should record {executors} executors and its stages' tasks, times and shuffle bytes: {run:#}"
        )
        .into());
    }
    Ok(())
}

/// The rows of the revenue report (gzip CSV with a header) under `s3://bucket/prefix`, sorted.
fn report_rows(env: &Env, bucket: &str, prefix: &str) -> Result<Vec<String>, Failed> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    use std::io::Read;
    let store = env.s3.store(bucket).map_err(|e| e.to_string())?;
    env.block(async {
        let files: Vec<_> = store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for file in files.iter().filter(|f| f.location.as_ref().ends_with(".gz")) {
            let bytes = store
                .get(&file.location)
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: {e}", file.location))?;
            rows.extend(text.lines().skip(1).map(str::to_string));
        }
        rows.sort();
        Ok::<_, Failed>(rows)
    })
}

fn example_job(env: &Env) -> Result<(), Failed> {
    for object in example_objects(env, 1)? {
        env.apply_object(&object)?;
    }
    for (day, first) in [("2024-05-01", 1), ("2024-05-02", 500), ("2024-05-03", 900)] {
        env.land(
            "sales-landing",
            &format!("orders/dt={day}/part-0.json"),
            &orders_json(first, 300, day),
        )?;
    }
    // A second version of some orders, which the cleaning job's dedup drops.
    env.land(
        "sales-landing",
        "orders/dt=2024-05-03/part-1.json",
        &orders_json(1, 40, "2024-05-03"),
    )?;
    env.land(
        "sales-landing",
        "customers/part-0.csv",
        "customer_id|country\n0|NL\n1|DE\n2|FR\n",
    )?;
    env.wait_ready("crawlers", "landing", SETTLE)?;
    env.annotate("crawlers", "landing", "run.kglue.dev/crawl-1", "{}")?;
    env.wait_for("the crawl", SETTLE, || {
        let runs = env.runs("crawlers", "landing")?;
        Ok(runs.first().filter(|r| r["state"] == "Succeeded").map(|_| ()))
    })?;

    // The two jobs as the example has them, with 1 worker and then with 3: the curated table
    // (overwritten partition by partition) and the report (overwritten) after each.
    let mut written = BTreeMap::new();
    for workers in [1, 3] {
        if workers > 1 {
            for object in example_objects(env, workers)? {
                if object["kind"] == "Job" {
                    env.apply_object(&object)?;
                }
            }
        }
        let request = format!("w{workers}");
        let clean = run_to_success(env, "clean-orders", &request)?;
        let publish = run_to_success(env, "publish-revenue", &request)?;
        if workers > 1 {
            // The cleaning job's window and join shuffle; the report's small aggregation is one
            // stage on a Small worker's single partition.
            expect_figures("clean-orders", &clean, i64::from(workers), true)?;
            expect_figures("publish-revenue", &publish, i64::from(workers), false)?;
        }
        written.insert(
            workers,
            (
                env.rows("sales-curated", "orders_daily/", Some("order_date"))?,
                report_rows(env, "sales-reports", "revenue/")?,
            ),
        );
    }
    let ((curated_1, report_1), (curated_3, report_3)) = (&written[&1], &written[&3]);
    if curated_1.len() != 900 || report_1.is_empty() {
        return Err(format!(
            "one worker should write the 900 orders once each and a report: {} rows, {} report lines",
            curated_1.len(),
            report_1.len()
        )
        .into());
    }
    for (what, one, three) in [
        ("orders_daily", curated_1, curated_3),
        ("the revenue report", report_1, report_3),
    ] {
        if one != three {
            let missing = one.iter().filter(|r| !three.contains(r)).count();
            let extra = three.iter().filter(|r| !one.contains(r)).count();
            return Err(format!(
                "{what}: 3 workers wrote {} rows, 1 worker {}: {missing} missing, {extra} extra",
                three.len(),
                one.len()
            )
            .into());
        }
    }
    Ok(())
}

/// TPC-H's `lineitem` and `orders` in the columns `e2e/bench/tpch` gives them (`orders` with an
/// `o_updated_at`, and every seventh order landed a second time, newer), as CSV with a header:
/// `orders` orders of 1 to 7 lines each.
fn land_tpch(env: &Env, orders: u64) -> Result<(), Failed> {
    const PRIORITIES: [&str; 5] = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"];
    let mut order_csv = String::from(
        "o_orderkey,o_custkey,o_orderstatus,o_totalprice,o_orderdate,o_orderpriority,o_clerk,o_shippriority,o_comment,o_updated_at\n",
    );
    let mut line_csv = String::from(
        "l_orderkey,l_partkey,l_suppkey,l_linenumber,l_quantity,l_extendedprice,l_discount,l_tax,l_returnflag,l_linestatus,l_shipdate,l_commitdate,l_receiptdate,l_shipinstruct,l_shipmode,l_comment\n",
    );
    for key in 1..=orders {
        let (month, day) = (key % 12 + 1, key % 28 + 1);
        let versions = if key % 7 == 0 { 2 } else { 1 };
        for version in 0..versions {
            order_csv.push_str(&format!(
                "{key},{},{},{}.{:02},1995-{month:02}-{day:02},{},Clerk#{:09},0,order {key} v{version},1995-{month:02}-{day:02} 0{version}:00:00\n",
                key % 150,
                ["O", "F", "P"][((key + version) % 3) as usize],
                key * 17 % 100_000,
                key % 100,
                PRIORITIES[((key + version) % 5) as usize],
                key % 1000,
            ));
        }
        for line in 1..=(key % 7 + 1) {
            let ship_month = (key + line) % 12 + 1;
            line_csv.push_str(&format!(
                "{key},{},{},{line},{}.0,{}.{:02},0.0{},0.0{},{},{},1996-{ship_month:02}-{day:02},1996-{ship_month:02}-{day:02},1996-{ship_month:02}-{day:02},DELIVER IN PERSON,{},line {line}\n",
                key * 31 % 20_000,
                key * 7 % 1_000,
                line * 3 % 50 + 1,
                key * line * 13 % 90_000,
                line % 100,
                line % 10,
                key % 9,
                ["R", "A", "N"][(line % 3) as usize],
                ["O", "F"][(key % 2) as usize],
                ["AIR", "MAIL", "SHIP", "TRUCK"][(line % 4) as usize],
            ));
        }
    }
    env.land("sales-landing", "tpch/orders/orders.csv", &order_csv)?;
    env.land("sales-landing", "tpch/lineitem/lineitem.csv", &line_csv)
}

/// The benchmark's catalog (`e2e/bench/tpch/catalog`) and curate job (`kglue-curate.yaml`) as
/// objects for this cluster: the tables on the S3 server through `lake`, the job as `name` with
/// `workers`, writing under `s3://sales-reports/<name>/`.
fn tpch_objects(name: &str, workers: u32) -> Result<Vec<Value>, Failed> {
    let bench = repo_root().join("e2e/bench/tpch");
    let mut objects = Vec::new();
    for file in ["catalog/lineitem.yaml", "catalog/orders.yaml"] {
        let text = std::fs::read_to_string(bench.join(file))
            .map_err(|e| format!("{file}: {e}"))?
            .replace("@LINEITEM@", "s3://sales-landing/tpch/lineitem/")
            .replace("@ORDERS@", "s3://sales-landing/tpch/orders/");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| format!("{file}: {e}"))?;
        for mut object in documents {
            if object["kind"] == "Table" {
                object["spec"]["storage"]["connection"] = json!("lake");
            }
            objects.push(object);
        }
    }
    let text = std::fs::read_to_string(bench.join("kglue-curate.yaml"))
        .map_err(|e| format!("kglue-curate.yaml: {e}"))?
        .replace("@OUTPUT@", &format!("s3://sales-reports/{name}/"));
    let mut job: Value = serde_saphyr::from_str(&text).map_err(|e| format!("kglue-curate.yaml: {e}"))?;
    job["metadata"]["name"] = json!(name);
    job["spec"]["workers"] = json!(workers);
    if let Some(sinks) = job["spec"]["sinks"].as_array_mut() {
        for sink in sinks {
            sink["storage"]["connection"] = json!("lake");
        }
    }
    objects.push(job);
    Ok(objects)
}

fn tpch_curate(env: &Env) -> Result<(), Failed> {
    land_tpch(env, 3_000)?;
    let mut written = BTreeMap::new();
    for workers in [1, 3] {
        let name = format!("tpch-curate-w{workers}");
        for object in tpch_objects(&name, workers)? {
            env.apply_object(&object)?;
        }
        let run = run_to_success(env, &name, "r1")?;
        if workers > 1 {
            expect_figures(&name, &run, i64::from(workers), true)?;
        }
        written.insert(
            workers,
            (
                env.rows("sales-reports", &format!("{name}/detail/"), Some("ship_month"))?,
                env.rows("sales-reports", &format!("{name}/summary/"), None)?,
            ),
        );
    }
    let ((detail_1, summary_1), (detail_3, summary_3)) = (&written[&1], &written[&3]);
    // Orders of 1 to 7 lines: 3,000 orders hold 12,000 lines (key % 7 + 1, summed).
    let lines: u64 = (1..=3_000u64).map(|key| key % 7 + 1).sum();
    if detail_1.len() as u64 != lines || summary_1.is_empty() {
        return Err(format!(
            "one worker should write each of the {lines} lines once, with a summary: {} detail rows, {} summary rows",
            detail_1.len(),
            summary_1.len()
        )
        .into());
    }
    // The summary's revenue is a sum of doubles: added in another order across tasks, it may
    // differ in its last bits (DuckDB's and Spark's sums do too), so it is compared to 1e-9.
    if !same_but_rounding(summary_1, summary_3) {
        return Err(
            format!("the TPC-H curate job's summary differs: 1 worker {summary_1:?}, 3 workers {summary_3:?}").into(),
        );
    }
    for (what, one, three) in [("detail", detail_1, detail_3)] {
        if one != three {
            let missing = one.iter().filter(|r| !three.contains(r)).count();
            let extra = three.iter().filter(|r| !one.contains(r)).count();
            return Err(format!(
                "the TPC-H curate job's {what}: 3 workers wrote {} rows, 1 worker {}: {missing} missing, {extra} extra",
                three.len(),
                one.len()
            )
            .into());
        }
    }
    Ok(())
}

/// Whether rows `one` and `other` (cells joined by `|`, sorted) are the same but for the last
/// bits of their decimal cells (relative difference under 1e-9).
fn same_but_rounding(one: &[String], other: &[String]) -> bool {
    let cells = |row: &String| row.split('|').map(str::to_string).collect::<Vec<_>>();
    one.len() == other.len()
        && one.iter().zip(other).all(|(a, b)| {
            let (a, b) = (cells(a), cells(b));
            a.len() == b.len()
                && a.iter().zip(&b).all(|(x, y)| {
                    x == y
                        || match (x.parse::<f64>(), y.parse::<f64>()) {
                            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                            _ => false,
                        }
                })
        })
}

/// Orders of many customers over ten days as CSV, in `files` files of `rows` rows.
fn land_wide(env: &Env, files: u32, rows: u32) -> Result<(), Failed> {
    for file in 0..files {
        let mut text = String::from("order_id,customer,day,amount\n");
        for row in 0..rows {
            let id = file * rows + row;
            text.push_str(&format!(
                "{id},{},2024-05-{:02},{}.{:02}\n",
                id % 5003,
                id % 10 + 1,
                id % 997,
                id % 100
            ));
        }
        env.land("sales-landing", &format!("wide/part-{file}.csv"), &text)?;
    }
    Ok(())
}

/// A job with a shuffle for each sink: an aggregation and a window (the latest order of each
/// customer), written partitioned by day.
const WIDE_JOB: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {name: NAME}
spec:
  sources:
    - name: orders
      storage: {location: "s3://sales-landing/wide/", format: Csv, connection: lake}
  sql: |
    CREATE VIEW daily AS
    SELECT day, customer, count(*) AS orders, sum(amount) AS revenue, max(order_id) AS last_id
    FROM orders GROUP BY day, customer;
    CREATE VIEW latest AS
    SELECT order_id, customer, day, amount FROM (
      SELECT *, row_number() OVER (PARTITION BY customer, day ORDER BY order_id DESC) AS version FROM orders
    ) WHERE version = 1
  sinks:
    - name: daily
      storage: {location: "s3://sales-reports/NAME/daily/", format: Parquet, connection: lake}
      partitionBy: [day]
      writeMode: Overwrite
    - name: latest
      storage: {location: "s3://sales-reports/NAME/latest/", format: Parquet, connection: lake}
      partitionBy: [day]
      writeMode: Overwrite
  workerSize: Small
  workers: WORKERS
  maxRetries: 1
"#;

fn wide_job(name: &str, workers: u32) -> String {
    WIDE_JOB.replace("NAME", name).replace("WORKERS", &workers.to_string())
}

/// What the wide job wrote as `name`: each sink's rows.
fn wide_rows(env: &Env, name: &str) -> Result<(Vec<String>, Vec<String>), Failed> {
    Ok((
        env.rows("sales-reports", &format!("{name}/daily/"), Some("day"))?,
        env.rows("sales-reports", &format!("{name}/latest/"), Some("day"))?,
    ))
}

/// The wide job's rows with one worker, landing its input first.
fn wide_reference(env: &Env) -> Result<(Vec<String>, Vec<String>), Failed> {
    land_wide(env, 6, 150_000)?;
    env.apply(&wide_job("wide-w1", 1))?;
    env.wait_ready("jobs", "wide-w1", SETTLE)?;
    env.start("wide-w1", "r1")?;
    let run = env.wait_final("wide-w1", "r1")?;
    if run["state"] != "Succeeded" {
        return Err(format!("wide-w1: {run:#}").into());
    }
    let rows = wide_rows(env, "wide-w1")?;
    // 5,003 customers × 10 days (coprime: every pair occurs), in both sinks once.
    if rows.0.len() != 50_030 || rows.1.len() != 50_030 {
        return Err(format!(
            "wide-w1 wrote {} and {} rows, not 50,030 each",
            rows.0.len(),
            rows.1.len()
        )
        .into());
    }
    Ok(rows)
}

/// Waits until run `request` of `name` is Running with all its executor processes up and its
/// record shows them (`executors: {requested: 3, running: 3}`), then returns the run id and those
/// processes.
fn running_with_executors(env: &Env, name: &str, request: &str) -> Result<(String, Vec<i32>), Failed> {
    let run = env.wait_run(name, request, |run| run["state"] == "Running")?;
    let run_id = run["id"].as_str().unwrap_or_default().to_string();
    let pids = env.wait_for(&format!("3 executor processes of {run_id}"), SETTLE, || {
        let pids = executor_pids(&run_id);
        Ok((pids.len() >= 3).then_some(pids))
    })?;
    env.wait_run(name, request, |run| {
        run["executors"] == json!({"requested": 3, "running": 3}) || run["state"] != "Running"
    })
    .and_then(|run| match run["state"] == "Running" {
        true => Ok(()),
        false => Err(format!("the run ended before its record showed 3 executors running: {run:#}").into()),
    })?;
    Ok((run_id, pids))
}

fn expect_same(
    name: &str,
    reference: &(Vec<String>, Vec<String>),
    got: &(Vec<String>, Vec<String>),
) -> Result<(), Failed> {
    for (sink, one, three) in [("daily", &reference.0, &got.0), ("latest", &reference.1, &got.1)] {
        // `daily`'s revenue sums doubles, in another order across tasks (see same_but_rounding).
        if !same_but_rounding(one, three) {
            let missing = one.iter().filter(|r| !three.contains(r)).count();
            let extra = three.iter().filter(|r| !one.contains(r)).count();
            return Err(format!(
                "{name}'s sink {sink}: {} rows against one worker's {}: {missing} missing, {extra} extra",
                three.len(),
                one.len()
            )
            .into());
        }
    }
    Ok(())
}

fn executor_killed(env: &Env) -> Result<(), Failed> {
    let reference = wide_reference(env)?;
    env.apply(&wide_job("wide-kill", 3))?;
    env.wait_ready("jobs", "wide-kill", SETTLE)?;
    env.start("wide-kill", "r1")?;
    let (run_id, pids) = running_with_executors(env, "wide-kill", "r1")?;
    // Once tasks are under way: the driver has planned and the job is submitted.
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    kill(pids[0]);
    let still_running = env
        .runs("jobs", "wide-kill")?
        .first()
        .is_some_and(|r| r["state"] == "Running");
    if !still_running {
        return Err("the run ended before an executor could be killed: the case shows nothing".into());
    }
    // The killed pod is seen Failed while the run goes on (the operator deletes the executors'
    // Job and its pods once the run ends, so this is looked at now). Not the Job's `failed`
    // count: the Job controller can count it after a short run has already ended.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let executors_job = format!("wide-kill-{run_id}-0-exec");
    let selector = format!("batch.kubernetes.io/job-name={executors_job}");
    env.wait_for(
        &format!("a pod of {executors_job} Failed"),
        Duration::from_secs(30),
        || {
            let listed = env
                .block(pods.list(&ListParams::default().labels(&selector)))
                .map_err(|e| e.to_string())?;
            if listed.items.is_empty() {
                return Err(
                    format!("{executors_job}'s pods were deleted before the killed one was seen Failed").into(),
                );
            }
            let failed = listed
                .items
                .iter()
                .any(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
            Ok(failed.then_some(()))
        },
    )?;
    let run = env.wait_final("wide-kill", "r1")?;
    if run["state"] != "Succeeded" || run["attempt"] != 0 {
        return Err(format!("the run should succeed in its first attempt despite the lost executor: {run:#}").into());
    }
    eprintln!(
        "wide-kill: an executor killed; the run succeeded {:.1} s later",
        killed_at.elapsed().as_secs_f64()
    );
    env.nothing_left(&run_id)?;
    expect_same("wide-kill", &reference, &wide_rows(env, "wide-kill")?)?;
    // Kept for the next case.
    *REFERENCE.lock().unwrap_or_else(|p| p.into_inner()) = Some(reference);
    Ok(())
}

/// The wide job's rows with one worker, once the executor case computed them.
static REFERENCE: Mutex<Option<(Vec<String>, Vec<String>)>> = Mutex::new(None);

fn driver_killed(env: &Env) -> Result<(), Failed> {
    let cached = REFERENCE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let reference = match cached {
        Some(reference) => reference,
        None => wide_reference(env)?,
    };
    env.apply(&wide_job("wide-driver", 3))?;
    env.wait_ready("jobs", "wide-driver", SETTLE)?;
    env.start("wide-driver", "r1")?;
    let (run_id, _) = running_with_executors(env, "wide-driver", "r1")?;
    std::thread::sleep(Duration::from_millis(1500));
    let drivers = runner_pids(&run_id);
    if drivers.is_empty() {
        return Err(format!("no driver process of {run_id}").into());
    }
    for pid in drivers {
        kill(pid);
    }
    let run = env.wait_run("wide-driver", "r1", |run| {
        run["attempt"] == 1 && ["Succeeded", "Failed", "Error"].contains(&run["state"].as_str().unwrap_or(""))
    })?;
    if run["state"] != "Succeeded" {
        return Err(format!("the retry should succeed: {run:#}").into());
    }
    let runs = env.runs("jobs", "wide-driver")?;
    let first = runs
        .iter()
        .find(|r| r["id"] == run_id.as_str() && r["attempt"] == 0)
        .ok_or("attempt 0 is not in the history")?;
    if first["state"] != "Failed" {
        return Err(format!("attempt 0 should be Failed: {first:#}").into());
    }
    env.nothing_left(&run_id)?;
    expect_same("wide-driver", &reference, &wide_rows(env, "wide-driver")?)?;
    Ok(())
}
