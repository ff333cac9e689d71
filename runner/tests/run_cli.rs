//! `kglue run` end to end, on data the tests generate: every answer is checked against DuckDB
//! (Python's `duckdb` package) running the same SQL over the same input, and the output files are
//! read back by DuckDB too — an engine other than the one that wrote them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DATABASE: &str =
    "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: curated}\nspec: {databaseName: curated}\n";

struct Workspace {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("catalog")).expect("catalog dir");
        std::fs::create_dir_all(root.join("tmp")).expect("temporary dir");
        std::fs::write(root.join("catalog/database.yaml"), DATABASE).expect("database");
        Workspace { _dir: dir, root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn url(&self, relative: &str) -> String {
        format!("file://{}/", self.path(relative).display())
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Writes a Job reading `raw/` (CSV, Hive-partitioned by `dt`) into `out/`.
    fn job(&self, sql: &str, sink_extra: &str, spec_extra: &str) -> PathBuf {
        let text = format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: clean-orders}}\nspec:\n{spec_extra}  sources:\n    - name: orders\n      storage: {{location: \"{raw}\", format: Csv}}\n  sql: |\n    {sql}\n  sinks:\n    - name: cleaned\n      storage: {{location: \"{out}\", format: Parquet}}\n{sink_extra}",
            raw = self.url("raw"),
            out = self.url("out"),
        );
        let path = self.path("job.yaml");
        std::fs::write(&path, text).expect("job");
        path
    }

    fn run(&self, job: &Path, extra: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kglue"));
        command
            .args(["run", "-f"])
            .arg(job)
            .arg("--catalog")
            .arg(self.path("catalog"))
            .arg("--json")
            .args(extra)
            .env("KGLUE_SPILL_DIR", self.path("spill"))
            // What a run leaves in the temporary directory shows here.
            .env("TMPDIR", self.path("tmp"));
        command.output().expect("run kglue")
    }

    fn run_ok(&self, job: &Path, extra: &[&str]) -> Value {
        let output = self.run(job, extra);
        assert!(
            output.status.success(),
            "kglue run failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("json result")
    }

    fn run_failing(&self, job: &Path, extra: &[&str]) -> String {
        let output = self.run(job, extra);
        assert!(!output.status.success(), "expected a failed run");
        let result: Value = serde_json::from_slice(&output.stdout).expect("json result");
        assert_eq!(result["outcome"], "Failed");
        result["error"].as_str().expect("error message").to_string()
    }

    /// Every file under `out/`, relative.
    fn output_files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let root = self.path("out");
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path.strip_prefix(&root).expect("below").display().to_string());
                }
            }
        }
        files.sort();
        files
    }
}

/// Runs `query` in DuckDB (after `setup`, with `$name` parameters from `params`) and returns the
/// rows as sorted text lines, so result order does not matter.
fn duckdb(setup: &str, query: &str, params: &[(&str, &str)]) -> Vec<String> {
    let script = r#"
import json, sys, duckdb
setup, query, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
if setup:
    con.execute(setup)
rows = con.execute(query, params).fetchall() if params else con.execute(query).fetchall()
def cell(v):
    if isinstance(v, float):
        return f"{v:.6f}"
    return "NULL" if v is None else str(v)
for row in sorted("|".join(cell(v) for v in row) for row in rows):
    print(row)
"#;
    let params: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let output = Command::new("python3")
        .args(["-c", script, setup, query, &Value::Object(params).to_string()])
        .output()
        .expect("python3 with duckdb (pip install duckdb)");
    assert!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The CSV of generated orders `first..first+count`: ids, amounts with cents, a region (some
/// empty, read as NULL), spread over `days` Hive partitions.
fn land_orders(ws: &Workspace, first: usize, count: usize, days: usize, name: &str) {
    let mut per_day: Vec<String> = vec!["id,amount,region,note\n".to_string(); days];
    for id in first..first + count {
        let region = ["eu", "us", "ap", ""][id % 4];
        let amount = (id * 37 % 1000) as f64 / 4.0;
        per_day[id % days].push_str(&format!("{id},{amount},{region},\"n, {id}\"\n"));
    }
    for (day, text) in per_day.iter().enumerate() {
        ws.write(&format!("raw/dt=2024-01-{:02}/{name}.csv", day + 1), text);
    }
}

const RAW_VIEW: &str = "CREATE VIEW orders AS SELECT * FROM read_csv('RAW/*/*.csv', hive_partitioning = true, header = true, columns = {'id': 'BIGINT', 'amount': 'DOUBLE', 'region': 'VARCHAR', 'note': 'VARCHAR'})";

fn raw_view(ws: &Workspace) -> String {
    RAW_VIEW.replace("RAW", &ws.path("raw").display().to_string())
}

fn out_view(ws: &Workspace) -> String {
    format!(
        "CREATE VIEW out AS SELECT * FROM read_parquet('{}/**/*.parquet', hive_partitioning = true)",
        ws.path("out").display()
    )
}

#[test]
fn a_job_gives_the_rows_duckdb_gives_for_the_same_sql_and_updates_the_catalog() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 2000, 3, "a");
    let sql = "CREATE VIEW cleaned AS SELECT region, count(*) AS orders, sum(amount) AS total, min(note) AS first_note FROM orders WHERE amount >= CAST($min_amount AS DOUBLE) GROUP BY region;";
    let job = ws.job(
        sql,
        "      partitionBy: [region]\n      table: {database: curated, table: orders_by_region}\n",
        "  defaultArguments: {min_amount: \"10\"}\n",
    );
    let result = ws.run_ok(&job, &["--arg", "min_amount=100.5"]);
    assert_eq!(result["outcome"], "Succeeded");
    assert_eq!(
        result["arguments"]["min_amount"], "100.5",
        "the run's argument wins over the default"
    );
    assert_eq!(result["metrics"]["sources"]["orders"]["rows"], 2000);
    assert_eq!(result["metrics"]["sources"]["orders"]["objects"], 3);
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], 4);
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["partitionsAdded"], 4);
    for phase in ["plan", "execute", "write", "catalog"] {
        assert!(result["metrics"]["phaseSeconds"][phase].is_number(), "phase {phase}");
    }

    let expected = duckdb(
        &raw_view(&ws),
        "SELECT region, count(*), sum(amount), min(note) FROM orders WHERE amount >= CAST($min_amount AS DOUBLE) GROUP BY region",
        &[("min_amount", "100.5")],
    );
    let written = duckdb(&out_view(&ws), "SELECT region, orders, total, first_note FROM out", &[]);
    // DuckDB reads the Hive folder of NULL back as the string Hive writes for it.
    let written: Vec<String> = written
        .into_iter()
        .map(|row| row.replace("__HIVE_DEFAULT_PARTITION__", "NULL"))
        .collect();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(written_sorted, expected);

    let files = ws.output_files();
    let run_id = result["runId"].as_str().expect("run id");
    assert!(files.iter().all(|f| f.contains(run_id)), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("region=eu/")), "{files:?}");

    let table = std::fs::read_to_string(ws.path("catalog/curated.orders-by-region.yaml")).expect("table written");
    for needle in [
        "name: orders\n    type: bigint",
        "name: total\n    type: double",
        "partitionKeys:\n  - name: region",
        "count: 4",
        "by: Job/clean-orders",
    ] {
        assert!(table.contains(needle), "{needle:?} in\n{table}");
    }
}

