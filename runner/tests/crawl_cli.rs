//! `kglue crawl` end to end: the built binary, a generated landing zone on the local
//! filesystem, and a catalog directory; the Tables it writes are checked field by field.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kglue_crds::Table;
use kube::ResourceExt;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("compress");
    encoder.finish().expect("finish")
}

struct Fixture {
    _dir: tempfile::TempDir,
    landing: PathBuf,
    catalog: PathBuf,
    crawler: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let landing = dir.path().join("landing");
    let catalog = dir.path().join("catalog");
    write(
        &landing.join("orders/dt=2024-01-01/part-0.csv"),
        b"id,amount,ordered_at\n1,9.50,2024-01-01 10:00:00\n2,3,2024-01-01 11:30:00\n",
    );
    write(
        &landing.join("orders/dt=2024-01-02/part-0.csv.gz"),
        &gzip("id,amount,ordered_at\n3,1.25,2024-01-02 09:00:00\n"),
    );
    write(&landing.join("orders/dt=2024-01-02/_SUCCESS"), b"");
    write(&landing.join("customers/part-0.json"), b"{\"customer_id\": 7, \"name\": \"Ada\", \"tags\": [\"vip\"]}\n{\"customer_id\": 8, \"name\": \"Bo\", \"address\": {\"city\": \"Oslo\"}}\n");
    write(
        &catalog.join("database.yaml"),
        b"apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: raw}\nspec: {databaseName: raw}\n",
    );
    let crawler = dir.path().join("crawler.yaml");
    let manifest = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n  targets:\n    - path: file://{}/orders/\n    - path: file://{}/customers/\n",
        landing.display(),
        landing.display()
    );
    std::fs::write(&crawler, manifest).expect("write crawler");
    Fixture {
        _dir: dir,
        landing,
        catalog,
        crawler,
    }
}

fn kglue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kglue"))
        .args(args)
        .output()
        .expect("kglue runs")
}

fn crawl(fixture: &Fixture, extra: &[&str]) -> String {
    let mut args = vec!["crawl", "-f", fixture.crawler.to_str().expect("utf-8"), "--catalog"];
    args.push(fixture.catalog.to_str().expect("utf-8"));
    args.extend(extra);
    let output = kglue(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kglue crawl failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn table(fixture: &Fixture, file: &str) -> Table {
    let text = std::fs::read_to_string(fixture.catalog.join(file)).expect("table file written");
    serde_saphyr::from_str(&text).expect("a Table manifest")
}

fn columns(table: &Table) -> Vec<String> {
    table.spec.columns.iter().map(ToString::to_string).collect()
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let fixture = fixture();
    let stdout = crawl(&fixture, &["--dry-run"]);
    assert!(stdout.contains("dry run, nothing written"), "{stdout}");
    assert!(stdout.contains("create     raw.orders"), "{stdout}");
    assert!(stdout.contains("create     raw.customers"), "{stdout}");
    let files: Vec<_> = std::fs::read_dir(&fixture.catalog).expect("catalog").collect();
    assert_eq!(files.len(), 1, "only the Database manifest");
}

#[test]
fn crawl_creates_partitioned_tables_with_inferred_schemas() {
    let fixture = fixture();
    let stdout = crawl(&fixture, &[]);
    assert!(
        stdout.contains("skipped file://") && stdout.contains("_SUCCESS: job-output marker"),
        "{stdout}"
    );

    let orders = table(&fixture, "raw.orders.yaml");
    assert_eq!(
        (orders.spec.database_name.as_str(), orders.spec.table_name.as_str()),
        ("raw", "orders")
    );
    assert_eq!(
        orders.spec.storage.location,
        format!("file://{}/orders/", fixture.landing.display())
    );
    assert_eq!(orders.spec.storage.format.format, kglue_crds::common::DataFormat::Csv);
    assert_eq!(columns(&orders), ["id int", "amount double", "ordered_at timestamp"]);
    let keys: Vec<String> = orders.spec.partition_keys.iter().map(ToString::to_string).collect();
    assert_eq!(keys, ["dt date"]);
    let partitions = orders
        .status
        .as_ref()
        .and_then(|s| s.partitions.as_ref())
        .expect("partition summary");
    assert_eq!(
        (partitions.count, partitions.newest.clone()),
        (2, vec!["dt=2024-01-02".into(), "dt=2024-01-01".into()])
    );
    assert_eq!(
        orders.spec.parameters.get("classification").map(String::as_str),
        Some("csv")
    );
    assert_eq!(
        orders.labels().get("kglue.dev/crawler").map(String::as_str),
        Some("landing")
    );

    let customers = table(&fixture, "raw.customers.yaml");
    assert_eq!(
        customers.spec.storage.format.format,
        kglue_crds::common::DataFormat::Json
    );
    assert_eq!(
        columns(&customers),
        [
            "customer_id int",
            "name string",
            "tags array<string>",
            "address struct<city:string>"
        ]
    );
    assert!(customers.spec.partition_keys.is_empty());
}

#[test]
fn a_second_crawl_merges_new_columns_and_reports_incompatible_data() {
    let fixture = fixture();
    crawl(&fixture, &[]);
    // A new partition adds a column: an additive change, merged.
    write(
        &fixture.landing.join("orders/dt=2024-01-03/part-0.csv"),
        b"id,amount,ordered_at,coupon\n4,2.00,2024-01-03 08:00:00,SPRING\n",
    );
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("update     raw.orders"), "{stdout}");
    assert!(stdout.contains("new column coupon string"), "{stdout}");
    let orders = table(&fixture, "raw.orders.yaml");
    assert_eq!(
        columns(&orders),
        ["id int", "amount double", "ordered_at timestamp", "coupon string"]
    );

    // Ids that are no longer numbers cannot be read as the table's int: drift, table kept.
    write(
        &fixture.landing.join("orders/dt=2024-01-04/part-0.csv"),
        b"id,amount,ordered_at,coupon\nA-5,2.00,2024-01-04 08:00:00,\n",
    );
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("drift      raw.orders"), "{stdout}");
    let orders = table(&fixture, "raw.orders.yaml");
    assert_eq!(
        columns(&orders),
        ["id int", "amount double", "ordered_at timestamp", "coupon string"]
    );
    let drift = orders
        .status
        .as_ref()
        .and_then(|s| s.observed.condition("SchemaDrift"))
        .expect("SchemaDrift condition");
    assert_eq!(drift.status, "True");
    let expected = format!(
        "{}/orders/dt=2024-01-04/part-0.csv holds column id as string where the table has int",
        fixture.landing.display()
    );
    assert!(drift.message.contains(&expected), "{}", drift.message);
}

