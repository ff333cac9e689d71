//! Operator fan-out benchmark: one namespace with 1,000 Jobs, 1,000 Tables and 100 Triggers on the
//! local control plane, 50 runs in flight, then single Table writes (as a runner's catalog step
//! makes them) to Tables with many, few and no referring Jobs. Prints, per write, the reconciles
//! per kind, the API requests the operator made, and the time until the operator is quiet again;
//! and the operator's resident memory. Targets (the data-integrity issue): under 150 MiB, and no
//! more Job reconciles per Table write than Jobs that refer to the Table.
//!
//!     cargo bench -p kglue-operator --bench fanout
//!     KGLUE_BENCH_JOBS=200 KGLUE_BENCH_TABLES=200 cargo bench -p kglue-operator --bench fanout
//!
//! `KGLUE_OPERATOR_BIN` measures another operator binary than the one built with the bench (e.g.
//! a release build of the operator alone, with the bench built in the dev profile:
//! `cargo build --release -p kglue-operator --bin kglue-operator` is much quicker than building
//! every test dependency in release).
//!
//! No node agent runs here, so the 50 runs' pods stay Pending and the runs stay in flight for the
//! whole measurement: the operator follows 50 live attempts while the Tables are written. API
//! requests are the operator's own (its `kglue_operator_api_requests_total`), so nothing the
//! control plane's other clients do is counted.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::Operator;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job as BatchJob;
use kglue_e2e::ControlPlane;
use kglue_e2e::harness::install_crds;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

const NAMESPACE: &str = "fanout";
const DATABASES: usize = 10;
/// Every this many Jobs read the one "hot" Table (a dimension most jobs join).
const HOT_EVERY: usize = 10;
/// How long the operator must make no request and no reconcile to count as quiet.
const QUIET: Duration = Duration::from_secs(3);
/// The longest any phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(900);
const TARGET_MIB: f64 = 150.0;

struct Scale {
    jobs: usize,
    tables: usize,
    triggers: usize,
    runs: usize,
    writes: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let scale = Scale {
        jobs: env_usize("KGLUE_BENCH_JOBS", 1000),
        tables: env_usize("KGLUE_BENCH_TABLES", 1000),
        triggers: env_usize("KGLUE_BENCH_TRIGGERS", 100),
        runs: env_usize("KGLUE_BENCH_RUNS", 50),
        writes: env_usize("KGLUE_BENCH_WRITES", 3),
    };
    match bench(&scale) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fan-out benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The catalog layout: which Tables each Job reads and writes.
struct Layout {
    scale_tables: usize,
    /// Sources are the first 60 % of the Tables; sinks the next 39 %; the last 1 % nobody uses.
    sources: usize,
    sinks: usize,
}

impl Layout {
    fn new(tables: usize) -> Self {
        let sources = (tables * 60 / 100).max(1);
        let sinks = (tables * 39 / 100).max(1);
        Layout {
            scale_tables: tables,
            sources,
            sinks,
        }
    }

    /// `(database, table)` of Table `i`.
    fn table(&self, i: usize) -> (String, String) {
        (format!("db{:02}", i % DATABASES), format!("t{i:05}"))
    }

    /// The Tables Job `j` reads.
    fn reads(&self, j: usize) -> Vec<usize> {
        let mut reads = vec![j % self.sources, (j * 7 + 13) % self.sources];
        if j.is_multiple_of(HOT_EVERY) {
            reads.push(0);
        }
        reads.sort();
        reads.dedup();
        reads
    }

    /// The Table Job `j` writes (appending: two Jobs may share one).
    fn writes(&self, j: usize) -> usize {
        self.sources + j % self.sinks
    }

    /// How many of `jobs` Jobs refer to Table `t`.
    fn referrers(&self, jobs: usize, t: usize) -> usize {
        (0..jobs)
            .filter(|&j| self.reads(j).contains(&t) || self.writes(j) == t)
            .count()
    }
}

fn bench(scale: &Scale) -> Result<(), Box<dyn Error>> {
    let layout = Layout::new(scale.tables);
    let control_plane = ControlPlane::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    runtime.block_on(install_crds(&client))?;
    runtime.block_on(prepare_namespace(&client))?;
    let binary = std::env::var_os("KGLUE_OPERATOR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_kglue-operator").into());
    println!("operator binary: {}", binary.display());
    let operator = Operator::start_binary(
        &binary,
        &control_plane,
        "fanout",
        &["--leader-elect", "false", "--namespace", NAMESPACE],
    )?;
    let probe = Probe { operator: &operator };
    probe.wait_up()?;