#[test]
fn three_bookmarked_runs_read_every_object_exactly_once() {
    let ws = Workspace::new();
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id, amount, dt FROM orders;",
        "",
        "  bookmark: {option: Enable}\n",
    );
    let bookmarks = ws.path("bookmarks.json");
    let bookmarks_arg = bookmarks.to_str().expect("utf-8 path");
    let mut landed = 0;
    for (run, batch) in [(0, 300), (1, 120), (2, 45)].into_iter() {
        land_orders(&ws, landed, batch, 2, &format!("batch{run}"));
        landed += batch;
        let result = ws.run_ok(&job, &["--bookmarks", bookmarks_arg]);
        assert_eq!(
            result["metrics"]["sources"]["orders"]["rows"], batch,
            "run {run} reads only the new objects"
        );
        assert_eq!(result["metrics"]["sources"]["orders"]["objects"], 2);
    }
    // A fourth run with nothing new reads nothing and writes nothing.
    let result = ws.run_ok(&job, &["--bookmarks", bookmarks_arg]);
    assert_eq!(result["metrics"]["sources"]["orders"]["rows"], 0);

    let counts = duckdb(
        &out_view(&ws),
        "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM out",
        &[],
    );
    assert_eq!(counts, [format!("{landed}|{landed}|0|{}", landed - 1)]);
}

#[test]
fn pause_reads_from_the_bookmark_without_moving_it_and_rewind_goes_back() {
    let ws = Workspace::new();
    let bookmarks = ws.path("bookmarks.json");
    let bookmarks_arg = bookmarks.to_str().expect("utf-8 path");
    let enabled = ws.path("enabled.yaml");
    std::fs::rename(
        ws.job(
            "CREATE VIEW cleaned AS SELECT id, dt FROM orders;",
            "",
            "  bookmark: {option: Enable}\n",
        ),
        &enabled,
    )
    .expect("rename");
    land_orders(&ws, 0, 10, 1, "first");
    let first = ws.run_ok(&enabled, &["--bookmarks", bookmarks_arg, "--run-id", "r1"]);
    assert_eq!(first["metrics"]["sources"]["orders"]["rows"], 10);
    land_orders(&ws, 10, 5, 1, "second");

    let paused = ws.job(
        "CREATE VIEW cleaned AS SELECT id, dt FROM orders;",
        "",
        "  bookmark: {option: Pause}\n",
    );
    for _ in 0..2 {
        let result = ws.run_ok(&paused, &["--bookmarks", bookmarks_arg]);
        assert_eq!(
            result["metrics"]["sources"]["orders"]["rows"], 5,
            "pause reads what is new since the bookmark"
        );
        assert!(result.get("nextBookmark").is_none(), "pause proposes no bookmark");
    }
    let second = ws.run_ok(&enabled, &["--bookmarks", bookmarks_arg, "--run-id", "r2"]);
    assert_eq!(second["metrics"]["sources"]["orders"]["rows"], 5);
    assert_eq!(
        ws.run_ok(&enabled, &["--bookmarks", bookmarks_arg])["metrics"]["sources"]["orders"]["rows"],
        0
    );

    let rewind = Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(["bookmark", "rewind", "--bookmarks", bookmarks_arg, "--to-run", "r2"])
        .output()
        .expect("kglue bookmark");
    assert!(rewind.status.success(), "{}", String::from_utf8_lossy(&rewind.stderr));
    let again = ws.run_ok(&enabled, &["--bookmarks", bookmarks_arg]);
    assert_eq!(
        again["metrics"]["sources"]["orders"]["rows"], 5,
        "rewound to where r2 started: its objects again"
    );

    let reset = Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(["bookmark", "reset", "--bookmarks", bookmarks_arg])
        .output()
        .expect("kglue bookmark");
    assert!(reset.status.success());
    assert_eq!(
        ws.run_ok(&enabled, &["--bookmarks", bookmarks_arg])["metrics"]["sources"]["orders"]["rows"],
        15
    );
}