#[test]
fn a_missing_crawler_file_fails_with_its_name() {
    let output = kglue(&["crawl", "-f", "/nonexistent/crawler.yaml", "--catalog", "/tmp"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kglue: /nonexistent/crawler.yaml:"), "{stderr}");
}

#[test]
fn new_folders_only_reads_just_the_new_partitions_and_keeps_the_index_complete() {
    let fixture = fixture();
    let state = fixture.landing.parent().expect("temp dir").join("state");
    let crawler = |policy: &str| {
        format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n  \
             recrawlPolicy: {policy}\n  schemaChangePolicy: {{updateBehavior: Log, deleteBehavior: Log}}\n  \
             state: {{location: 'file://{}/'}}\n  targets:\n    - path: file://{}/orders/\n",
            state.display(),
            fixture.landing.display()
        )
    };
    std::fs::write(&fixture.crawler, crawler("CrawlEverything")).expect("write crawler");
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("2 read"), "{stdout}");
    let index = state.join("landing/partitions/raw.orders.json");
    let orders = table(&fixture, "raw.orders.yaml");
    let summary = orders
        .status
        .as_ref()
        .and_then(|s| s.partitions.clone())
        .expect("summary");
    assert_eq!(summary.index, Some(format!("file://{}", index.display())));
    assert_eq!(
        std::fs::read_to_string(&index).expect("index"),
        r#"[["2024-01-01"],["2024-01-02"]]"#
    );

    // One new partition lands; the next crawl reads only its file.
    write(
        &fixture.landing.join("orders/dt=2024-01-03/part-0.csv"),
        b"id,amount,ordered_at\n9,1.00,2024-01-03 07:00:00\n",
    );
    std::fs::write(&fixture.crawler, crawler("CrawlNewFoldersOnly")).expect("write crawler");
    let stdout = crawl(&fixture, &[]);
    assert!(
        stdout.contains("1 read, 1 skipped, 2 in folders crawled before"),
        "{stdout}"
    );
    let orders = table(&fixture, "raw.orders.yaml");
    let summary = orders
        .status
        .as_ref()
        .and_then(|s| s.partitions.clone())
        .expect("summary");
    assert_eq!(summary.count, 3, "known and new partitions together");
    assert_eq!(summary.newest.first().map(String::as_str), Some("dt=2024-01-03"));
    assert_eq!(
        std::fs::read_to_string(&index).expect("index"),
        r#"[["2024-01-01"],["2024-01-02"],["2024-01-03"]]"#
    );
    // Nothing new: nothing read, nothing lost.
    let stdout = crawl(&fixture, &[]);
    assert!(
        stdout.contains("0 read") && stdout.contains("3 in folders crawled before"),
        "{stdout}"
    );
    let orders = table(&fixture, "raw.orders.yaml");
    assert_eq!(orders.partition_count(), Some(3));
}

