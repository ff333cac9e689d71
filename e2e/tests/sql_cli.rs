//! `kglue sql`, the built binary over a catalog directory: one-shot queries joining two tables of
//! different formats, a partition filter that reads one object of a table with 10,000
//! partitions, refusals of writes and paths, errors that name the position or the table, and
//! the interactive prompt driven through a pseudo-terminal; and `kglue serve`, the same catalog
//! over the PostgreSQL wire protocol, queried by psql and psycopg.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kglue_e2e::clients::Login;

struct Lake {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Lake {
    fn new() -> Lake {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let lake = Lake { _dir: dir, root };
        lake.write(
            "catalog/databases.yaml",
            "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: sales}\nspec: {databaseName: sales}\n---\napiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: lake}\nspec: {databaseName: lake}\n",
        );
        lake.write(
            "data/orders/day=2024-01-01/part-0.csv",
            "id,customer_id,amount\n1,10,5.50\n2,11,7.25\n",
        );
        lake.write(
            "data/orders/day=2024-01-02/part-0.csv",
            "id,customer_id,amount\n3,10,1.00\n",
        );
        lake.write(
            "data/customers/part-0.json",
            "{\"customer_id\": 10, \"name\": \"Ada\"}\n{\"customer_id\": 11, \"name\": \"Grace\"}\n",
        );
        lake.table(
            "sales",
            "orders",
            "data/orders",
            "Csv",
            "[{name: id, type: bigint}, {name: customer_id, type: bigint}, {name: amount, type: 'decimal(10,2)'}]",
            "[{name: day, type: date}]",
        );
        lake.table(
            "sales",
            "customers",
            "data/customers",
            "Json",
            "[{name: customer_id, type: bigint}, {name: name, type: string}]",
            "[]",
        );
        lake
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn table(&self, database: &str, table: &str, folder: &str, format: &str, columns: &str, keys: &str) {
        self.write(
            &format!("catalog/{database}.{table}.yaml"),
            &format!(
                "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: {database}.{table}}}\nspec:\n  databaseName: {database}\n  tableName: {table}\n  storage: {{location: \"file://{}/\", format: {format}}}\n  columns: {columns}\n  partitionKeys: {keys}\n",
                self.path(folder).display()
            ),
        );
    }

    fn command(&self) -> Command {
        let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
        let mut command = Command::new(kglue);
        command.arg("sql").arg("--catalog").arg(self.path("catalog"));
        command
    }

    fn sql(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("kglue sql runs")
    }

    fn sql_ok(&self, args: &[&str]) -> String {
        let output = self.sql(args);
        assert!(
            output.status.success(),
            "kglue sql {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    fn sql_failing(&self, args: &[&str]) -> (String, String) {
        let output = self.sql(args);
        assert!(!output.status.success(), "kglue sql {args:?} should fail");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

const JOIN: &str = "SELECT c.name, sum(o.amount) AS total, count(*) AS n, min(o.day) AS first_day
  FROM sales.orders o JOIN sales.customers c ON o.customer_id = c.customer_id
  GROUP BY c.name ORDER BY c.name";

#[test]
fn one_shot_queries_join_tables_of_the_catalog_in_each_output_format() {
    let lake = Lake::new();
    assert_eq!(
        lake.sql_ok(&["--format", "csv", "-c", JOIN]),
        "name,total,n,first_day\nAda,6.50,2,2024-01-01\nGrace,7.25,1,2024-01-01\n"
    );
    assert_eq!(
        lake.sql_ok(&["--format", "json", "-c", JOIN]),
        "[{\"name\":\"Ada\",\"total\":6.50,\"n\":2,\"first_day\":\"2024-01-01\"},{\"name\":\"Grace\",\"total\":7.25,\"n\":1,\"first_day\":\"2024-01-01\"}]\n"
    );
    let table = lake.sql_ok(&["-c", JOIN]);
    assert!(table.contains("| name  | total | n | first_day  |"), "{table}");
    assert!(table.ends_with("(2 rows)\n"), "{table}");

    // A file of statements, with a view of the session's own and a default database.
    lake.write(
        "queries.sql",
        "-- the big spenders\nCREATE VIEW spend AS\n  SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id;\nSELECT customer_id FROM spend WHERE total > 7 ORDER BY 1;\n",
    );
    let queries = lake.path("queries.sql");
    assert_eq!(
        lake.sql_ok(&["-d", "sales", "--format", "csv", "-f", queries.to_str().expect("utf-8")]),
        "customer_id\n11\n"
    );
    // SHOW TABLES lists the catalog without reading any table.
    let shown = lake.sql_ok(&["--format", "csv", "--timing", "-c", "SHOW TABLES"]);
    assert!(shown.contains("kglue,sales,customers,BASE TABLE"), "{shown}");
    assert!(shown.contains("read 0 objects (0 B) after 0 listings"), "{shown}");
}

#[test]
fn bad_sql_writes_and_paths_fail_naming_what_is_wrong() {
    let lake = Lake::new();
    let (_, error) = lake.sql_failing(&["-c", "SELECT id FROM sales.orders WHER id = 1"]);
    assert!(error.contains("Line: 1, Column: 34"), "{error}");
    let (_, error) = lake.sql_failing(&["-c", "SELECT * FROM sales.refunds"]);
    assert!(error.contains("sales.refunds"), "{error}");
    let (_, error) = lake.sql_failing(&["-c", "SELECT nope FROM sales.orders"]);
    assert!(error.contains("nope"), "{error}");
    for (statement, kind) in [
        ("COPY (SELECT 1) TO '/tmp/kglue-sql-out.csv'", "COPY"),
        ("INSERT INTO sales.orders VALUES (9, 9, 9.00)", "INSERT"),
        (
            "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("DROP TABLE sales.orders", "DROP TABLE"),
    ] {
        let (_, error) = lake.sql_failing(&["-c", statement]);
        assert!(
            error.contains(&format!("ERROR: {kind} is not allowed in a SQL session")),
            "{statement}: {error}"
        );
    }
    assert!(!Path::new("/tmp/kglue-sql-out.csv").exists());
    // A path in FROM reaches no file: the session has no local file system but its tables'.
    let (out, error) = lake.sql_failing(&["-c", "SELECT * FROM '/etc/passwd'"]);
    assert!(!out.contains("root:") && !error.contains("root:"), "{out}{error}");
    // A bad table declaration fails the statement that reads it, naming the table.
    lake.write(
        "catalog/lake.broken.yaml",
        "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: lake.broken}\nspec:\n  databaseName: lake\n  tableName: broken\n  storage: {location: \"file:///nowhere/\", format: Avro}\n  columns: [{name: id, type: bigint}]\n",
    );
    let (_, error) = lake.sql_failing(&["-c", "SELECT * FROM lake.broken"]);
    assert!(error.contains("table lake.broken"), "{error}");
    // A Table without columns is named with what to do; a view may not hide a catalog table.
    lake.write(
        "catalog/lake.bare.yaml",
        "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: lake.bare}\nspec:\n  databaseName: lake\n  tableName: bare\n  storage: {location: \"file:///nowhere/\", format: Csv}\n",
    );
    let (_, error) = lake.sql_failing(&["-c", "SELECT * FROM lake.bare"]);
    assert!(
        error.contains("table lake.bare: it declares no columns; crawl it"),
        "{error}"
    );
    let (_, error) = lake.sql_failing(&["-d", "sales", "-c", "CREATE VIEW orders AS SELECT 1"]);
    assert!(error.contains("Table 'orders' already exists"), "{error}");
    let (_, error) = lake.sql_failing(&["-d", "sales", "-c", "CREATE OR REPLACE VIEW orders AS SELECT 1"]);
    assert!(
        error.contains("sales.orders is a catalog table; name the view otherwise"),
        "{error}"
    );
    assert!(
        lake.sql_ok(&["-c", "SELECT count(*) FROM sales.orders"])
            .contains("| 3 ")
    );
    assert!(
        lake.sql_ok(&["-c", "SELECT count(*) FROM sales.orders"])
            .contains("| 3 ")
    );
}

/// 10,000 partitions; a filter on the key lists one folder and reads one object.
#[test]
fn a_partition_filter_reads_only_the_matching_partition_of_ten_thousand() {
    let lake = Lake::new();
    for p in 0..10_000 {
        lake.write(
            &format!("data/events/p={p}/part-0.csv"),
            &format!("id,kind\n{p},k{}\n", p % 7),
        );
    }
    lake.table(
        "lake",
        "events",
        "data/events",
        "Csv",
        "[{name: id, type: bigint}, {name: kind, type: string}]",
        "[{name: p, type: int}]",
    );
    let one = lake.sql_ok(&[
        "--timing",
        "--format",
        "csv",
        "-c",
        "SELECT id, kind FROM lake.events WHERE p = 4242",
    ]);
    let mut lines = one.lines();
    assert_eq!(lines.next(), Some("id,kind"));
    assert_eq!(lines.next(), Some("4242,k0"));
    let timing = lines.next().expect("a timing line");
    assert!(timing.contains("read 1 object ("), "{one}");
    assert!(timing.ends_with("after 1 listing"), "{one}");
    eprintln!("one partition of 10,000: {timing}");

    let all = lake.sql_ok(&[
        "--timing",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM lake.events",
    ]);
    assert!(all.starts_with("n\n10000\n"), "{all}");
    assert!(all.contains("read 10000 objects"), "{all}");
    eprintln!("every partition: {}", all.lines().last().unwrap_or_default());

    // A range names no folder: the location's folders are listed, then the three kept ones.
    let range = "SELECT count(*) AS n FROM lake.events WHERE p BETWEEN 4240 AND 4242";
    let listed = lake.sql_ok(&["--timing", "--format", "csv", "-c", range]);
    assert!(listed.starts_with("n\n3\n"), "{listed}");
    assert!(listed.contains("read 3 objects ("), "{listed}");
    assert!(listed.trim_end().ends_with("after 4 listings"), "{listed}");
    eprintln!("a range, listed: {}", listed.lines().last().unwrap_or_default());

    // With a crawler's partition index in the Table's status the range runs over the index: the
    // index is one more object, and only the three partitions are listed. A partition folder
    // the index does not list (written after the crawl, not by a kglue job) is read after the
    // next crawl, as Athena reads Glue's catalog.
    lake.write("data/events/p=4241/part-1.csv", "id,kind\n4241,late\n");
    let partitions: Vec<[String; 1]> = (0..10_000).filter(|p| *p != 4241).map(|p| [p.to_string()]).collect();
    lake.write(
        "state/crawler/partitions/lake.events.json",
        &serde_json::to_string(&partitions).expect("json"),
    );
    let catalog = lake.path("catalog/lake.events.yaml");
    let mut manifest = std::fs::read_to_string(&catalog).expect("the Table");
    manifest.push_str(&format!(
        "status:\n  partitions: {{count: 9999, index: \"file://{}\"}}\n",
        lake.path("state/crawler/partitions/lake.events.json").display()
    ));
    std::fs::write(&catalog, manifest).expect("the Table with its index");
    let indexed = lake.sql_ok(&["--timing", "--format", "csv", "-c", range]);
    assert!(indexed.starts_with("n\n2\n"), "{indexed}");
    assert!(indexed.contains("read 3 objects ("), "{indexed}");
    assert!(indexed.trim_end().ends_with("after 2 listings"), "{indexed}");
    eprintln!(
        "a range, from the index: {}",
        indexed.lines().last().unwrap_or_default()
    );
    // Every partition of the index: one listing of the location beats 9,999 of one folder each.
    let all = lake.sql_ok(&[
        "--timing",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM lake.events",
    ]);
    assert!(all.starts_with("n\n9999\n"), "{all}");
    assert!(all.contains("read 10000 objects"), "{all}");
    assert!(all.trim_end().ends_with("after 1 listing"), "{all}");
}

#[test]
fn the_prompt_runs_multi_line_statements_lists_tables_reports_errors_and_quits() {
    let lake = Lake::new();
    let mut command = lake.command();
    // No history file of the person running the tests is read or written.
    std::fs::create_dir_all(lake.path("home")).expect("a home folder");
    command.env("HOME", lake.path("home"));
    let mut shell = rexpect::session::spawn_command(command, Some(30_000)).expect("kglue sql starts on a terminal");
    let expect = |shell: &mut rexpect::session::PtySession, text: &str| {
        shell
            .exp_string(text)
            .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"))
    };
    expect(&mut shell, "kglue=> ");
    shell.send_line("SELECT c.name, count(*) AS n").expect("send");
    expect(&mut shell, "kglue-> ");
    shell
        .send_line("  FROM sales.orders o JOIN sales.customers c")
        .expect("send");
    expect(&mut shell, "kglue-> ");
    shell
        .send_line("  ON o.customer_id = c.customer_id GROUP BY c.name ORDER BY n DESC;")
        .expect("send");
    expect(&mut shell, "| Ada   | 2 |");
    expect(&mut shell, "| Grace | 1 |");
    expect(&mut shell, "(2 rows)");
    expect(&mut shell, "kglue=> ");
    shell.send_line("\\d").expect("send");
    expect(&mut shell, "| sales    | customers | Json   |");
    expect(&mut shell, "kglue=> ");
    shell.send_line("\\d sales.orders").expect("send");
    expect(&mut shell, "| day         | date          | partition key |");
    expect(&mut shell, "Format: Csv");
    expect(&mut shell, "kglue=> ");
    shell.send_line("SELEC 1;").expect("send");
    expect(&mut shell, "ERROR: ");
    expect(&mut shell, "kglue=> ");
    shell.send_line("\\timing").expect("send");
    expect(&mut shell, "Timing is on.");
    shell.send_line("SELECT count(*) FROM sales.customers;").expect("send");
    expect(&mut shell, "read 1 object");
    // A Table added while the prompt is open is there for the next statement.
    lake.table(
        "sales",
        "people",
        "data/customers",
        "Json",
        "[{name: customer_id, type: bigint}, {name: name, type: string}]",
        "[]",
    );
    shell
        .send_line("SELECT max(name) AS last FROM sales.people;")
        .expect("send");
    expect(&mut shell, "| Grace |");
    shell.send_line("\\q").expect("send");
    shell.exp_eof().expect("kglue sql exits after \\q");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        lake.path("home/.kglue_sql_history").exists(),
        "the history is kept between sessions"
    );
}

/// `kglue serve` over the lake, listening on a free port of 127.0.0.1; stopped when dropped.
struct Served {
    child: std::process::Child,
    login: Login,
}

const PASSWORD: &str = "s3cret-pw";

impl Served {
    fn start(lake: &Lake, extra: &[&str]) -> Served {
        use std::io::BufRead;
        let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
        let mut child = Command::new(kglue)
            .args(["serve", "--catalog"])
            .arg(lake.path("catalog"))
            .args(["--port", "0", "--username", "analyst"])
            .args(extra)
            .env("KGLUE_SESSION_PASSWORD", PASSWORD)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kglue serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        let port = first
            .strip_prefix("kglue serve: listening on 127.0.0.1:")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(|line| eprintln!("serve: {}", line.unwrap_or_default())));
        let login = Login {
            port,
            user: "analyst".into(),
            password: PASSWORD.into(),
        };
        Served { child, login }
    }

    fn as_user(&self, user: &str, password: &str) -> Login {
        Login {
            user: user.into(),
            password: password.into(),
            ..self.login.clone()
        }
    }

    fn psql(&self, sql: &str) -> String {
        let answer = self.login.psql(sql);
        assert!(answer.ok, "psql -c {sql:?} failed: {answer:?}");
        answer.out
    }

    fn psql_error(&self, sql: &str) -> String {
        let answer = self.login.psql(sql);
        assert!(!answer.ok, "psql -c {sql:?} should fail: {answer:?}");
        answer.err
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql, the PostgreSQL client, against `kglue serve`: answers, the password, the sandbox and
/// Tables added while it runs.
#[test]
fn psql_queries_the_catalog_through_kglue_serve() {
    let lake = Lake::new();
    let served = Served::start(&lake, &[]);
    assert_eq!(served.psql(JOIN), "Ada,6.50,2,2024-01-01\nGrace,7.25,1,2024-01-01\n");
    // A partition filter and typed values as PostgreSQL types.
    assert_eq!(
        served.psql("SELECT id, amount, day FROM sales.orders WHERE day = DATE '2024-01-02'"),
        "3,1.00,2024-01-02\n"
    );
    // Who may connect: the user and the password, nothing else.
    for (user, password) in [("analyst", "wrong"), ("postgres", PASSWORD)] {
        let answer = served.as_user(user, password).psql("SELECT 1");
        assert!(
            !answer.ok && answer.err.contains("assword authentication failed"),
            "{answer:?}"
        );
    }
    // The sandbox: no writes, no paths, no engine settings.
    for (statement, kind) in [
        ("INSERT INTO sales.orders VALUES (9, 9, 9.00)", "INSERT"),
        ("COPY (SELECT 1) TO '/tmp/kglue-serve-out.csv'", "COPY"),
        (
            "CREATE EXTERNAL TABLE pw (line TEXT) STORED AS TEXTFILE LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("DROP TABLE sales.orders", "DROP TABLE"),
        ("SET datafusion.execution.target_partitions = 1", "SET"),
    ] {
        let error = served.psql_error(statement);
        assert!(
            error.contains(&format!("{kind} is not allowed in a SQL session")),
            "{statement}: {error}"
        );
    }
    assert!(!Path::new("/tmp/kglue-serve-out.csv").exists());
    let error = served.psql_error("SELECT * FROM '/etc/passwd'");
    assert!(!error.contains("root:"), "{error}");
    // A Table added after the server started is there for the next statement.
    lake.table(
        "sales",
        "people",
        "data/customers",
        "Json",
        "[{name: customer_id, type: bigint}, {name: name, type: string}]",
        "[]",
    );
    assert_eq!(served.psql("SELECT max(name) FROM sales.people"), "Grace\n");
    let listed = served
        .psql("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'sales' ORDER BY 2");
    assert_eq!(listed, "sales,customers\nsales,orders\nsales,people\n");
    // psql's own meta-commands, answered from pg_catalog.
    assert_eq!(
        served.psql("\\dt sales.*"),
        "sales,customers,table,postgres\nsales,orders,table,postgres\nsales,people,table,postgres\n"
    );
    // A partition key is nullable: Hive's default folder holds its NULLs.
    assert_eq!(
        served.psql("\\d sales.orders"),
        "id,bigint,,,\ncustomer_id,bigint,,,\namount,numeric,,,\nday,date,,,\n"
    );
}

/// psycopg (Python), which uses the extended protocol with parameters: typed answers, the
/// sandbox, and `--database` limiting what is exposed.
#[test]
fn psycopg_queries_with_parameters_and_typed_values() {
    let lake = Lake::new();
    let served = Served::start(&lake, &["--database", "sales"]);
    let answer = served.login.psycopg(
        r#"rows = conn.execute("SELECT id, amount, day FROM orders WHERE customer_id = %s ORDER BY id", (10,)).fetchall()
assert rows == [(1, decimal.Decimal("5.50"), datetime.date(2024, 1, 1)), (3, decimal.Decimal("1.00"), datetime.date(2024, 1, 2))], rows
try:
    conn.execute("DELETE FROM sales.orders WHERE id = %s", (1,))
    raise SystemExit("a DELETE was accepted")
except psycopg.Error as e:
    assert "DELETE is not allowed in a SQL session" in str(e), str(e)
    conn.rollback()
names = [r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata ORDER BY 1").fetchall()]
assert "sales" in names and "lake" not in names, names
print("ok")"#,
    );
    assert!(answer.ok && answer.out.trim() == "ok", "{answer:?}");
}

/// pgJDBC (Java), as DBeaver and other JDBC tools connect: a prepared statement with a parameter,
/// the column types it reports, a wrong password and a refused write.
#[test]
fn a_jdbc_client_queries_through_kglue_serve() {
    let lake = Lake::new();
    let served = Served::start(&lake, &[]);
    let answer = served.login.jdbc(
        "SELECT o.id, c.name, o.amount, o.day FROM sales.orders o JOIN sales.customers c ON o.customer_id = c.customer_id WHERE o.customer_id = ? ORDER BY o.id",
        Some(10),
    );
    assert!(answer.ok, "{answer:?}");
    assert_eq!(
        answer.out,
        "id:int8,name:text,amount:numeric,day:date\n1,Ada,5.50,2024-01-01\n3,Ada,1.00,2024-01-02\n"
    );
    let answer = served.as_user("analyst", "wrong").jdbc("SELECT 1", None);
    assert!(
        !answer.ok && answer.err.contains("assword authentication failed"),
        "{answer:?}"
    );
    let answer = served.login.jdbc("DELETE FROM sales.orders WHERE id = ?", Some(1));
    assert!(
        !answer.ok
            && answer.err.contains("SQLState 42501")
            && answer.err.contains("DELETE is not allowed in a SQL session"),
        "{answer:?}"
    );
}