#[test]
fn a_run_killed_mid_write_and_retried_yields_exactly_one_runs_rows() {
    let ws = Workspace::new();
    let rows = 300_000;
    land_orders(&ws, 0, rows, 4, "big");
    // Many partitions and small files keep the run writing long enough to be killed mid-way.
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id, amount, note, CAST(id % 64 AS BIGINT) AS bucket FROM orders;",
        "      partitionBy: [bucket]\n      targetFileSizeMb: 1\n",
        "",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(["run", "-f"])
        .arg(&job)
        .arg("--catalog")
        .arg(ws.path("catalog"))
        .args(["--run-id", "r7"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kglue");
    let staging = ws.path("out/_kglue_staging/r7");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = false;
    let mut ended_early = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll") {
            ended_early = Some(status);
            break;
        }
        let staged = walk(&staging)
            .into_iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet"));
        if staged {
            child.kill().expect("kill");
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !killed {
        let _ = child.kill();
    }
    child.wait().expect("reap");
    if let Some(status) = ended_early {
        panic!("the run ended ({status}) before any staged file appeared; the test could not kill it mid-write");
    }
    assert!(killed, "no staged file within the deadline");
    assert!(
        !walk(&staging).is_empty(),
        "the killed attempt left staged files behind"
    );

    let result = ws.run_ok(&job, &["--run-id", "r7", "--attempt", "1"]);
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], rows);
    let counts = duckdb(&out_view(&ws), "SELECT count(*), count(DISTINCT id) FROM out", &[]);
    assert_eq!(counts, [format!("{rows}|{rows}")]);
    assert!(
        !ws.path("out/_kglue_staging").join("r7").exists(),
        "staging removed after commit"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn overwrite_replaces_the_previous_runs_data() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 100, 2, "a");
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id, region FROM orders WHERE id < CAST($limit AS BIGINT);",
        "      writeMode: Overwrite\n",
        "",
    );
    ws.run_ok(&job, &["--arg", "limit=50"]);
    ws.run_ok(&job, &["--arg", "limit=20"]);
    let counts = duckdb(&out_view(&ws), "SELECT count(*), max(id) FROM out", &[]);
    assert_eq!(counts, ["20|19"]);
}

#[test]
fn explain_prints_the_plan_and_writes_nothing() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 10, 1, "a");
    let job = ws.job("CREATE VIEW cleaned AS SELECT id FROM orders WHERE id > 3;", "", "");
    let output = Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(["run", "--explain", "-f"])
        .arg(&job)
        .arg("--catalog")
        .arg(ws.path("catalog"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("source orders: 1 objects selected of 1 listed"), "{text}");
    assert!(text.contains("FilterExec") && text.contains("DataSourceExec"), "{text}");
    assert!(ws.output_files().is_empty());
}

#[test]
fn bad_jobs_and_bad_data_fail_with_a_message_naming_what_is_wrong_and_commit_nothing() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 20, 1, "a");

    let job = ws.job("CREATE VIEW cleaned AS\n    SELEC id FROM orders;", "", "");
    let error = ws.run_failing(&job, &[]);
    assert!(error.contains("does not parse") && error.contains("Line: 2"), "{error}");

    let job = ws.job("CREATE VIEW cleaned AS SELECT nope FROM orders;", "", "");
    let error = ws.run_failing(&job, &[]);
    assert!(error.contains("statement 1") && error.contains("nope"), "{error}");

    let job = ws.job("CREATE VIEW other AS SELECT id FROM orders;", "", "");
    let error = ws.run_failing(&job, &[]);
    assert!(
        error.contains("sink cleaned") && error.contains("no relation \"cleaned\""),
        "{error}"
    );

    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id FROM orders;",
        "",
        "  nonOverridableArguments: {env: prod}\n",
    );
    let error = ws.run_failing(&job, &["--arg", "env=dev"]);
    assert!(error.contains("non-overridable"), "{error}");

    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id FROM orders;",
        "      partitionBy: [day]\n",
        "",
    );
    let error = ws.run_failing(&job, &[]);
    assert!(error.contains("partitionBy column \"day\""), "{error}");

    // A locked sink table the output does not fit.
    ws.write(
        "catalog/locked.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: curated.locked}}\nspec:\n  databaseName: curated\n  tableName: locked\n  schemaLocked: true\n  storage: {{location: \"{}\", format: Parquet}}\n  columns:\n    - {{name: id, type: int}}\n",
            ws.url("out")
        ),
    );
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT CAST(id AS VARCHAR) AS id FROM orders;",
        "      table: {database: curated, table: locked}\n",
        "",
    );
    let error = ws.run_failing(&job, &[]);
    assert!(
        error.contains("locked") && error.contains("column id is int"),
        "{error}"
    );

    // A row that does not parse as the column's type is named by object and line.
    ws.write(
        "raw/dt=2024-01-09/bad.csv",
        "id,amount,region,note\n1,2.5,eu,x\n2,oops,us,y\n",
    );
    ws.write(
        "catalog/raw.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: curated.raw}}\nspec:\n  databaseName: curated\n  tableName: raw\n  storage: {{location: \"{}\", format: Csv}}\n  columns:\n    - {{name: id, type: bigint}}\n    - {{name: amount, type: double}}\n    - {{name: region, type: string}}\n    - {{name: note, type: string}}\n  partitionKeys:\n    - {{name: dt, type: date}}\n",
            ws.url("raw")
        ),
    );
    let text = std::fs::read_to_string(ws.path("job.yaml")).expect("job");
    let table_job = text
        .replace(
            &format!("storage: {{location: \"{}\", format: Csv}}", ws.url("raw")),
            "table: {database: curated, table: raw}",
        )
        .replace("CAST(id AS VARCHAR) AS id", "id, amount")
        .replace("      table: {database: curated, table: locked}\n", "");
    std::fs::write(ws.path("job.yaml"), table_job).expect("job");
    let error = ws.run_failing(&ws.path("job.yaml"), &[]);
    assert!(error.contains("bad.csv") && error.contains("oops"), "{error}");

    // An object of a partitioned table outside its partition folders is named, not read without
    // partition values or skipped.
    std::fs::remove_file(ws.path("raw/dt=2024-01-09/bad.csv")).expect("remove");
    ws.write("raw/stray.csv", "id,amount,region,note\n1,2.5,eu,x\n");
    let error = ws.run_failing(&ws.path("job.yaml"), &[]);
    assert!(
        error.contains("stray.csv") && error.contains("not in the table's partition folders"),
        "{error}"
    );

    assert!(
        ws.output_files().is_empty(),
        "failed runs leave no files: {:?}",
        ws.output_files()
    );
}