fn set_crawler(fixture: &Fixture, spec_extra: &str) {
    let manifest = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n{spec_extra}  targets:\n    - path: file://{}/orders/\n    - path: file://{}/customers/\n",
        fixture.landing.display(),
        fixture.landing.display()
    );
    std::fs::write(&fixture.crawler, manifest).expect("write crawler");
}

#[test]
fn a_table_threshold_fails_the_crawl_and_writes_nothing() {
    let fixture = fixture();
    set_crawler(&fixture, "  grouping: {tableThreshold: 1}\n");
    let output = kglue(&[
        "crawl",
        "-f",
        fixture.crawler.to_str().expect("utf-8"),
        "--catalog",
        fixture.catalog.to_str().expect("utf-8"),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the crawl would create 2 tables, more than tableThreshold 1; nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&fixture.catalog).expect("catalog").count(),
        1,
        "only the Database"
    );
}

#[test]
fn disappeared_data_deprecates_then_deletes_the_crawlers_tables() {
    let fixture = fixture();
    crawl(&fixture, &[]);
    std::fs::remove_dir_all(fixture.landing.join("customers")).expect("remove");
    std::fs::create_dir_all(fixture.landing.join("customers")).expect("an empty target");

    // Default deleteBehavior: DeprecateInDatabase keeps the table, marked.
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("deprecate  raw.customers"), "{stdout}");
    let customers = table(&fixture, "raw.customers.yaml");
    assert!(customers.status.as_ref().is_some_and(|s| s.deprecated));

    // Log only reports it.
    set_crawler(&fixture, "  schemaChangePolicy: {deleteBehavior: Log}\n");
    let stdout = crawl(&fixture, &[]);
    assert!(
        stdout.contains("log only   raw.customers") && stdout.contains("its data disappeared"),
        "{stdout}"
    );
    assert!(fixture.catalog.join("raw.customers.yaml").exists());

    // DeleteFromDatabase removes it; the orders table stays.
    set_crawler(&fixture, "  schemaChangePolicy: {deleteBehavior: DeleteFromDatabase}\n");
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("delete     raw.customers"), "{stdout}");
    assert!(!fixture.catalog.join("raw.customers.yaml").exists());
    assert!(fixture.catalog.join("raw.orders.yaml").exists());
}

#[test]
fn update_behavior_log_reports_changes_without_writing_them() {
    let fixture = fixture();
    crawl(&fixture, &[]);
    write(
        &fixture.landing.join("orders/dt=2024-01-03/part-0.csv"),
        b"id,amount,ordered_at,coupon\n4,2.00,2024-01-03 08:00:00,SPRING\n",
    );
    set_crawler(&fixture, "  schemaChangePolicy: {updateBehavior: Log}\n");
    let stdout = crawl(&fixture, &[]);
    assert!(
        stdout.contains("log only   raw.orders") && stdout.contains("new column coupon string"),
        "{stdout}"
    );
    let orders = table(&fixture, "raw.orders.yaml");
    assert_eq!(columns(&orders), ["id int", "amount double", "ordered_at timestamp"]);
    // Partitions are facts, refreshed whatever the policy.
    assert_eq!(orders.partition_count(), Some(3));
}

#[test]
fn sample_size_limits_the_files_read_per_folder() {
    let fixture = fixture();
    // A second file in the first partition has a column the first file lacks.
    write(
        &fixture.landing.join("orders/dt=2024-01-01/part-1.csv"),
        b"id,amount,ordered_at,late\n5,1.5,2024-01-01 23:00:00,true\n",
    );
    let manifest = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n  targets:\n    - {{path: 'file://{}/orders/', sampleSize: 1}}\n",
        fixture.landing.display()
    );
    std::fs::write(&fixture.crawler, manifest).expect("write crawler");
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("4 listed, 2 read"), "one file per folder: {stdout}");
    assert_eq!(
        columns(&table(&fixture, "raw.orders.yaml")),
        ["id int", "amount double", "ordered_at timestamp"]
    );
}