    println!(
        "fan-out benchmark: {} Jobs, {} Tables in {DATABASES} Databases, {} Triggers, {} runs in flight",
        scale.jobs, scale.tables, scale.triggers, scale.runs
    );
    let started = Instant::now();
    let before = probe.snapshot()?;
    runtime.block_on(create_objects(&client, scale, &layout))?;
    let created = started.elapsed();
    wait_ready(&runtime, &client, scale)?;
    let ready = started.elapsed();
    let quiet = probe.wait_quiet()?;
    let after = probe.snapshot()?;
    println!(
        "setup: {} objects created in {:.1} s, all Ready after {:.1} s, quiet after {:.1} s; {} reconciles, {} API requests",
        1 + DATABASES + scale.tables + scale.jobs + scale.triggers,
        created.as_secs_f64(),
        ready.as_secs_f64(),
        (quiet - started).as_secs_f64(),
        after.reconciles_total() - before.reconciles_total(),
        after.requests_total() - before.requests_total(),
    );

    let started = Instant::now();
    runtime.block_on(start_runs(&client, scale.runs))?;
    wait_in_flight(&runtime, &client, scale.runs)?;
    let quiet = probe.wait_quiet()?;
    println!(
        "{} runs started: attempts created and the operator quiet after {:.1} s",
        scale.runs,
        (quiet - started).as_secs_f64()
    );
    let (rss, peak) = memory(operator.child.id()).ok_or("cannot read the operator's memory")?;