#[test]
fn run_properties_come_from_a_relation_and_a_bad_one_commits_nothing() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 12, 3, "a");
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT id, amount FROM orders;\n    CREATE VIEW props AS SELECT 'max_id' AS name, CAST(MAX(id) AS VARCHAR) AS value FROM orders UNION ALL SELECT 'zone', 'curated';",
        "",
        "  runPropertiesFrom: props\n",
    );
    let result = ws.run_ok(&job, &[]);
    assert_eq!(result["runProperties"], json!({"max_id": "11", "zone": "curated"}));

    for (props, wanted) in [
        (
            "CREATE VIEW props AS SELECT 'a' AS key, 'b' AS value;",
            "name and value",
        ),
        (
            "CREATE VIEW props AS SELECT '1a' AS name, 'b' AS value;",
            "not a property name",
        ),
        (
            "CREATE VIEW props AS SELECT 'a' AS name, CAST(NULL AS VARCHAR) AS value;",
            "must not be null",
        ),
        ("CREATE VIEW nothing AS SELECT 1;", "defines no relation \"props\""),
    ] {
        let ws = Workspace::new();
        land_orders(&ws, 0, 12, 3, "a");
        let job = ws.job(
            &format!("CREATE VIEW cleaned AS SELECT id, amount FROM orders;\n    {props}"),
            "",
            "  runPropertiesFrom: props\n",
        );
        let error = ws.run_failing(&job, &[]);
        assert!(
            error.starts_with("runPropertiesFrom props: ") && error.contains(wanted),
            "{error}"
        );
        assert!(
            walk(&ws.path("out")).is_empty(),
            "nothing is committed: {:?}",
            walk(&ws.path("out"))
        );
    }
}

/// Writes a Job reading one storage source (`raw/`, `format` as the YAML of its format fields)
/// into `out/`, selecting every column.
fn job_reading(ws: &Workspace, format: &str) -> PathBuf {
    let text = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: clean-orders}}\nspec:\n  sources:\n    - name: orders\n      storage: {{location: \"{raw}\", {format}}}\n  sql: |\n    CREATE VIEW cleaned AS SELECT * FROM orders;\n  sinks:\n    - name: cleaned\n      storage: {{location: \"{out}\", format: Parquet}}\n",
        raw = ws.url("raw"),
        out = ws.url("out"),
    );
    let path = ws.path("job.yaml");
    std::fs::write(&path, text).expect("job");
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("finish")
}