#[test]
fn parquet_and_avro_folders_become_tables_with_nested_types() {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields};

    let fixture = fixture();
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let cities: ArrayRef = Arc::new(StringArray::from(vec!["Oslo", "Rome"]));
    let address: ArrayRef = Arc::new(StructArray::new(
        Fields::from(vec![Field::new("city", DataType::Utf8, true)]),
        vec![cities],
        None,
    ));
    let scores: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1)]),
        Some(vec![]),
    ]));
    let batch = RecordBatch::try_from_iter([("id", ids), ("address", address), ("scores", scores)]).expect("batch");

    let parquet_file = fixture.landing.join("events/year=2024/part-0.parquet");
    std::fs::create_dir_all(parquet_file.parent().expect("parent")).expect("mkdir");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet_file).expect("create"),
        batch.schema(),
        None,
    )
    .expect("parquet writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");

    let simple = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["Ada"])) as ArrayRef),
    ])
    .expect("batch");
    let mut avro =
        arrow_avro::writer::AvroWriter::new(Vec::<u8>::new(), simple.schema().as_ref().clone()).expect("avro");
    avro.write(&simple).expect("write");
    avro.finish().expect("finish");
    write(&fixture.landing.join("people/part-0.avro"), &avro.into_inner());

    let manifest = format!(
        "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n  targets:\n    - path: file://{}/events/\n    - path: file://{}/people/\n",
        fixture.landing.display(),
        fixture.landing.display()
    );
    std::fs::write(&fixture.crawler, manifest).expect("write crawler");
    crawl(&fixture, &[]);

    let events = table(&fixture, "raw.events.yaml");
    assert_eq!(
        events.spec.storage.format.format,
        kglue_crds::common::DataFormat::Parquet
    );
    assert_eq!(
        columns(&events),
        ["id bigint", "address struct<city:string>", "scores array<int>"]
    );
    let keys: Vec<String> = events.spec.partition_keys.iter().map(ToString::to_string).collect();
    assert_eq!(keys, ["year int"]);
    let people = table(&fixture, "raw.people.yaml");
    assert_eq!(people.spec.storage.format.format, kglue_crds::common::DataFormat::Avro);
    assert_eq!(columns(&people), ["id bigint", "name string"]);
}

#[test]
fn a_missing_database_is_created_with_the_tables() {
    let fixture = fixture();
    std::fs::remove_file(fixture.catalog.join("database.yaml")).expect("remove");
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("created database raw"), "{stdout}");
    let text = std::fs::read_to_string(fixture.catalog.join("raw.yaml")).expect("Database manifest");
    let database: kglue_crds::Database = serde_saphyr::from_str(&text).expect("a Database");
    assert_eq!(database.spec.database_name, "raw");
    assert_eq!(
        database.labels().get("kglue.dev/crawler").map(String::as_str),
        Some("landing")
    );
    // The next crawl finds it and creates nothing.
    let stdout = crawl(&fixture, &[]);
    assert!(!stdout.contains("created database"), "{stdout}");
}

#[test]
fn orc_and_ragged_csv_files_are_reported_with_their_key_and_reason() {
    let fixture = fixture();
    write(
        &fixture.landing.join("orders/dt=2024-01-02/part-9.orc"),
        b"ORC\x0a\x03\x00\x00\x00 not parsed",
    );
    write(
        &fixture.landing.join("orders/dt=2024-01-02/part-8.csv"),
        b"id,amount,ordered_at\n7,1.0\n",
    );
    let stdout = crawl(&fixture, &[]);
    let orc = format!(
        "skipped file://{}/orders/dt=2024-01-02/part-9.orc: unclassified: ORC:",
        fixture.landing.display()
    );
    assert!(stdout.contains(&orc), "{stdout}");
    let ragged = format!(
        "skipped file://{}/orders/dt=2024-01-02/part-8.csv: unclassified: CSV: ragged rows with delimiter ',': line 2 has 2 fields where line 1 has 3",
        fixture.landing.display()
    );
    assert!(stdout.contains(&ragged), "{stdout}");
    // The good files still make the table.
    assert_eq!(
        columns(&table(&fixture, "raw.orders.yaml")),
        ["id int", "amount double", "ordered_at timestamp"]
    );
}

#[test]
fn a_table_whose_manifest_holds_other_objects_is_a_conflict_and_the_crawl_goes_on() {
    let fixture = fixture();
    // raw.orders is declared beside its Database in one file, as a GitOps folder may hold it: the
    // crawl must not rewrite that file, so the change is reported as a conflict (as a field owned
    // by another manager is in a namespace), and the other table is still written.
    write(
        &fixture.catalog.join("database.yaml"),
        format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {{name: raw}}\nspec: {{databaseName: raw}}\n---\n\
             apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: raw.orders}}\n\
             spec: {{databaseName: raw, tableName: orders, storage: {{location: \"file://{}/orders/\", format: Csv}}, columns: [{{name: id, type: bigint}}]}}\n",
            fixture.landing.display()
        )
        .as_bytes(),
    );
    let before = std::fs::read_to_string(fixture.catalog.join("database.yaml")).expect("read");
    let stdout = crawl(&fixture, &[]);
    assert!(stdout.contains("conflict   raw.orders"), "{stdout}");
    assert!(
        stdout.contains("not written:") && stdout.contains("holds several objects"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.catalog.join("database.yaml")).expect("read"),
        before,
        "the shared file is left as it was"
    );
    assert_eq!(table(&fixture, "raw.customers.yaml").spec.table_name, "customers");
}