    let hot = 0;
    let ordinary = 1;
    let sink = layout.sources;
    let unused = layout.scale_tables - 1;
    println!();
    println!(
        "| Table written | Jobs referring | Job reconciles | Table | Database | Trigger | other | API requests (operator) | quiet after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut worst_excess = 0i64;
    for (what, table) in [
        ("hot source", hot),
        ("source", ordinary),
        ("sink", sink),
        ("unreferenced", unused),
    ] {
        let referrers = layout.referrers(scale.jobs, table);
        for write in 0..scale.writes {
            let before = probe.snapshot()?;
            let written = Instant::now();
            runtime.block_on(write_table(&client, &layout, table, write))?;
            let quiet = probe.wait_quiet()?;
            let after = probe.snapshot()?;
            let delta = |kind: &str| after.reconciles(kind) - before.reconciles(kind);
            let known = ["Job", "Table", "Database", "Trigger"];
            let other =
                after.reconciles_total() - before.reconciles_total() - known.iter().map(|k| delta(k)).sum::<i64>();
            worst_excess = worst_excess.max(delta("Job") - referrers as i64);
            let requests = after.requests_by_resource(&before);
            println!(
                "| {what} #{write} | {referrers} | {} | {} | {} | {} | {other} | {} ({}) | {:.2} s |",
                delta("Job"),
                delta("Table"),
                delta("Database"),
                delta("Trigger"),
                after.requests_total() - before.requests_total(),
                requests,
                quiet.saturating_duration_since(written).as_secs_f64(),
            );
        }
    }
    println!();
    println!(
        "operator resident memory {:.1} MiB (peak {:.1} MiB), target < {TARGET_MIB} MiB: {}",
        rss,
        peak,
        if peak < TARGET_MIB { "met" } else { "MISSED" }
    );
    println!(
        "Job reconciles per Table write beyond the Jobs referring to it: at most {worst_excess} (target 0): {}",
        if worst_excess <= 0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// The namespace, with the runner's account, Role and binding (runs need them).
async fn prepare_namespace(client: &Client) -> Result<(), Box<dyn Error>> {
    kglue_e2e::create_namespace(client, NAMESPACE).await?;
    common::create_runner_identity(client, NAMESPACE, kglue_operator::rbac::RUNNER, |_| {}).await?;
    Ok(())
}

fn api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "kglue.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kglue.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

/// Every object, sixteen creates at a time, in the order a GitOps sync would apply them.
async fn create_objects(client: &Client, scale: &Scale, layout: &Layout) -> Result<(), Box<dyn Error>> {
    let mut objects: Vec<(&str, &str, Value)> = vec![(
        "Connection",
        "connections",
        json!({"metadata": {"name": "lake"}, "spec": {"s3": {"endpoint": "http://127.0.0.1:9", "region": "us-east-1", "forcePathStyle": true}}}),
    )];
    for d in 0..DATABASES {
        objects.push((
            "Database",
            "databases",
            json!({"metadata": {"name": format!("db{d:02}")}, "spec": {"databaseName": format!("db{d:02}")}}),
        ));
    }
    for t in 0..scale.tables {
        let (database, table) = layout.table(t);
        objects.push((
            "Table",
            "tables",
            json!({"metadata": {"name": format!("{database}.{table}")}, "spec": {
                "databaseName": database, "tableName": table,
                "storage": {"location": format!("s3://lake/{database}/{table}/"), "format": "Parquet", "connection": "lake"},
                "columns": [{"name": "id", "type": "bigint"}, {"name": "amount", "type": "decimal(12,2)"}],
                "partitionKeys": [{"name": "dt", "type": "date"}],
            }}),
        ));
    }
    for j in 0..scale.jobs {
        let sources: Vec<Value> = layout
            .reads(j)
            .into_iter()
            .map(|t| {
                let (database, table) = layout.table(t);
                json!({"name": format!("s{t}"), "table": {"database": database, "table": table}})
            })
            .collect();
        let (database, table) = layout.table(layout.writes(j));
        let first = sources[0]["name"].as_str().unwrap_or("s").to_string();
        objects.push((
            "Job",
            "jobs",
            json!({"metadata": {"name": job_name(j)}, "spec": {
                "sources": sources,
                "sql": format!("CREATE VIEW out AS SELECT * FROM {first}"),
                "sinks": [{"name": "out", "table": {"database": database, "table": table}, "writeMode": "Append"}],
            }}),
        ));
    }
    for g in 0..scale.triggers {
        let spec = if g.is_multiple_of(2) {
            let actions: Vec<Value> = (0..5)
                .map(|k| json!({"job": job_name((g * 5 + k) % scale.jobs)}))
                .collect();
            json!({"type": "Scheduled", "schedule": {"cron": "0 3 * * *"}, "actions": actions})
        } else {
            json!({"type": "Conditional",
                "predicate": {"logical": "And", "conditions": [
                    {"job": job_name((2 * g) % scale.jobs), "state": "Succeeded"},
                    {"job": job_name((2 * g + 1) % scale.jobs), "state": "Succeeded"},
                ]},
                "actions": [{"job": job_name((g + scale.jobs / 2) % scale.jobs)}]})
        };
        objects.push((
            "Trigger",
            "triggers",
            json!({"metadata": {"name": format!("trigger-{g:03}")}, "spec": spec}),
        ));
    }
    let mut creates = futures::stream::iter(objects.into_iter().map(|(kind, plural, mut object)| {
        let api = api(client, kind, plural);
        object["apiVersion"] = json!("kglue.dev/v1alpha1");
        object["kind"] = json!(kind);
        async move {
            let object: DynamicObject = serde_json::from_value(object)?;
            api.create(&PostParams::default(), &object).await?;
            Ok::<_, Box<dyn Error>>(())
        }
    }))
    .buffer_unordered(16);
    while let Some(result) = creates.next().await {
        result?;
    }
    Ok(())
}

fn job_name(j: usize) -> String {
    format!("job-{j:04}")
}

/// Waits until every object reports Ready.
fn wait_ready(runtime: &tokio::runtime::Runtime, client: &Client, scale: &Scale) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let kinds = [
        ("Table", "tables", scale.tables),
        ("Job", "jobs", scale.jobs),
        ("Trigger", "triggers", scale.triggers),
        ("Database", "databases", DATABASES),
    ];
    for (kind, plural, expected) in kinds {
        loop {
            let list = runtime.block_on(api(client, kind, plural).list(&ListParams::default()))?;
            let ready = list.items.iter().filter(|o| is_ready(&o.data)).count();
            if ready >= expected {
                break;
            }
            if Instant::now() > deadline {
                let stalled: Vec<String> = list
                    .items
                    .iter()
                    .filter(|o| !is_ready(&o.data))
                    .take(3)
                    .map(|o| format!("{}: {}", o.metadata.name.clone().unwrap_or_default(), o.data["status"]))
                    .collect();
                return Err(format!("only {ready} of {expected} {kind}s became Ready; e.g. {stalled:?}").into());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

fn is_ready(data: &Value) -> bool {
    data["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Asks for a run of each of the first `runs` Jobs.
async fn start_runs(client: &Client, runs: usize) -> Result<(), Box<dyn Error>> {
    let jobs = api(client, "Job", "jobs");
    for j in 0..runs {
        let patch = json!({"metadata": {"annotations": {"run.kglue.dev/bench": "{\"arguments\":{}}"}}});
        jobs.patch(&job_name(j), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Waits until `runs` attempts' Kubernetes Jobs exist.
fn wait_in_flight(runtime: &tokio::runtime::Runtime, client: &Client, runs: usize) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let attempts: Api<BatchJob> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        let list = runtime
            .block_on(attempts.list(&ListParams::default().labels("app.kubernetes.io/managed-by=kglue-operator")))?;
        if list.items.len() >= runs {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {runs} attempts were created", list.items.len()).into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One catalog write to Table `t`, as a runner's commit makes it: a spec change.
async fn write_table(client: &Client, layout: &Layout, t: usize, write: usize) -> Result<(), Box<dyn Error>> {
    let (database, table) = layout.table(t);
    let patch = json!({"spec": {"parameters": {"lastRun": format!("bench-{write}")}}});
    api(client, "Table", "tables")
        .patch(
            &format!("{database}.{table}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// VmRSS and VmHWM of `pid`, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The operator's counters at one instant.
struct Snapshot {
    reconciles: BTreeMap<String, i64>,
    /// `resource verb` → requests.
    requests: BTreeMap<String, i64>,
}

impl Snapshot {
    fn reconciles(&self, kind: &str) -> i64 {
        self.reconciles.get(kind).copied().unwrap_or(0)
    }

    fn reconciles_total(&self) -> i64 {
        self.reconciles.values().sum()
    }

    fn requests_total(&self) -> i64 {
        self.requests.values().sum()
    }

    /// The requests made since `before`, by resource and verb, e.g. `tables list 2, jobs patch 1`.
    fn requests_by_resource(&self, before: &Snapshot) -> String {
        let parts: Vec<String> = self
            .requests
            .iter()
            .map(|(key, n)| (key, n - before.requests.get(key).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .map(|(key, n)| format!("{key} {n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

struct Probe<'a> {
    operator: &'a Operator,
}

impl Probe<'_> {
    fn wait_up(&self) -> Result<(), Box<dyn Error>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.operator.metrics().is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator did not serve /metrics:\n{}",
                    common::tail(&self.operator.log_text(), 20)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, Box<dyn Error>> {
        let text = self.operator.metrics().map_err(|e| format!("{e:?}"))?;
        let mut reconciles = BTreeMap::new();
        let mut requests = BTreeMap::new();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            if let Some(labels) = series.strip_prefix("kglue_operator_reconciles_total{") {
                reconciles.insert(label(labels, "kind"), value as i64);
            } else if let Some(labels) = series.strip_prefix("kglue_operator_api_requests_total{") {
                let group = label(labels, "group");
                let resource = label(labels, "resource");
                let resource = match resource.split_once('/') {
                    _ if group.is_empty() => resource,
                    Some((plural, sub)) => format!("{plural}.{group}/{sub}"),
                    None => format!("{resource}.{group}"),
                };
                requests.insert(format!("{resource} {}", label(labels, "verb")), value as i64);
            }
        }
        Ok(Snapshot { reconciles, requests })
    }

    /// Waits until neither reconciles nor API requests change for [`QUIET`]; returns when the
    /// last change was seen.
    fn wait_quiet(&self) -> Result<Instant, Box<dyn Error>> {
        let deadline = Instant::now() + PHASE_LIMIT;
        let mut last = self.snapshot()?;
        let mut changed = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.snapshot()?;
            if now.reconciles != last.reconciles || now.requests != last.requests {
                changed = Instant::now();
                last = now;
            } else if changed.elapsed() >= QUIET {
                return Ok(changed);
            }
            if Instant::now() > deadline {
                return Err("the operator never became quiet".into());
            }
        }
    }
}

/// The value of `name` in a Prometheus label set `a="x",b="y"}`.
fn label(labels: &str, name: &str) -> String {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}