#[test]
fn bad_source_objects_fail_the_run_naming_the_object_and_line_and_never_panic() {
    let csv = "id,amount\n1,2.5\n2,3.5\n".repeat(50);
    let compressed = gzip(csv.as_bytes());
    let truncated = compressed[..compressed.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        (
            "ragged.csv",
            b"id,amount\n1,2\n3,4,5\n".to_vec(),
            "format: Csv",
            vec!["ragged.csv", "line 3"],
        ),
        (
            "latin1.csv",
            b"id,name\n1,caf\xe9\n".to_vec(),
            "format: Csv",
            vec!["latin1.csv", "UTF-8"],
        ),
        (
            "bad.json",
            b"{\"id\": 1}\n{\"id\": \n".to_vec(),
            "format: Json",
            vec!["bad.json", "line 2"],
        ),
        (
            "cut.csv.gz",
            truncated,
            "format: Csv, compression: Gzip",
            vec!["cut.csv.gz"],
        ),
        (
            "corrupt.parquet",
            b"PAR1 this is not a parquet file at all PAR1".to_vec(),
            "format: Parquet",
            vec!["corrupt.parquet"],
        ),
        (
            "empty.parquet",
            Vec::new(),
            "format: Parquet",
            vec!["empty.parquet", "0 bytes"],
        ),
    ];
    let mut failures = Vec::new();
    for (file, bytes, format, expected) in cases {
        let ws = Workspace::new();
        let path = ws.path(&format!("raw/{file}"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &bytes).expect("write");
        let job = job_reading(&ws, format);
        let output = ws.run(&job, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // 101 is the exit code of a Rust process that died of a panic: the run would go unreported.
        if output.status.code() == Some(101) {
            failures.push(format!("{file}: the runner died of a panic:\n{stderr}"));
            continue;
        }
        if output.status.success() {
            failures.push(format!("{file}: the run should fail"));
            continue;
        }
        let Ok(result) = serde_json::from_slice::<Value>(&output.stdout) else {
            failures.push(format!("{file}: no JSON result:\n{stderr}"));
            continue;
        };
        let error = result["error"].as_str().unwrap_or_default();
        if result["outcome"] != "Failed" || !expected.iter().all(|word| error.contains(word)) {
            failures.push(format!("{file}: expected {expected:?} in the error: {error}"));
        }
        if !ws.output_files().is_empty() {
            failures.push(format!("{file}: files were committed"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn compression_of_a_text_source_is_read_from_its_bytes() {
    let ws = Workspace::new();
    let csv = "id,amount\n1,2.5\n2,3.5\n3,4.5\n";
    let path = ws.path("raw/orders.csv");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    // Gzip bytes under a plain name, and no compression declared: read as what the bytes are.
    std::fs::write(&path, gzip(csv.as_bytes())).expect("write");
    let job = job_reading(&ws, "format: Csv");
    let result = ws.run_ok(&job, &[]);
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], 3, "{result}");
}

#[test]
fn objects_in_sub_folders_that_are_not_partitions_are_read() {
    let ws = Workspace::new();
    // Dated folders, not `key=value`: the engine's default skipped these files without a word.
    ws.write("raw/2024/05/01/a.csv", "id,amount\n1,2.5\n2,3.5\n");
    ws.write("raw/2024/05/02/b.csv", "id,amount\n3,4.5\n");
    ws.write("raw/c.csv", "id,amount\n4,5.5\n");
    let job = job_reading(&ws, "format: Csv");
    let result = ws.run_ok(&job, &[]);
    assert_eq!(result["metrics"]["sources"]["orders"]["objects"], 3, "{result}");
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], 4, "{result}");
}

#[test]
fn a_script_reads_and_writes_no_local_file_by_any_route() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 6, 2, "a");
    let secret = ws.path("secret.txt");
    std::fs::write(&secret, "line\nTOKEN-7f3a9c\n").expect("secret");
    let secret = secret.display().to_string();
    let stolen = ws.path("stolen.csv").display().to_string();
    let token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let cases = [
        (
            format!(
                "CREATE EXTERNAL TABLE secret STORED AS CSV LOCATION '{secret}';\n    CREATE VIEW cleaned AS SELECT * FROM secret;"
            ),
            "statement 1 (CREATE EXTERNAL TABLE) is not allowed",
        ),
        (
            format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{token}';\n    CREATE VIEW cleaned AS SELECT * FROM t;"
            ),
            "statement 1 (CREATE EXTERNAL TABLE) is not allowed",
        ),
        (
            "CREATE TABLE passwd (line VARCHAR) LOCATION '/etc/passwd';\n    CREATE VIEW cleaned AS SELECT * FROM passwd;".to_string(),
            "statement 1 (CREATE EXTERNAL TABLE) is not allowed",
        ),
        (
            format!(
                "CREATE VIEW cleaned AS SELECT id, amount FROM orders;\n    COPY (SELECT * FROM orders) TO '{stolen}' STORED AS CSV;"
            ),
            "statement 2 (COPY) is not allowed",
        ),
        (
            "SET datafusion.catalog.location = '/etc';\n    CREATE VIEW cleaned AS SELECT id, amount FROM orders;"
                .to_string(),
            "statement 1 (SET) is not allowed",
        ),
        (format!("CREATE VIEW cleaned AS SELECT * FROM '{secret}';"), "not found"),
        (
            "CREATE VIEW cleaned AS SELECT * FROM '/etc/passwd';".to_string(),
            "not found",
        ),
    ];
    for (script, wanted) in cases {
        let job = ws.job(&script, "", "");
        let error = ws.run_failing(&job, &[]);
        assert!(error.contains(wanted), "{script}: {error}");
        assert!(!error.contains("TOKEN-7f3a9c") && !error.contains("root:"), "{error}");
        assert!(walk(&ws.path("out")).is_empty(), "nothing is committed: {script}");
        assert!(!Path::new(&stolen).exists(), "COPY wrote {stolen}");
    }
}

/// A Job reading `raw/` and writing `location` with `mode`, its sink reached through Connection
/// `lake` when `through_lake`.
fn job_writing(ws: &Workspace, file: &str, location: &str, mode: &str, through_lake: bool) -> PathBuf {
    let connection = if through_lake { ", connection: lake" } else { "" };
    let text = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: clean-orders}}\nspec:\n  sources:\n    - name: orders\n      storage: {{location: \"{raw}\", format: Csv}}\n  sql: |\n    CREATE VIEW cleaned AS SELECT id, amount FROM orders;\n  sinks:\n    - name: cleaned\n      storage: {{location: \"{location}\", format: Parquet{connection}}}\n      writeMode: {mode}\n",
        raw = ws.url("raw"),
    );
    let path = ws.path(file);
    std::fs::write(&path, text).expect("job");
    path
}

