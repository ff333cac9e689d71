//! Databases in a pipeline, with the built `kglue` binary against the real servers
//! (`e2e/kglue-postgres`, `e2e/kglue-mysql`): a crawl of a PostgreSQL schema and of a MariaDB
//! database into Tables of format Jdbc (types column by column, the key, a view, an exclusion,
//! an unmapped column named and left out, a later schema change), then jobs reading those Tables:
//! the rows DuckDB reads back from the output are the database's own (compared with `psql`'s and
//! `mysql`'s answer), a key bookmark reads only new rows on the next run, a partitioned read gives
//! the rows of a single read, `--explain` shows the SQL sent with the script's filter in it, and
//! bad inputs fail naming what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kglue_crds::Table;
use kglue_e2e::databases::{DatabaseServer, Engine, PASSWORD, USER};
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    server: DatabaseServer,
}

impl Fixture {
    fn new(engine: Engine) -> Self {
        let server = DatabaseServer::start(engine).expect("the database server starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let fixture = Fixture {
            _dir: dir,
            root,
            server,
        };
        fixture.write(
            "catalog/database.yaml",
            "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: sales}\nspec: {databaseName: sales}\n",
        );
        fixture.write(
            "catalog/db.yaml",
            &format!(
                "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: db}}\nspec:\n  jdbc:\n    url: {}\n    credentialsSecretRef: {{name: db-credentials}}\n",
                fixture.server.jdbc_url()
            ),
        );
        fixture.write("secrets/db-credentials/username", USER);
        fixture.write("secrets/db-credentials/password", PASSWORD);
        fixture
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn sql(&self, sql: &str) -> String {
        self.server.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn kglue(&self, args: &[&str]) -> Output {
        let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
        Command::new(kglue)
            .args(args)
            .arg("--catalog")
            .arg(self.path("catalog"))
            .arg("--secrets-dir")
            .arg(self.path("secrets"))
            .env("KGLUE_SPILL_DIR", self.path("spill"))
            .output()
            .expect("kglue runs")
    }

    fn crawl(&self, crawler: &str) -> String {
        self.write("crawler.yaml", crawler);
        let crawler = self.path("crawler.yaml");
        let output = self.kglue(&["crawl", "-f", crawler.to_str().expect("utf-8")]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kglue crawl failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn table(&self, object_name: &str) -> Table {
        let text = std::fs::read_to_string(self.path(&format!("catalog/{object_name}.yaml")))
            .unwrap_or_else(|e| panic!("table {object_name} written: {e}"));
        serde_saphyr::from_str(&text).expect("a Table manifest")
    }

    fn job(&self, file: &str, manifest: &str) -> PathBuf {
        self.write(file, manifest);
        self.path(file)
    }

    fn run(&self, job: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["run", "-f", job.to_str().expect("utf-8"), "--json"];
        args.extend(extra);
        self.kglue(&args)
    }

    fn run_ok(&self, job: &Path, extra: &[&str]) -> Value {
        let output = self.run(job, extra);
        assert!(
            output.status.success(),
            "kglue run failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("a JSON result")
    }

    fn run_failing(&self, job: &Path) -> String {
        let output = self.run(job, &[]);
        assert!(!output.status.success(), "the run should fail");
        let result: Value = serde_json::from_slice(&output.stdout).expect("a JSON result");
        assert_eq!(result["outcome"], "Failed");
        result["error"].as_str().expect("an error message").to_string()
    }

    /// The rows of the Parquet files under `folder` as sorted `a|b|c` lines, read by DuckDB.
    fn output_rows(&self, folder: &str, columns: &str) -> Vec<String> {
        let script = r#"
import sys, duckdb
rows = duckdb.sql(f"SELECT {sys.argv[2]} FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = false)").fetchall()
for row in sorted("|".join("NULL" if v is None else str(v) for v in row) for row in rows):
    print(row)
"#;
        let output = Command::new("python3")
            .args(["-c", script, &self.path(folder).display().to_string(), columns])
            .output()
            .expect("python3 with duckdb");
        assert!(
            output.status.success(),
            "duckdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The database's answer to `sql` as sorted lines.
    fn database_rows(&self, sql: &str) -> Vec<String> {
        let mut rows: Vec<String> = self
            .sql(sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.replace('\t', "|"))
            .collect();
        rows.sort();
        rows
    }
}

fn columns(table: &Table) -> Vec<String> {
    table.spec.columns.iter().map(ToString::to_string).collect()
}

fn sink_job(name: &str, table: &str, sql: &str, source_extra: &str, spec_extra: &str, out: &Path) -> String {
    format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec_extra}  sources:\n    - name: orders\n      table: {{database: sales, table: {table}}}\n{source_extra}  sql: |\n    {sql}\n  sinks:\n    - name: out\n      storage: {{location: \"file://{}/\", format: Parquet}}\n",
        out.display()
    )
}

const CRAWLER_POSTGRES: &str = "apiVersion: kglue.dev/v1alpha1
kind: Crawler
metadata: {name: shop}
spec:
  databaseName: sales
  jdbcTargets:
    - connectionName: db
      path: kglue/public/%
      exclusions: [\"kglue/public/tmp_*\"]
";

#[test]
fn a_postgres_schema_crawls_into_tables_that_jobs_read_by_key_bookmark_and_in_parallel() {
    let fixture = Fixture::new(Engine::Postgres);
    fixture.sql(
        "create table orders (
           id bigint generated always as identity primary key, customer text not null,
           amount numeric(12,2), ordered_at timestamptz not null, shipped_on date,
           tags text[], attrs jsonb, spot point);
         create table tmp_scratch (x int);
         create view big_orders as select id, amount from orders where amount > 200;
         insert into orders (customer, amount, ordered_at, shipped_on, tags, attrs)
           select 'c' || (i % 7), (i * 37 % 1000) / 4.0, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour',
                  date '2024-01-01' + i / 24, array['t' || (i % 3), null], jsonb_build_object('i', i)
           from generate_series(1, 1000) i;",
    );

    // The crawl: one Table per table and view, the scratch table excluded, the point column left
    // out by name.
    let report = fixture.crawl(CRAWLER_POSTGRES);
    assert!(report.contains("create     sales.kglue_public_orders"), "{report}");
    assert!(report.contains("create     sales.kglue_public_big_orders"), "{report}");
    assert!(
        report.contains("skipped kglue.public.tmp_scratch: excluded by \"kglue/public/tmp_*\""),
        "{report}"
    );
    assert!(
        report.contains("skipped kglue.public.orders column spot: left out of the table: point has no Glue type"),
        "{report}"
    );
    let orders = fixture.table("sales.kglue-public-orders");
    assert_eq!(orders.spec.storage.location, "kglue.public.orders");
    assert_eq!(orders.spec.storage.connection.as_deref(), Some("db"));
    assert_eq!(format!("{:?}", orders.spec.storage.format.format), "Jdbc");
    assert_eq!(
        columns(&orders),
        [
            "id bigint",
            "customer string",
            "amount decimal(12,2)",
            "ordered_at timestamp",
            "shipped_on date",
            "tags array<string>",
            "attrs string"
        ]
    );
    let parameters = &orders.spec.parameters;
    assert_eq!(parameters["primaryKey"], "id");
    assert_eq!(parameters["classification"], "postgresql");
    assert_eq!(parameters["typeOfData"], "table");
    assert_eq!(parameters["unmappedColumns"], "spot point");
    assert_eq!(
        fixture.table("sales.kglue-public-big-orders").spec.parameters["typeOfData"],
        "view"
    );

    // `kglue sql` reads the crawled Table through its Connection, with the filter sent along.
    let sql = fixture.kglue(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT customer, count(*) AS n, sum(amount) AS total FROM sales.kglue_public_orders WHERE customer = 'c3' GROUP BY customer",
    ]);
    assert!(
        sql.status.success(),
        "kglue sql: {}",
        String::from_utf8_lossy(&sql.stderr)
    );
    let expected = fixture
        .database_rows("select customer, count(*), sum(amount) from orders where customer = 'c3' group by customer");
    assert_eq!(
        String::from_utf8_lossy(&sql.stdout),
        format!("customer,n,total\n{}\n", expected[0].replace('|', ","))
    );

    // A job reads the Table: its rows are the database's, exactly (decimals, instants in UTC,
    // dates, arrays, JSON as text).
    let everything = fixture.path("everything");
    let job = fixture.job(
        "everything.yaml",
        &sink_job(
            "everything",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id, customer, amount, ordered_at, shipped_on, array_to_string(tags, ',', 'null') AS tags, attrs FROM orders",
            "",
            "",
            &everything,
        ),
    );
    let result = fixture.run_ok(&job, &[]);
    assert_eq!(result["metrics"]["sources"]["orders"]["rows"], 1000);
    let expected = fixture.database_rows(
        "select id, customer, amount::text, to_char(ordered_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), shipped_on::text,
                array_to_string(tags, ',', 'null'), attrs::text from orders",
    );
    assert_eq!(expected.len(), 1000);
    assert_eq!(
        fixture.output_rows(
            "everything",
            "id, customer, amount, ordered_at, shipped_on, tags, attrs"
        ),
        expected
    );

    // --explain shows the SQL sent: only the columns used, the script's filter pushed down.
    let filtered = fixture.job(
        "filtered.yaml",
        &sink_job(
            "filtered",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id, amount FROM orders WHERE amount > 200 AND customer = 'c3'",
            "",
            "",
            &fixture.path("filtered"),
        ),
    );
    let output = fixture.kglue(&["run", "-f", filtered.to_str().expect("utf-8"), "--explain"]);
    let explain = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{explain}");
    assert!(
        explain.contains("SELECT \"id\", \"customer\", \"amount\" FROM \"public\".\"orders\" WHERE"),
        "{explain}"
    );
    assert!(explain.contains("(\"amount\" > 200.00)"), "{explain}");
    assert!(explain.contains("(\"customer\" = 'c3')"), "{explain}");
    let result = fixture.run_ok(&filtered, &[]);
    let wanted = fixture.database_rows("select id, amount from orders where amount > 200 and customer = 'c3'");
    assert_eq!(fixture.output_rows("filtered", "id, amount"), wanted);
    assert_eq!(
        result["metrics"]["sources"]["orders"]["rows"],
        wanted.len(),
        "the database returned only the matching rows"
    );

    // A partitioned read (bounds read from the table) gives the single read's rows.
    let parallel = fixture.job(
        "parallel.yaml",
        &sink_job(
            "parallel",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id, customer, amount FROM orders",
            "      jdbc: {partitionColumn: id, numPartitions: 4, fetchSize: 100}\n",
            "",
            &fixture.path("parallel"),
        ),
    );
    let output = fixture.kglue(&["run", "-f", parallel.to_str().expect("utf-8"), "--explain"]);
    let explain = String::from_utf8_lossy(&output.stdout);
    assert!(explain.contains("in 4 read(s)"), "{explain}");
    assert!(explain.contains("(\"id\" < 250 OR \"id\" IS NULL)"), "{explain}");
    assert!(explain.contains("(\"id\" >= 250 AND \"id\" < 499)"), "{explain}");
    assert!(explain.contains("(\"id\" >= 748)"), "{explain}");
    fixture.run_ok(&parallel, &[]);
    assert_eq!(
        fixture.output_rows("parallel", "id, customer, amount"),
        fixture.output_rows("everything", "id, customer, amount")
    );

    // A key bookmark: the second run reads only the rows added since the first.
    let bookmarks = fixture.path("bookmarks.json");
    let bookmarks = bookmarks.to_str().expect("utf-8");
    let incremental = fixture.job(
        "incremental.yaml",
        &sink_job(
            "incremental",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id, customer FROM orders",
            "      jdbc: {bookmarkKeys: [id]}\n",
            "  bookmark: {option: Enable}\n",
            &fixture.path("incremental"),
        ),
    );
    let first = fixture.run_ok(&incremental, &["--bookmarks", bookmarks, "--run-id", "r1"]);
    assert_eq!(first["metrics"]["sources"]["orders"]["rows"], 1000);
    assert_eq!(
        first["nextBookmark"]["sources"]["orders"]["key"],
        serde_json::json!([{"column": "id", "value": "1000"}])
    );
    fixture.sql("insert into orders (customer, amount, ordered_at) select 'new', 1, now() from generate_series(1, 25)");
    let second = fixture.run_ok(&incremental, &["--bookmarks", bookmarks, "--run-id", "r2"]);
    assert_eq!(second["metrics"]["sources"]["orders"]["rows"], 25, "only the new rows");
    let rows = fixture.output_rows("incremental", "id, customer");
    assert_eq!(rows.len(), 1025, "every row exactly once over both runs");
    assert_eq!(rows.iter().filter(|r| r.ends_with("|new")).count(), 25);
    let third = fixture.run_ok(&incremental, &["--bookmarks", bookmarks, "--run-id", "r3"]);
    assert_eq!(third["metrics"]["sources"]["orders"]["rows"], 0, "nothing new");
    assert_eq!(fixture.output_rows("incremental", "id").len(), 1025);

    // Pause reads what is new without moving the bookmark; a reset starts from the beginning.
    fixture
        .sql("insert into orders (customer, amount, ordered_at) select 'later', 1, now() from generate_series(1, 5)");
    let paused = fixture.job(
        "paused.yaml",
        &sink_job(
            "incremental",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id, customer FROM orders",
            "      jdbc: {bookmarkKeys: [id]}\n",
            "  bookmark: {option: Pause}\n",
            &fixture.path("paused"),
        ),
    );
    for _ in 0..2 {
        let result = fixture.run_ok(&paused, &["--bookmarks", bookmarks]);
        assert_eq!(
            result["metrics"]["sources"]["orders"]["rows"], 5,
            "the 5 new rows, each time"
        );
        assert!(result.get("nextBookmark").is_none(), "Pause proposes no bookmark");
    }
    let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
    let reset = Command::new(kglue)
        .args(["bookmark", "reset", "--bookmarks", bookmarks])
        .output()
        .expect("kglue bookmark reset");
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let after_reset = fixture.run_ok(&incremental, &["--bookmarks", bookmarks, "--run-id", "r4"]);
    assert_eq!(
        after_reset["metrics"]["sources"]["orders"]["rows"], 1030,
        "from the beginning"
    );

    // A query source: typed as the database types its result, the script's filter applied
    // around it in the database.
    let by_customer = fixture.job(
        "by-customer.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: by-customer}}\nspec:\n  sources:\n    - name: totals\n      jdbc:\n        connection: db\n        query: \"select customer, sum(amount)::numeric(14,2) as total, count(*) as n from orders group by customer\"\n  sql: |\n    CREATE VIEW out AS SELECT customer, total, n FROM totals WHERE n > 100\n  sinks:\n    - name: out\n      storage: {{location: \"file://{}/\", format: Parquet}}\n",
            fixture.path("by-customer").display()
        ),
    );
    let output = fixture.kglue(&["run", "-f", by_customer.to_str().expect("utf-8"), "--explain"]);
    let explain = String::from_utf8_lossy(&output.stdout);
    assert!(
        explain.contains("FROM (select customer, sum(amount)::numeric(14,2) as total, count(*) as n from orders group by customer) AS \"kglue_query\" WHERE ((\"n\" > 100))"),
        "{explain}"
    );
    fixture.run_ok(&by_customer, &[]);
    assert_eq!(
        fixture.output_rows("by-customer", "customer, total, n"),
        fixture.database_rows(
            "select customer, sum(amount)::numeric(14,2), count(*) from orders group by customer having count(*) > 100"
        )
    );

    // A schema change: the next crawl adds the new column and drops the removed one.
    fixture.sql("alter table orders add column channel varchar(10); alter table orders drop column attrs;");
    let report = fixture.crawl(CRAWLER_POSTGRES);
    assert!(report.contains("update     sales.kglue_public_orders"), "{report}");
    assert!(report.contains("new column channel varchar(10)"), "{report}");
    assert!(
        report.contains("column attrs is no longer in kglue.public.orders"),
        "{report}"
    );
    let orders = fixture.table("sales.kglue-public-orders");
    assert!(columns(&orders).contains(&"channel varchar(10)".to_string()));
    assert!(!columns(&orders).iter().any(|c| c.starts_with("attrs ")));

    // Bad inputs, each named.
    let bad_key = fixture.job(
        "bad-key.yaml",
        &sink_job(
            "bad-key",
            "kglue_public_orders",
            "CREATE VIEW out AS SELECT id FROM orders",
            "      jdbc: {bookmarkKeys: [tags]}\n",
            "  bookmark: {option: Enable}\n",
            &fixture.path("bad-key"),
        ),
    );
    let error = fixture.run_failing(&bad_key);
    assert!(
        error.contains("spec.sources[0].jdbc.bookmarkKeys: column \"tags\" is array<string>, which has no order a bookmark can rely on"),
        "{error}"
    );
    let unmapped = fixture.job(
        "unmapped.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: unmapped}}\nspec:\n  sources:\n    - name: orders\n      storage: {{location: kglue.public.orders, format: Jdbc, connection: db}}\n  sql: |\n    CREATE VIEW out AS SELECT id FROM orders\n  sinks:\n    - name: out\n      storage: {{location: \"file://{}/\", format: Parquet}}\n",
            fixture.path("unmapped").display()
        ),
    );
    let error = fixture.run_failing(&unmapped);
    assert!(
        error.contains("column spot (point) of kglue.public.orders: point has no Glue type"),
        "{error}"
    );
    fixture.sql("drop view big_orders");
    let gone = fixture.job(
        "gone.yaml",
        &sink_job(
            "gone",
            "kglue_public_big_orders",
            "CREATE VIEW out AS SELECT id FROM orders",
            "",
            "",
            &fixture.path("gone"),
        ),
    );
    let error = fixture.run_failing(&gone);
    assert!(
        error.contains("relation \"public.big_orders\" does not exist"),
        "{error}"
    );
    assert!(!fixture.path("gone").exists(), "nothing written");
}

#[test]
fn a_mariadb_database_crawls_and_reads_with_its_own_types() {
    let fixture = Fixture::new(Engine::Mysql);
    fixture.sql(
        "create table orders (
           id int unsigned not null auto_increment primary key, paid tinyint(1), amount decimal(12,2),
           ordered_at datetime(6), shipped date, status enum('new','paid'), big bigint unsigned, yr year,
           at_time time);
         insert into orders (paid, amount, ordered_at, shipped, status, big, yr) values
           (1, 10.50, '2024-01-01 10:00:00.123456', '2024-01-02', 'new', 18446744073709551615, 2024),
           (0, -3.25, '2024-02-01 00:00:00', null, 'paid', 0, 1999),
           (null, null, null, null, null, null, null);",
    );
    let report = fixture.crawl(
        "apiVersion: kglue.dev/v1alpha1
kind: Crawler
metadata: {name: shop}
spec:
  databaseName: sales
  tablePrefix: maria_
  jdbcTargets:
    - {connectionName: db, path: kglue/%}
",
    );
    assert!(report.contains("create     sales.maria_kglue_orders"), "{report}");
    assert!(
        report.contains("column at_time: left out of the table: time has no Glue type"),
        "{report}"
    );
    let orders = fixture.table("sales.maria-kglue-orders");
    assert_eq!(orders.spec.storage.location, "kglue.orders");
    assert_eq!(
        columns(&orders),
        [
            "id bigint",
            "paid boolean",
            "amount decimal(12,2)",
            "ordered_at timestamp",
            "shipped date",
            "status string",
            "big decimal(20,0)",
            "yr int"
        ]
    );
    assert_eq!(orders.spec.parameters["classification"], "mysql");

    let job = fixture.job(
        "read.yaml",
        &sink_job(
            "read",
            "maria_kglue_orders",
            "CREATE VIEW out AS SELECT id, paid, amount, ordered_at, shipped, status, big, yr FROM orders WHERE id >= 1",
            "      jdbc: {partitionColumn: id, numPartitions: 2}\n",
            "",
            &fixture.path("read"),
        ),
    );
    let result = fixture.run_ok(&job, &[]);
    assert_eq!(result["metrics"]["sources"]["orders"]["rows"], 3);
    assert_eq!(
        fixture.output_rows("read", "id, paid, amount, ordered_at, shipped, status, big, yr"),
        [
            "1|True|10.50|2024-01-01 10:00:00.123456|2024-01-02|new|18446744073709551615|2024",
            "2|False|-3.25|2024-02-01 00:00:00|NULL|paid|0|1999",
            "3|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );

    let query = fixture.job(
        "query.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: query}}\nspec:\n  sources:\n    - name: totals\n      jdbc: {{connection: db, query: \"select status, sum(amount) as total, count(*) as n from orders group by status\"}}\n  sql: |\n    CREATE VIEW out AS SELECT status, total, n FROM totals\n  sinks:\n    - name: out\n      storage: {{location: \"file://{}/\", format: Parquet}}\n",
            fixture.path("query").display()
        ),
    );
    fixture.run_ok(&query, &[]);
    assert_eq!(
        fixture.output_rows("query", "status, total, n"),
        fixture.database_rows("select status, sum(amount), count(*) from orders group by status")
    );
}

/// A job reading `orders` (object files are not needed: the source is the database) and writing
/// `sql`'s `out` into the database table `target` with `sink_extra` (writeMode, jdbc options).
fn database_sink_job(name: &str, sql: &str, target: &str, sink_extra: &str) -> String {
    format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  sources:\n    - name: orders\n      storage: {{location: kglue.public.orders, format: Jdbc, connection: db}}\n  sql: |\n    {sql}\n  sinks:\n    - name: out\n      storage: {{location: {target}, format: Jdbc, connection: db}}\n{sink_extra}"
    )
}

#[test]
fn each_postgres_sink_mode_leaves_exactly_the_expected_rows_even_after_a_killed_run_and_a_retry() {
    let fixture = Fixture::new(Engine::Postgres);
    fixture.sql(
        "create table orders (id bigint primary key, customer text not null, amount numeric(12,2), day date not null);
         insert into orders select i, 'c' || (i % 7), (i * 37 % 1000) / 4.0, date '2024-01-01' + i % 10
           from generate_series(1, 300000) i;
         create table copies (id bigint primary key, customer text, amount numeric(12,2), day date);",
    );
    let copy_sql = "CREATE VIEW out AS SELECT id, customer, amount, day FROM orders";

    // Append, killed while it loads its staging table: the target is untouched; the retry of the
    // same run writes every row once.
    let append = fixture.job(
        "append.yaml",
        &database_sink_job("append", copy_sql, "kglue.public.copies", ""),
    );
    let staging = kill_while_loading(&fixture, &append, "r1", "copies");
    assert_eq!(
        fixture.sql("select count(*) from copies").trim(),
        "0",
        "the target is untouched"
    );
    let result = fixture.run_ok(&append, &["--run-id", "r1", "--attempt", "1"]);
    assert_eq!(result["metrics"]["sinks"]["out"]["rows"], 300_000);
    assert_eq!(
        fixture.sql("select count(*), count(distinct id) from copies").trim(),
        "300000\t300000"
    );
    assert_eq!(
        fixture
            .sql(&format!("select to_regclass('public.{staging}') is null"))
            .trim(),
        "t",
        "the staging table is gone after the commit"
    );
    // The same run again is refused, not doubled.
    let output = fixture.run(&append, &["--run-id", "r1", "--attempt", "2"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        text.contains("run r1 already wrote sink out into kglue.public.copies"),
        "{text}"
    );

    // A row the table refuses (its primary key) fails the run naming the constraint and the
    // key; nothing of the run is in the table.
    let clash = fixture.job(
        "clash.yaml",
        &database_sink_job(
            "clash",
            "CREATE VIEW out AS SELECT id + 299999 AS id, customer, amount, day FROM orders WHERE id <= 5",
            "kglue.public.copies",
            "",
        ),
    );
    let error = fixture.run_failing(&clash);
    assert!(error.contains("copies_pkey"), "{error}");
    assert!(error.contains("Key (id)=(300000) already exists"), "{error}");
    assert_eq!(fixture.sql("select count(*) from copies").trim(), "300000");
    assert_eq!(
        fixture
            .sql("select count(*) from pg_tables where tablename like 'kglue_stage_%'")
            .trim(),
        "0",
        "the failed run left no staging table"
    );

    // Upsert into a table the sink creates, keyed by day: a second run after the data changed
    // updates the days in place.
    let summary_sql =
        "CREATE VIEW out AS SELECT day, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY day";
    let upsert = fixture.job(
        "upsert.yaml",
        &database_sink_job(
            "upsert",
            summary_sql,
            "kglue.public.daily",
            "      writeMode: Upsert\n      jdbc: {upsertKeys: [day], createTable: true}\n",
        ),
    );
    fixture.run_ok(&upsert, &[]);
    let expected = "select day, count(*), sum(amount) from orders group by day";
    assert_eq!(
        fixture.database_rows("select day, orders, revenue from daily"),
        fixture.database_rows(expected)
    );
    fixture.sql("update orders set amount = amount + 1 where day = date '2024-01-03'; insert into orders values (300001, 'z', 5, date '2024-02-01');");
    fixture.run_ok(&upsert, &[]);
    assert_eq!(
        fixture.database_rows("select day, orders, revenue from daily"),
        fixture.database_rows(expected)
    );
    assert_eq!(fixture.sql("select count(*) from daily").trim(), "11");

    // Overwrite replaces every row in one transaction.
    let overwrite = fixture.job(
        "overwrite.yaml",
        &database_sink_job(
            "overwrite",
            "CREATE VIEW out AS SELECT day, count(*) AS orders, sum(amount) AS revenue FROM orders WHERE customer = 'c1' GROUP BY day",
            "kglue.public.daily",
            "      writeMode: Overwrite\n",
        ),
    );
    fixture.run_ok(&overwrite, &[]);
    assert_eq!(
        fixture.database_rows("select day, orders, revenue from daily"),
        fixture.database_rows("select day, count(*), sum(amount) from orders where customer = 'c1' group by day")
    );

    // Overwrite and Upsert, each killed while loading: the table keeps its rows; the retry
    // replaces them, then updates them, once.
    let sums = "select count(*), count(distinct id), sum(amount) from copies";
    for (name, mode, plus) in [("replace", "Overwrite", 1), ("update", "Upsert", 2)] {
        let before = fixture.sql(sums);
        let job = fixture.job(
            &format!("{name}.yaml"),
            &database_sink_job(
                name,
                &format!("CREATE VIEW out AS SELECT id, customer, amount + {plus} AS amount, day FROM orders WHERE id <= 300000"),
                "kglue.public.copies",
                &format!("      writeMode: {mode}\n"),
            ),
        );
        let run_id = format!("kill-{name}");
        kill_while_loading(&fixture, &job, &run_id, "copies");
        assert_eq!(fixture.sql(sums), before, "{mode} killed: the table is as it was");
        fixture.run_ok(&job, &["--run-id", &run_id, "--attempt", "1"]);
        assert_eq!(
            fixture.sql(sums),
            fixture.sql(&format!(
                "select count(*), count(distinct id), sum(amount + {plus}) from orders where id <= 300000"
            )),
            "{mode} retried: every row once, with this run's values"
        );
    }

    // A decided commit whose transaction never committed is finished from its staging table,
    // once, however often finishing is tried.
    let write = kglue_jdbc::write::SinkWrite {
        target: kglue_crds::connection::JdbcTableName {
            database: "kglue".into(),
            schema: Some("public".into()),
            table: "daily".into(),
        },
        columns: vec!["day".into(), "orders".into(), "revenue".into()],
        apply: kglue_jdbc::write::Apply::Upsert {
            keys: vec!["day".into()],
        },
        run_id: "settled".into(),
        sink: "out".into(),
        create_table: None,
    };
    let stage = write.staging_table();
    fixture.sql(&format!(
        "create table {stage} (day date, orders bigint, revenue numeric(12,2)); insert into {stage} values (date '2030-01-01', 1, 9.99);"
    ));
    let endpoint = endpoint(&fixture);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for _ in 0..2 {
        runtime
            .block_on(kglue_jdbc::write::finish(&endpoint, &write))
            .expect("finishing is idempotent");
    }
    assert_eq!(
        fixture
            .sql("select count(*) from daily where day = date '2030-01-01'")
            .trim(),
        "1"
    );
    assert_eq!(
        fixture
            .sql("select count(*) from kglue_commits where run_id = 'settled'")
            .trim(),
        "1"
    );
}

/// Starts `job` as run `run_id` and kills it while it loads its staging table for `table`
/// (seen in pg_stat_activity); returns the staging table's name.
fn kill_while_loading(fixture: &Fixture, job: &Path, run_id: &str, table: &str) -> String {
    let staging = kglue_jdbc::write::SinkWrite {
        target: kglue_crds::connection::JdbcTableName {
            database: "kglue".into(),
            schema: Some("public".into()),
            table: table.into(),
        },
        columns: vec![],
        apply: kglue_jdbc::write::Apply::Append,
        run_id: run_id.into(),
        sink: "out".into(),
        create_table: None,
    }
    .staging_table();
    let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
    let mut child = Command::new(kglue)
        .args([
            "run",
            "-f",
            job.to_str().expect("utf-8"),
            "--run-id",
            run_id,
            "--catalog",
        ])
        .arg(fixture.path("catalog"))
        .arg("--secrets-dir")
        .arg(fixture.path("secrets"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kglue starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut killed = false;
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("poll").is_some() {
            break;
        }
        let loading = fixture.sql(&format!(
            "select count(*) from pg_stat_activity where query like 'COPY \"public\".\"{staging}\"%'"
        ));
        if loading.trim() != "0" {
            child.kill().expect("kill");
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait().expect("reap");
    assert!(killed, "{job:?} was not caught loading its staging table");
    staging
}

fn endpoint(fixture: &Fixture) -> kglue_jdbc::Endpoint {
    kglue_jdbc::Endpoint::resolve(
        &fixture.server.jdbc_connection(),
        &mut kglue_e2e::databases::Credentials,
    )
    .expect("an endpoint")
}

/// Every Arrow type a sink writes reaches PostgreSQL's binary COPY as the value itself: the types
/// PostgreSQL has no wire form for (nanoseconds, Date64, views) cast first, text with every
/// character COPY's text form would escape, decimals at 38 digits, nulls in every column.
#[test]
fn every_output_type_lands_in_a_postgres_table_exactly() {
    let fixture = Fixture::new(Engine::Postgres);
    fixture.sql(
        "create table orders (id bigint primary key, amount numeric(12,2), note text, day date, at timestamptz);
         insert into orders values
           (1, 12.50, 'tab\there, newline\nthere, back\\slash, quote '' \", ünïcødé 🦀', date '2024-02-29', timestamptz '2024-02-29 12:34:56.123456+00'),
           (2, -0.01, '', date '1970-01-01', timestamptz '1999-12-31 23:59:59.999999+00'),
           (3, null, null, null, null),
           (4, 9999999999.99, '\\N', date '0001-01-01', timestamptz '2000-01-01 00:00:00+00');",
    );
    let job = fixture.job(
        "typed.yaml",
        &database_sink_job(
            "typed",
            "CREATE VIEW out AS SELECT id, CAST(id AS TINYINT) AS tiny, CAST(id AS INT) AS i4, CAST(id AS FLOAT) / 3 AS f4,
           CAST(id AS DOUBLE) / 3 AS f8, amount, CAST(amount AS DECIMAL(38,12)) * 1000000000000 AS big, note,
           arrow_cast(note, 'Utf8View') AS note_view, CAST(note AS BYTEA) AS raw,
           arrow_cast(CAST(note AS BYTEA), 'BinaryView') AS raw_view, day, arrow_cast(day, 'Date64') AS day64, at,
           arrow_cast(at, 'Timestamp(Nanosecond, None)') AS at_ns, id % 2 = 0 AS even FROM orders",
            "kglue.public.typed",
            "      jdbc: {createTable: true}\n",
        ),
    );
    let result = fixture.run_ok(&job, &[]);
    assert_eq!(result["metrics"]["sinks"]["out"]["rows"], 4);
    assert_eq!(
        fixture
            .sql(
                "select string_agg(column_name || ' ' || format_type(atttypid, atttypmod), ', ' order by attnum)
               from information_schema.columns c join pg_attribute a
                 on a.attrelid = 'typed'::regclass and a.attname = c.column_name
              where c.table_name = 'typed'"
            )
            .trim(),
        "id bigint, tiny smallint, i4 integer, f4 real, f8 double precision, amount numeric(12,2), big numeric(38,12), \
         note text, note_view text, raw bytea, raw_view bytea, day date, day64 date, at timestamp without time zone, \
         at_ns timestamp without time zone, even boolean"
    );
    let written = fixture.sql(
        "select id, tiny, i4, f4, f8, amount, big, note, note_view, raw, raw_view, day, day64, at, at_ns, even
           from typed order by id",
    );
    let expected = fixture.sql(
        "select id, id::smallint, id::int, (id::real / 3)::real, id::float8 / 3, amount, (amount * 1000000000000)::numeric(38,12),
                note, note, convert_to(note, 'UTF8'), convert_to(note, 'UTF8'), day, day,
                at at time zone 'UTC', at at time zone 'UTC', id % 2 = 0
           from orders order by 1",
    );
    assert_eq!(written, expected);
    assert!(written.contains("ünïcødé 🦀"), "{written}");
    assert!(written.contains("9999999999990000000000.000000000000"), "{written}");
}

#[test]
fn mariadb_sinks_append_and_upsert_in_one_transaction() {
    let fixture = Fixture::new(Engine::Mysql);
    fixture.sql(
        "create table orders (id int primary key, customer varchar(20), amount decimal(12,2), at datetime(6));
         insert into orders values (1, 'a', 10.50, '2024-01-01 10:00:00.5'), (2, 'b', 3.25, '2024-01-02 00:00:00'), (3, 'a', null, null);
         create table totals (customer varchar(20) primary key, total decimal(12,2), n bigint);",
    );
    let job = |name: &str, sql: &str, target: &str, extra: &str| {
        format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  sources:\n    - name: orders\n      storage: {{location: kglue.orders, format: Jdbc, connection: db}}\n  sql: |\n    {sql}\n  sinks:\n    - name: out\n      storage: {{location: {target}, format: Jdbc, connection: db}}\n{extra}"
        )
    };
    let upsert = fixture.job(
        "upsert.yaml",
        &job(
            "upsert",
            "CREATE VIEW out AS SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer",
            "kglue.totals",
            "      writeMode: Upsert\n",
        ),
    );
    fixture.run_ok(&upsert, &[]);
    fixture.sql("insert into orders values (4, 'b', 1.00, now())");
    fixture.run_ok(&upsert, &[]);
    assert_eq!(
        fixture.database_rows("select customer, total, n from totals"),
        ["a|10.50|2", "b|4.25|2"]
    );
    let copy = fixture.job(
        "copy.yaml",
        &job(
            "copy",
            "CREATE VIEW out AS SELECT id, customer, amount, at FROM orders",
            "kglue.copies",
            "      jdbc: {createTable: true, upsertKeys: [id]}\n",
        ),
    );
    let result = fixture.run_ok(&copy, &[]);
    assert_eq!(result["metrics"]["sinks"]["out"]["rows"], 4);
    assert_eq!(
        fixture.database_rows("select id, customer, amount, at from copies where id < 4"),
        fixture.database_rows("select id, customer, amount, at from orders where id < 4")
    );
}

/// `examples/database-pipeline` as it is in Git, run locally: its Connection pointed at the local
/// PostgreSQL (database `shop`) and its lake at a folder, as a dev overlay would.
#[test]
fn the_database_pipeline_example_crawls_copies_new_orders_and_upserts_the_summary() {
    let fixture = Fixture::new(Engine::Postgres);
    fixture.sql("create database shop");
    let shop = |sql: &str| {
        fixture
            .server
            .sql_in("shop", sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    shop(
        "create table customers (customer_id bigint primary key, name text not null);
         create table orders (order_id bigint generated always as identity primary key,
           customer_id bigint references customers, status text not null, amount numeric(12,2) not null,
           ordered_at timestamptz not null);
         insert into customers select i, 'customer ' || i from generate_series(1, 50) i;
         insert into orders (customer_id, status, amount, ordered_at)
           select 1 + i % 50, (array['paid', 'shipped', 'cancelled'])[1 + i % 3], (i % 400) / 4.0 + 1,
                  timestamptz '2024-01-01 00:00:00+00' + i * interval '25 minutes'
           from generate_series(1, 5000) i;",
    );
    let lake = fixture.path("lake");
    let example = kglue_crds::crate_dir!().join("../examples/database-pipeline");
    let local = |file: &str| {
        std::fs::read_to_string(example.join(file))
            .expect("an example file")
            .replace(
                "jdbc:postgresql://shop-db.shop.svc.cluster.local:5432/shop",
                &format!("jdbc:postgresql://127.0.0.1:{}/shop", fixture.server.port()),
            )
            .replace("s3://shop-lake/", &format!("file://{}/", lake.display()))
            .replace("        connection: shop-lake\n", "")
    };
    for file in ["databases.yaml", "connections.yaml"] {
        fixture.write(&format!("catalog/{file}"), &local(file));
    }
    fixture.write("secrets/shop-db-credentials/username", USER);
    fixture.write("secrets/shop-db-credentials/password", PASSWORD);
    fixture.write(
        "secrets/shop-db-ca/ca.crt",
        &std::fs::read_to_string(fixture.server.ca_certificate()).expect("the server's CA"),
    );
    let copy = fixture.job("orders-to-lake.yaml", &local("job-orders-to-lake.yaml"));
    let summary = fixture.job("daily-revenue.yaml", &local("job-daily-revenue.yaml"));
    let bookmarks = fixture.path("bookmarks.json");
    let bookmarks = bookmarks.to_str().expect("utf-8");
    let expected = "select (ordered_at at time zone 'UTC')::date, count(*), sum(amount) from orders where status <> 'cancelled' group by 1";

    let report = fixture.crawl(&local("crawler.yaml"));
    assert!(report.contains("create     shop_raw.shop_public_orders"), "{report}");
    assert!(report.contains("create     shop_raw.shop_public_customers"), "{report}");
    let first = fixture.run_ok(&copy, &["--bookmarks", bookmarks]);
    assert_eq!(first["metrics"]["sources"]["orders"]["rows"], 5000);
    fixture.run_ok(&summary, &[]);
    let daily = |f: &Fixture| {
        let mut rows: Vec<String> = f
            .server
            .sql_in("shop", "select day, orders, revenue from daily_revenue")
            .expect("the summary table")
            .lines()
            .map(|l| l.replace('\t', "|"))
            .collect();
        rows.sort();
        rows
    };
    let database = |f: &Fixture| {
        let mut rows: Vec<String> = f
            .server
            .sql_in("shop", expected)
            .expect("the database's own answer")
            .lines()
            .map(|l| l.replace('\t', "|"))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(daily(&fixture), database(&fixture));

    // New orders: the next nightly run copies only them, and the summary follows.
    shop(
        "insert into orders (customer_id, status, amount, ordered_at)
           select 1 + i % 50, 'paid', 10, timestamptz '2024-03-20 00:00:00+00' + i * interval '1 hour'
           from generate_series(1, 500) i;",
    );
    let report = fixture.crawl(&local("crawler.yaml"));
    assert!(
        report.contains("skipped shop.public.kglue_commits: excluded by \"shop/public/kglue_*\""),
        "kglue's own bookkeeping table stays out of the catalog: {report}"
    );
    assert!(
        report.contains("create     shop_raw.shop_public_daily_revenue"),
        "{report}"
    );
    let second = fixture.run_ok(&copy, &["--bookmarks", bookmarks]);
    assert_eq!(
        second["metrics"]["sources"]["orders"]["rows"], 500,
        "only the new orders"
    );
    fixture.run_ok(&summary, &[]);
    assert_eq!(daily(&fixture), database(&fixture));
    assert_eq!(fixture.output_rows("lake/orders", "order_id").len(), 5500);
}

/// A read whose session the database ends mid-way (an administrator's kill, a failover) fails
/// the run cleanly with nothing committed, and the retry of the run writes every row once.
#[test]
fn a_connection_dropped_mid_read_fails_the_run_and_the_retry_is_exactly_once() {
    let fixture = Fixture::new(Engine::Postgres);
    fixture.sql(
        "create table events (id bigint primary key, payload text);
         insert into events select i, repeat('x', 200) from generate_series(1, 400000) i;",
    );
    let out = fixture.path("out");
    let job = fixture.job(
        "events.yaml",
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: events}}\nspec:\n  sources:\n    - name: events\n      storage: {{location: kglue.public.events, format: Jdbc, connection: db}}\n      jdbc: {{fetchSize: 1000}}\n  sql: |\n    CREATE VIEW out AS SELECT id, payload FROM events\n  sinks:\n    - name: out\n      storage: {{location: \"file://{}/\", format: Parquet}}\n",
            out.display()
        ),
    );
    let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
    let child = Command::new(kglue)
        .args([
            "run",
            "-f",
            job.to_str().expect("utf-8"),
            "--run-id",
            "r1",
            "--json",
            "--catalog",
        ])
        .arg(fixture.path("catalog"))
        .arg("--secrets-dir")
        .arg(fixture.path("secrets"))
        .env("KGLUE_SPILL_DIR", fixture.path("spill"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kglue starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut terminated = false;
    while std::time::Instant::now() < deadline && !terminated {
        let ended = fixture.sql(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity
             where application_name = 'kglue' and query like 'COPY (SELECT%events%' and pid <> pg_backend_pid()",
        );
        terminated = ended.trim() != "0";
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("kglue ends");
    assert!(terminated, "the read was not caught running");
    assert!(!output.status.success(), "the run cannot succeed without its rows");
    let result: Value = serde_json::from_slice(&output.stdout).expect("a JSON result");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("source events"), "{error}");
    // The server's FATAL message, or (when the reset overtakes it) the closed connection.
    assert!(
        error.contains("terminating connection due to administrator command")
            || error.contains("the connection closed"),
        "{error}"
    );
    assert!(
        !out.exists() || fixture.output_rows("out", "id").is_empty(),
        "nothing of the failed attempt is committed"
    );

    let retry = fixture.run_ok(&job, &["--run-id", "r1", "--attempt", "1"]);
    assert_eq!(retry["metrics"]["sinks"]["out"]["rows"], 400_000);
    let ids = fixture.output_rows("out", "count(*), count(DISTINCT id)");
    assert_eq!(ids, ["400000|400000"]);
}
