//! `kglue table ddl` end to end: the built binary writes DDL for Tables of a catalog directory
//! whose data the test generates on local disk (partitioned Parquet with nested types, pipe-
//! delimited CSV with a gzip file, JSON lines), and a real DuckDB (Python's `duckdb` package)
//! executes the DuckDB DDL and reads the rows back through the view.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, Decimal128Array, Int32Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field};
use serde_json::{Value, json};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("compress");
    encoder.finish().expect("finish")
}

/// One order row of the Parquet files: id, amount in cents, ordered_at in microseconds since the
/// epoch, items (sku, quantity).
type Order = (i32, i128, i64, Vec<(&'static str, i32)>);

/// A Parquet file of orders. `order_id` is written as a 32-bit int although the catalog says
/// bigint, so the view's cast to the catalog's type is visible.
fn write_orders(path: &Path, orders: &[Order]) {
    let ids: ArrayRef = Arc::new(Int32Array::from(orders.iter().map(|o| o.0).collect::<Vec<_>>()));
    let amounts: ArrayRef = Arc::new(
        Decimal128Array::from(orders.iter().map(|o| o.1).collect::<Vec<_>>())
            .with_precision_and_scale(12, 2)
            .expect("decimal(12,2)"),
    );
    let times: ArrayRef = Arc::new(TimestampMicrosecondArray::from(
        orders.iter().map(|o| o.2).collect::<Vec<_>>(),
    ));
    let fields = vec![
        Field::new("sku", DataType::Utf8, true),
        Field::new("quantity", DataType::Int32, true),
    ];
    let mut items = ListBuilder::new(StructBuilder::from_fields(fields, 0));
    for (_, _, _, order_items) in orders {
        for (sku, quantity) in order_items {
            let item = items.values();
            item.field_builder::<StringBuilder>(0)
                .expect("sku builder")
                .append_value(sku);
            item.field_builder::<Int32Builder>(1)
                .expect("quantity builder")
                .append_value(*quantity);
            item.append(true);
        }
        items.append(true);
    }
    let items: ArrayRef = Arc::new(items.finish());
    let batch = RecordBatch::try_from_iter([
        ("order_id", ids),
        ("amount", amounts),
        ("ordered_at", times),
        ("items", items),
    ])
    .expect("batch");
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).expect("create"), batch.schema(), None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// 2024-01-01 10:00:00 plus `minutes`, in microseconds since the epoch.
fn at(minutes: i64) -> i64 {
    (1_704_103_200 + minutes * 60) * 1_000_000
}

struct Fixture {
    _dir: tempfile::TempDir,
    catalog: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let catalog = dir.path().join("catalog");

    // Partitioned Parquet with nested types, markers that must not be read, and a string partition
    // key whose values DuckDB would read as BIGINT without the catalog's type.
    write_orders(
        &data.join("orders/dt=2024-01-01/store=42/part-0.parquet"),
        &[(1, 950, at(0), vec![("a", 1), ("b", 2)]), (2, 300, at(90), vec![])],
    );
    write_orders(
        &data.join("orders/dt=2024-01-02/store=7/part-0.parquet"),
        &[(3, 125, at(24 * 60), vec![("c", 3)])],
    );
    write(&data.join("orders/dt=2024-01-01/_SUCCESS"), b"");
    write(
        &data.join("orders/dt=2024-01-02/store=7/.part-0.parquet.crc"),
        b"not parquet",
    );

    // Pipe-delimited CSV with a header, quoted delimiters and doubled quotes, one file gzipped,
    // and a column whose name holds both quote characters.
    let header = "id|amount|note|o'c \"q\"|shipped\n";
    write(
        &data.join("partner/dt=2024-01-01/part-0.csv"),
        format!("{header}1|9.5|\"a|b\"|x|2024-01-03\n2|3|\"say \"\"hi\"\"\"|y|2024-01-04\n").as_bytes(),
    );
    write(
        &data.join("partner/dt=2024-01-02/part-1.csv.gz"),
        &gzip(&format!("{header}3|1.25|plain|z|2024-01-05\n")),
    );
    write(&data.join("partner/dt=2024-01-02/_SUCCESS"), b"");

    // JSON lines, unpartitioned, with nested values.
    write(
        &data.join("customers/part-0.json"),
        b"{\"customer_id\": 7, \"name\": \"Ada\", \"address\": {\"city\": \"Oslo\"}, \"tags\": [\"vip\"]}\n{\"customer_id\": 8, \"name\": \"Bo\", \"tags\": []}\n",
    );

    // A JSON document holding one array of records, and tab-separated text without a header.
    write(
        &data.join("events/2024.json"),
        b"[\n  {\"id\": 1, \"kind\": \"click\"},\n  {\"id\": 2, \"kind\": \"view\"}\n]\n",
    );
    write(&data.join("lines/part-0.tsv"), b"1\tone, with a comma\n2\ttwo\n");

    let location = |name: &str| format!("file://{}/{name}/", data.display());
    write(
        &catalog.join("sales.events.yaml"),
        format!(
            r#"apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: sales.events}}
spec:
  databaseName: sales
  tableName: events
  storage: {{location: "{}", format: Json, json: {{jsonPath: "$[*]"}}}}
  columns:
    - {{name: id, type: int}}
    - {{name: kind, type: string}}
"#,
            location("events")
        )
        .as_bytes(),
    );
    write(
        &catalog.join("sales.lines.yaml"),
        format!(
            r#"apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: sales.lines}}
spec:
  databaseName: sales
  tableName: lines
  storage: {{location: "{}", format: Csv, csv: {{delimiter: "\t", header: false}}}}
  columns:
    - {{name: num, type: int}}
    - {{name: text, type: string}}
"#,
            location("lines")
        )
        .as_bytes(),
    );
    write(
        &catalog.join("sales.orders.yaml"),
        format!(
            r#"apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: sales.orders}}
spec:
  databaseName: sales
  tableName: orders
  storage: {{location: "{}", format: Parquet}}
  columns:
    - {{name: order_id, type: bigint}}
    - {{name: amount, type: "decimal(12,2)"}}
    - {{name: ordered_at, type: timestamp}}
    - {{name: items, type: "array<struct<sku:string,quantity:int>>"}}
  partitionKeys:
    - {{name: dt, type: date}}
    - {{name: store, type: string}}
"#,
            location("orders")
        )
        .as_bytes(),
    );
    write(
        &catalog.join("sales.partner.yaml"),
        format!(
            r#"apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: sales.partner}}
spec:
  databaseName: sales
  tableName: partner
  storage: {{location: "{}", format: Csv, csv: {{delimiter: "|", header: true}}}}
  columns:
    - {{name: id, type: int}}
    - {{name: amount, type: double}}
    - {{name: note, type: string}}
    - {{name: "o'c \"q\"", type: string}}
    - {{name: shipped, type: date}}
  partitionKeys:
    - {{name: dt, type: date}}
"#,
            location("partner")
        )
        .as_bytes(),
    );
    write(
        &catalog.join("sales.customers.yaml"),
        format!(
            r#"apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: sales.customers}}
spec:
  databaseName: sales
  tableName: customers
  storage: {{location: "{}", format: Json}}
  columns:
    - {{name: customer_id, type: bigint}}
    - {{name: name, type: string}}
    - {{name: address, type: "struct<city:string>"}}
    - {{name: tags, type: "array<string>"}}
"#,
            location("customers")
        )
        .as_bytes(),
    );
    Fixture { _dir: dir, catalog }
}

fn kglue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(args)
        .output()
        .expect("run kglue")
}

fn ddl(catalog: &Path, table: &str, dialect: &str) -> String {
    let output = kglue(&[
        "table",
        "ddl",
        table,
        "--catalog",
        catalog.to_str().expect("utf-8 path"),
        "--dialect",
        dialect,
    ]);
    assert!(
        output.status.success(),
        "kglue table ddl {table} --dialect {dialect} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 DDL")
}

/// Runs `ddl` in a fresh in-memory DuckDB, then each query; every result comes back as rows of
/// values printed by Python's `str` (NULL as JSON null).
const DUCKDB_SCRIPT: &str = r#"
import json, sys
import duckdb
con = duckdb.connect()
con.execute(sys.stdin.read())
results = []
for query in sys.argv[1:]:
    rows = con.execute(query).fetchall()
    results.append([[None if v is None else str(v) for v in row] for row in rows])
print(json.dumps(results))
"#;

fn duckdb(ddl: &str, queries: &[&str]) -> Vec<Value> {
    let check = Command::new("python3").args(["-c", "import duckdb"]).output();
    match check {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "these tests run the DDL in a real DuckDB, and Python cannot import it: pip install duckdb\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            panic!("these tests need python3 with DuckDB (python3: {error}): install python3, then pip install duckdb")
        }
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(DUCKDB_SCRIPT)
        .args(queries)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ddl.as_bytes())
        .expect("write DDL");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "DuckDB refused the DDL or a query:\n{ddl}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "python3 printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn duckdb_reads_the_partitioned_parquet_table_with_typed_partition_keys() {
    let fixture = fixture();
    let ddl = ddl(&fixture.catalog, "sales.orders", "duckdb");
    let results = duckdb(
        &ddl,
        &[
            r#"SELECT column_name, column_type FROM (DESCRIBE "sales"."orders")"#,
            r#"SELECT * FROM "sales"."orders" ORDER BY order_id"#,
            r#"SELECT order_id FROM "sales"."orders" WHERE dt = DATE '2024-01-02' AND store = '7'"#,
        ],
    );
    assert_eq!(
        results[0],
        json!([
            ["order_id", "BIGINT"],
            ["amount", "DECIMAL(12,2)"],
            ["ordered_at", "TIMESTAMP"],
            ["items", "STRUCT(sku VARCHAR, quantity INTEGER)[]"],
            ["dt", "DATE"],
            ["store", "VARCHAR"],
        ]),
        "{ddl}"
    );
    assert_eq!(
        results[1],
        json!([
            [
                "1",
                "9.50",
                "2024-01-01 10:00:00",
                "[{'sku': 'a', 'quantity': 1}, {'sku': 'b', 'quantity': 2}]",
                "2024-01-01",
                "42"
            ],
            ["2", "3.00", "2024-01-01 11:30:00", "[]", "2024-01-01", "42"],
            [
                "3",
                "1.25",
                "2024-01-02 10:00:00",
                "[{'sku': 'c', 'quantity': 3}]",
                "2024-01-02",
                "7"
            ],
        ])
    );
    assert_eq!(results[2], json!([["3"]]));
}

#[test]
fn duckdb_reads_the_pipe_delimited_csv_table() {
    let fixture = fixture();
    let ddl = ddl(&fixture.catalog, "sales.partner", "duckdb");
    let results = duckdb(
        &ddl,
        &[
            r#"SELECT column_name, column_type FROM (DESCRIBE "sales"."partner")"#,
            r#"SELECT * FROM "sales"."partner" ORDER BY id"#,
        ],
    );
    assert_eq!(
        results[0],
        json!([
            ["id", "INTEGER"],
            ["amount", "DOUBLE"],
            ["note", "VARCHAR"],
            ["o'c \"q\"", "VARCHAR"],
            ["shipped", "DATE"],
            ["dt", "DATE"],
        ]),
        "{ddl}"
    );
    assert_eq!(
        results[1],
        json!([
            ["1", "9.5", "a|b", "x", "2024-01-03", "2024-01-01"],
            ["2", "3.0", "say \"hi\"", "y", "2024-01-04", "2024-01-01"],
            ["3", "1.25", "plain", "z", "2024-01-05", "2024-01-02"],
        ])
    );
}

#[test]
fn duckdb_reads_the_json_lines_table() {
    let fixture = fixture();
    let ddl = ddl(&fixture.catalog, "sales.customers", "duckdb");
    let results = duckdb(
        &ddl,
        &[
            r#"SELECT column_name, column_type FROM (DESCRIBE "sales"."customers")"#,
            r#"SELECT * FROM "sales"."customers" ORDER BY customer_id"#,
        ],
    );
    assert_eq!(
        results[0],
        json!([
            ["customer_id", "BIGINT"],
            ["name", "VARCHAR"],
            ["address", "STRUCT(city VARCHAR)"],
            ["tags", "VARCHAR[]"],
        ]),
        "{ddl}"
    );
    assert_eq!(
        results[1],
        json!([["7", "Ada", "{'city': 'Oslo'}", "['vip']"], ["8", "Bo", null, "[]"],])
    );
}

#[test]
fn duckdb_reads_json_arrays_and_headerless_tab_separated_text() {
    let fixture = fixture();
    let events = ddl(&fixture.catalog, "sales.events", "duckdb");
    assert!(events.contains("  format = 'array',\n"), "{events}");
    let results = duckdb(&events, &[r#"SELECT * FROM "sales"."events" ORDER BY id"#]);
    assert_eq!(results[0], json!([["1", "click"], ["2", "view"]]));

    let lines = ddl(&fixture.catalog, "sales.lines", "duckdb");
    assert!(
        lines.contains("  delim = E'\\t',\n") && lines.contains("  header = false,\n"),
        "{lines}"
    );
    let results = duckdb(&lines, &[r#"SELECT * FROM "sales"."lines" ORDER BY num"#]);
    assert_eq!(results[0], json!([["1", "one, with a comma"], ["2", "two"]]));
}

#[test]
fn every_dialect_writes_ddl_for_the_local_tables_but_athena() {
    let fixture = fixture();
    for dialect in ["trino", "spark"] {
        let sql = ddl(&fixture.catalog, "sales.orders", dialect);
        assert!(sql.starts_with("CREATE TABLE "), "{sql}");
    }
    let output = kglue(&[
        "table",
        "ddl",
        "sales.orders",
        "--catalog",
        fixture.catalog.to_str().expect("utf-8 path"),
        "--dialect",
        "athena",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("kglue: --dialect athena cannot express table sales.orders: Athena reads only from S3 (s3://…), and the table's location is file://"),
        "{stderr}"
    );
}

#[test]
fn a_missing_table_is_an_error_listing_the_tables_of_its_database() {
    let fixture = fixture();
    let catalog = fixture.catalog.to_str().expect("utf-8 path");
    let output = kglue(&["table", "ddl", "sales.nope", "--catalog", catalog, "--dialect", "trino"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "kglue: table sales.nope is not in the catalog at {catalog}; the tables of database sales there are: customers, events, lines, orders, partner\n"
        )
    );

    let output = kglue(&["table", "ddl", "orders", "--catalog", catalog, "--dialect", "trino"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "kglue: \"orders\" is not a table name: write DATABASE.TABLE with the Glue names, e.g. sales_raw.orders\n"
    );

    let output = kglue(&[
        "table",
        "ddl",
        "sales.orders",
        "--catalog",
        catalog,
        "--dialect",
        "mysql",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'mysql'") && stderr.contains("duckdb, trino, spark, athena"),
        "{stderr}"
    );
}

#[test]
fn the_example_table_prints_ddl_and_notes_in_every_dialect() {
    let examples = kglue_crds::crate_dir!().join("../examples/sales-pipeline");
    let examples = examples.to_str().expect("utf-8 path");
    for dialect in ["duckdb", "trino", "spark", "athena"] {
        let output = kglue(&[
            "table",
            "ddl",
            "sales_curated.orders_daily",
            "--catalog",
            examples,
            "--dialect",
            dialect,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{dialect}: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("orders_daily"), "{dialect}: {stdout}");
        assert!(
            stderr.contains("kglue: note: the table is read through Connection lake"),
            "{dialect}: {stderr}"
        );
    }
}