#[test]
fn writes_stay_inside_the_connections_prefixes_and_never_replace_what_a_run_reads_or_another_table() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 6, 2, "a");
    ws.write(
        "catalog/lake.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\nspec:\n  s3: {{}}\n  allowedWritePrefixes: [\"{}\"]\n",
            ws.url("curated")
        ),
    );
    ws.write(
        "catalog/customers.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: sales.customers}}\nspec:\n  databaseName: sales\n  tableName: customers\n  storage: {{location: \"{}\", format: Parquet}}\n  columns: [{{name: id, type: bigint}}]\n",
            ws.url("shared/customers")
        ),
    );
    ws.write("shared/customers/part-0.parquet", "kept");

    let inside = job_writing(&ws, "inside.yaml", &ws.url("curated/orders"), "Append", true);
    ws.run_ok(&inside, &[]);
    assert!(
        !walk(&ws.path("curated/orders")).is_empty(),
        "a write inside the prefix lands"
    );

    let cases = [
        (
            job_writing(&ws, "outside.yaml", &ws.url("out"), "Append", true),
            format!(
                "sink cleaned: writes {}, outside what Connection \"lake\" allows (spec.allowedWritePrefixes: {})",
                ws.url("out").trim_end_matches('/'),
                ws.url("curated")
            ),
        ),
        (
            job_writing(&ws, "over-source.yaml", &ws.url(""), "Overwrite", false),
            format!(
                "which holds source \"orders\" at {}",
                ws.url("raw").trim_end_matches('/')
            ),
        ),
        (
            job_writing(&ws, "over-table.yaml", &ws.url("shared"), "OverwritePartitions", false),
            format!("which holds Table sales.customers at {}", ws.url("shared/customers")),
        ),
    ];
    for (job, wanted) in cases {
        let error = ws.run_failing(&job, &[]);
        assert!(error.contains(&wanted), "wanted {wanted:?} in: {error}");
    }
    assert!(walk(&ws.path("out")).is_empty(), "nothing written outside the prefix");
    assert_eq!(
        std::fs::read_to_string(ws.path("shared/customers/part-0.parquet")).expect("kept"),
        "kept",
        "the other Table's data is untouched"
    );
    assert!(!walk(&ws.path("raw")).is_empty(), "the source is untouched");
}

/// A job writing a relation and a summary of it: the summary is computed from the rows the first
/// sink writes (the sources are read once), and gives what DuckDB gives from the sources; when
/// the first sink fails, neither writes anything.
#[test]
fn a_summary_of_another_sinks_relation_reads_the_sources_once_and_fails_with_it() {
    let summary_sink = |ws: &Workspace| {
        format!(
            "      partitionBy: [region]\n    - name: summary\n      storage: {{location: \"{}\", format: Parquet}}\n",
            ws.url("summary")
        )
    };
    let ws = Workspace::new();
    land_orders(&ws, 0, 3000, 3, "a");
    let sql = "CREATE VIEW cleaned AS SELECT id, amount, region, row_number() OVER (PARTITION BY region ORDER BY amount DESC, id) AS rank FROM orders;\n    CREATE VIEW summary AS SELECT region, count(*) AS orders, sum(amount) AS total, max(rank) AS ranks FROM cleaned GROUP BY region;";
    let job = ws.job(sql, &summary_sink(&ws), "");
    let result = ws.run_ok(&job, &[]);
    assert_eq!(
        result["metrics"]["sources"]["orders"]["rows"], 3000,
        "the sources are read once, not once per sink: {result}"
    );
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], 3000);
    assert_eq!(result["metrics"]["sinks"]["summary"]["rows"], 4);
    let expected = duckdb(
        &raw_view(&ws),
        "SELECT region, count(*), sum(amount), count(*) FROM orders GROUP BY region",
        &[],
    );
    let summary = duckdb(
        &format!(
            "CREATE VIEW s AS SELECT * FROM read_parquet('{}/*.parquet')",
            ws.path("summary").display()
        ),
        "SELECT region, orders, total, ranks FROM s",
        &[],
    );
    assert_eq!(summary, expected);

    // The detail fails part way (a note is not a number): the summary fed by it must not be
    // written as if the rows it got were all of them.
    let ws = Workspace::new();
    land_orders(&ws, 0, 3000, 3, "a");
    let failing = "CREATE VIEW cleaned AS SELECT id, amount, region, CASE WHEN id < 2990 THEN 0 ELSE CAST(note AS BIGINT) END AS bad FROM orders;\n    CREATE VIEW summary AS SELECT region, count(*) AS orders FROM cleaned GROUP BY region;";
    let job = ws.job(failing, &summary_sink(&ws), "");
    let error = ws.run_failing(&job, &[]);
    assert!(error.contains("cleaned") || error.contains("note"), "{error}");
    assert_eq!(ws.output_files(), Vec::<String>::new());
    assert!(walk(&ws.path("summary")).is_empty(), "{:?}", walk(&ws.path("summary")));
}

/// `--workers 3`: each sink's plan is cut into stages that three executors run (Ballista, in the
/// run's process), and the run writes exactly the rows one process writes, reads each source as
/// often, and reports its stages. A task that fails fails the run: nothing committed, nothing
/// left in staging.
#[test]
fn three_workers_write_exactly_the_rows_of_one_process_and_fail_as_one() {
    let sql = "CREATE VIEW ranked AS SELECT id, amount, region, note, row_number() OVER (PARTITION BY region ORDER BY amount DESC, id) AS rank FROM orders;\n    CREATE VIEW cleaned AS SELECT r.id, r.amount, r.region, r.note, r.rank, t.total FROM ranked r JOIN (SELECT region, sum(amount) AS total FROM orders GROUP BY region) t ON r.region IS NOT DISTINCT FROM t.region;\n    CREATE VIEW summary AS SELECT region, count(*) AS orders, sum(amount) AS total FROM orders GROUP BY region;\n    CREATE VIEW props AS SELECT 'regions' AS name, CAST(count(*) AS VARCHAR) AS value FROM summary;";
    let sinks = |ws: &Workspace| {
        format!(
            "      partitionBy: [region]\n    - name: summary\n      storage: {{location: \"{}\", format: Parquet}}\n",
            ws.url("summary")
        )
    };
    let rows = 20_000;
    let mut runs = Vec::new();
    for workers in ["1", "3"] {
        let ws = Workspace::new();
        land_orders(&ws, 0, rows, 4, "a");
        // Two CPUs: the plans have two partitions per stage, so tasks of a stage write side by side.
        // Run properties are read after the sinks' jobs ran, from the script's views.
        let job = ws.job(sql, &sinks(&ws), "  workerSize: Medium\n  runPropertiesFrom: props\n");
        let result = ws.run_ok(&job, &["--workers", workers]);
        assert_eq!(result["runProperties"], json!({"regions": "4"}), "{result}");
        let out = duckdb(&out_view(&ws), "SELECT * FROM out", &[]);
        let summary = duckdb(
            &format!(
                "CREATE VIEW s AS SELECT * FROM read_parquet('{}/*.parquet')",
                ws.path("summary").display()
            ),
            "SELECT * FROM s",
            &[],
        );
        assert!(
            walk(&ws.path("tmp")).is_empty() && !ws.path("spill").exists(),
            "the run left files behind (executors' shuffle files): {:?}",
            walk(&ws.path("tmp"))
        );
        runs.push((result, out, summary, ws));
    }
    let (one, three) = (&runs[0], &runs[1]);
    assert_eq!(one.1.len(), rows);
    assert!(
        one.1 == three.1,
        "the detail differs between one process and three workers"
    );
    assert_eq!(one.2.len(), 4);
    assert_eq!(one.2, three.2, "the summary differs");
    let expected = duckdb(
        &raw_view(&three.3),
        "SELECT region, count(*), sum(amount) FROM orders GROUP BY region",
        &[],
    );
    assert_eq!(
        three.2, expected,
        "the summary is not what DuckDB computes from the sources"
    );

    let (result, metrics) = (&three.0, &three.0["metrics"]);
    assert_eq!(metrics["workers"]["executors"], 3, "{result}");
    assert_eq!(
        metrics["sources"]["orders"]["rows"], one.0["metrics"]["sources"]["orders"]["rows"],
        "the executors' scans are counted as the one process's are: {result}"
    );
    assert_eq!(metrics["sources"]["orders"]["rows"], 3 * rows, "{result}");
    assert_eq!(metrics["sinks"]["cleaned"]["rows"], rows);
    let stages = metrics["workers"]["stages"].as_array().expect("stages");
    let cleaned: Vec<&Value> = stages.iter().filter(|s| s["sink"] == "cleaned").collect();
    assert!(
        cleaned.len() >= 3,
        "a window and a join need shuffles, so several stages: {stages:?}"
    );
    let last = cleaned.last().expect("a last stage");
    assert_eq!(
        last["rows"], rows,
        "the last stage hands every row to the files: {stages:?}"
    );
    assert!(stages.iter().all(|s| s["tasks"].as_i64() > Some(0)), "{stages:?}");
    assert!(
        one.0["metrics"].get("workers").is_none(),
        "one process reports no workers"
    );

    // One row of the detail fails its cast on whichever executor reads it.
    let ws = Workspace::new();
    land_orders(&ws, 0, rows, 4, "a");
    let failing = "CREATE VIEW cleaned AS SELECT id, amount, region, CASE WHEN id < 19990 THEN 0 ELSE CAST(note AS BIGINT) END AS bad FROM orders;\n    CREATE VIEW summary AS SELECT region, count(*) AS orders FROM orders GROUP BY region;";
    let job = ws.job(failing, &sinks(&ws), "  workerSize: Medium\n");
    let error = ws.run_failing(&job, &["--workers", "3"]);
    assert!(error.contains("cleaned") && error.contains("n, 199"), "{error}");
    assert_eq!(ws.output_files(), Vec::<String>::new());
    assert!(walk(&ws.path("summary")).is_empty(), "{:?}", walk(&ws.path("summary")));
}

/// The processes a process started (its children), from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether a process is still there (not exited and reaped, nor a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

/// Waits up to `limit` for `done`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `--workers 3` under faults: with an executor SIGKILLed while the run writes (its tasks run again
/// on the others), the run commits exactly one run's rows, or fails with nothing committed and
/// its retry does; the driver SIGKILLed takes its executors with it, and the retry gives exactly
/// one run's rows. No process outlives its run.
#[test]
fn a_killed_executor_or_driver_still_gives_exactly_one_runs_rows_and_leaves_no_process() {
    let ws = Workspace::new();
    let rows = 300_000;
    land_orders(&ws, 0, rows, 4, "big");
    // Many partitions and small files keep the run writing long enough to be killed mid-way; the
    // join with a summary adds a shuffle, whose files a killed executor takes with it.
    let job = ws.job(
        "CREATE VIEW cleaned AS SELECT o.id, o.amount, o.note, CAST(o.id % 64 AS BIGINT) AS bucket, t.orders FROM orders o JOIN (SELECT region, count(*) AS orders FROM orders GROUP BY region) t ON o.region IS NOT DISTINCT FROM t.region;",
        // Overwrite: the second run replaces the first's rows, so each run's count is checked.
        "      partitionBy: [bucket]\n      targetFileSizeMb: 1\n      writeMode: Overwrite\n",
        "  workerSize: Medium\n",
    );
    let start = |run_id: &str, attempt: &str| {
        Command::new(env!("CARGO_BIN_EXE_kglue"))
            .args(["run", "-f"])
            .arg(&job)
            .arg("--catalog")
            .arg(ws.path("catalog"))
            .args(["--workers", "3", "--run-id", run_id, "--attempt", attempt, "--json"])
            .env("KGLUE_SPILL_DIR", ws.path("spill"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kglue")
    };
    let staged = |run_id: &str| {
        walk(&ws.path("out/_kglue_staging").join(run_id))
            .into_iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet"))
    };
    let exactly_one_run = || {
        let counts = duckdb(&out_view(&ws), "SELECT count(*), count(DISTINCT id) FROM out", &[]);
        assert_eq!(counts, [format!("{rows}|{rows}")]);
        assert!(!ws.path("out/_kglue_staging").exists() || walk(&ws.path("out/_kglue_staging")).is_empty());
    };

    // An executor killed mid-write.
    let mut driver = start("r1", "0");
    assert!(
        wait_for(Duration::from_secs(120), || staged("r1")),
        "no staged file within the deadline"
    );
    let executors = children(driver.id());
    assert_eq!(executors.len(), 3, "three executor processes: {executors:?}");
    let victim = executors[0];
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill");
    let output = wait_for_output(&mut driver, Duration::from_secs(240));
    let result: Value = serde_json::from_slice(&output.stdout).expect("json result");
    if result["outcome"] == "Succeeded" {
        assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], rows);
    } else {
        // When Ballista's reruns leave more file lists than partitions and the newest attempt
        // does not account for them alone, the run fails rather than guess: nothing committed,
        // nothing staged, and the retry (the operator's, here by hand) commits one run's rows.
        let error = result["error"].as_str().unwrap_or_default();
        assert!(error.contains("file lists for the 2 partitions"), "{result}");
        assert_eq!(
            ws.output_files(),
            Vec::<String>::new(),
            "a failed attempt committed files"
        );
        let retried = ws.run_ok(&job, &["--workers", "3", "--run-id", "r1", "--attempt", "1"]);
        assert_eq!(retried["metrics"]["sinks"]["cleaned"]["rows"], rows);
    }
    exactly_one_run();
    assert!(
        wait_for(Duration::from_secs(10), || executors.iter().all(|&p| !alive(p))),
        "executors outlived their run"
    );

    // The driver killed mid-write: its executors stop with it; the retry replaces the attempt.
    let mut driver = start("r2", "0");
    assert!(
        wait_for(Duration::from_secs(120), || staged("r2")),
        "no staged file within the deadline"
    );
    let executors = children(driver.id());
    assert_eq!(executors.len(), 3, "{executors:?}");
    driver.kill().expect("kill the driver");
    driver.wait().expect("reap");
    assert!(
        wait_for(Duration::from_secs(10), || executors.iter().all(|&p| !alive(p))),
        "executors outlived their driver"
    );
    assert!(staged("r2"), "the killed attempt left staged files behind");
    let result = ws.run_ok(&job, &["--workers", "3", "--run-id", "r2", "--attempt", "1"]);
    assert_eq!(result["metrics"]["sinks"]["cleaned"]["rows"], rows);
    exactly_one_run();
}

/// Waits for `child` to exit within `limit` (killing it after) and returns its output.
fn wait_for_output(child: &mut std::process::Child, limit: Duration) -> Output {
    let ended = wait_for(limit, || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
    }
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        use std::io::Read as _;
        let _ = pipe.read_to_end(&mut stdout);
    }
    let status = child.wait().expect("reap");
    assert!(ended, "the run did not end within {limit:?}");
    Output {
        status,
        stdout,
        stderr: Vec::new(),
    }
}

/// `--workers` is for batch jobs: a streaming job says so and runs nothing.
#[test]
fn a_streaming_job_refuses_workers() {
    let ws = Workspace::new();
    land_orders(&ws, 0, 10, 1, "a");
    let job = ws.job("CREATE VIEW cleaned AS SELECT id FROM orders;", "", "  streaming: {}\n");
    let output = ws.run(&job, &["--workers", "2"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers 2: a streaming job"), "{stderr}");
    assert_eq!(ws.output_files(), Vec::<String>::new());
}
