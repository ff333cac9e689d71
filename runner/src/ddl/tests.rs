use kglue_crds::common::{Column, Compression};

use super::quote::{field_name, quote_ident};
use super::*;

fn table(yaml: &str) -> Table {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("test table: {e}\n{yaml}"))
}

fn orders_daily() -> Table {
    let file = kglue_crds::crate_dir!().join("../examples/sales-pipeline/table-orders-daily.yaml");
    table(&std::fs::read_to_string(&file).expect("example table"))
}

fn ddl(table: &Table, dialect: Dialect) -> Ddl {
    table_ddl(table, dialect).unwrap_or_else(|e| panic!("{dialect}: {e}"))
}

fn error(table: &Table, dialect: Dialect) -> String {
    match table_ddl(table, dialect) {
        Ok(ddl) => panic!("{dialect}: expected an error, got\n{}", ddl.sql),
        Err(e) => e.to_string(),
    }
}

#[test]
fn orders_daily_in_athena() {
    let ddl = ddl(&orders_daily(), Dialect::Athena);
    assert_eq!(
        ddl.sql,
        r"CREATE EXTERNAL TABLE `sales_curated`.`orders_daily` (
  `order_id` bigint COMMENT 'The partner\'s order id.',
  `customer_id` bigint,
  `country` string,
  `amount` decimal(12,2),
  `ordered_at` timestamp,
  `items` array<struct<sku:string,quantity:bigint>>
)
COMMENT 'One row per order, deduplicated, with the customer\'s country.'
PARTITIONED BY (`order_date` date)
STORED AS PARQUET
LOCATION 's3://sales-curated/orders_daily/';
"
    );
    assert_eq!(
        ddl.notes,
        [
            "CREATE TABLE does not load partitions: run MSCK REPAIR TABLE `sales_curated`.`orders_daily` once the table exists, and again when new partitions arrive"
        ]
    );
}

#[test]
fn orders_daily_in_spark() {
    let ddl = ddl(&orders_daily(), Dialect::Spark);
    assert_eq!(
        ddl.sql,
        r"CREATE TABLE `sales_curated`.`orders_daily` (
  `order_id` bigint COMMENT 'The partner\'s order id.',
  `customer_id` bigint,
  `country` string,
  `amount` decimal(12,2),
  `ordered_at` timestamp,
  `items` array<struct<sku:string,quantity:bigint>>,
  `order_date` date
)
USING parquet
PARTITIONED BY (`order_date`)
LOCATION 's3://sales-curated/orders_daily/'
COMMENT 'One row per order, deduplicated, with the customer\'s country.';
"
    );
    assert_eq!(
        ddl.notes,
        [
            "CREATE TABLE does not load partitions: run MSCK REPAIR TABLE `sales_curated`.`orders_daily` once the table exists, and again when new partitions arrive"
        ]
    );
}

#[test]
fn orders_daily_in_trino() {
    let ddl = ddl(&orders_daily(), Dialect::Trino);
    assert_eq!(
        ddl.sql,
        r#"CREATE TABLE "sales_curated"."orders_daily" (
  "order_id" BIGINT COMMENT 'The partner''s order id.',
  "customer_id" BIGINT,
  "country" VARCHAR,
  "amount" DECIMAL(12,2),
  "ordered_at" TIMESTAMP(3),
  "items" ARRAY(ROW(sku VARCHAR, quantity BIGINT)),
  "order_date" DATE
)
COMMENT 'One row per order, deduplicated, with the customer''s country.'
WITH (
  external_location = 's3://sales-curated/orders_daily/',
  format = 'PARQUET',
  partitioned_by = ARRAY['order_date']
);
"#
    );
    assert_eq!(
        ddl.notes,
        [
            "CREATE TABLE does not load partitions: run CALL system.sync_partition_metadata('sales_curated', 'orders_daily', 'ADD') once the table exists, and again when new partitions arrive"
        ]
    );
}

#[test]
fn orders_daily_in_duckdb() {
    let ddl = ddl(&orders_daily(), Dialect::Duckdb);
    assert_eq!(
        ddl.sql,
        r#"CREATE SCHEMA IF NOT EXISTS "sales_curated";
CREATE VIEW "sales_curated"."orders_daily" AS
SELECT
  CAST("order_id" AS BIGINT) AS "order_id",
  CAST("customer_id" AS BIGINT) AS "customer_id",
  CAST("country" AS VARCHAR) AS "country",
  CAST("amount" AS DECIMAL(12,2)) AS "amount",
  CAST("ordered_at" AS TIMESTAMP) AS "ordered_at",
  CAST("items" AS STRUCT(sku VARCHAR, quantity BIGINT)[]) AS "items",
  "order_date"
FROM read_parquet(
  's3://sales-curated/orders_daily/**/[!._]*',
  hive_partitioning = true,
  hive_types = {'order_date': 'DATE'},
  union_by_name = true
);
"#
    );
    assert!(ddl.notes.is_empty(), "{:?}", ddl.notes);
}

fn pipe_csv() -> Table {
    table(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: sales-raw.partner-orders}
spec:
  databaseName: sales_raw
  tableName: partner_orders
  storage:
    location: s3://sales-landing/partner
    format: Csv
    compression: Gzip
    csv: {delimiter: "|", header: true}
  columns:
    - {name: id, type: int}
    - {name: amount, type: double}
    - {name: note, type: string}
    - {name: shipped, type: date}
  partitionKeys:
    - {name: dt, type: date}
"#,
    )
}

#[test]
fn csv_with_header_and_pipe_delimiter_in_every_dialect() {
    let table = pipe_csv();
    let athena = ddl(&table, Dialect::Athena);
    assert_eq!(
        athena.sql,
        r#"CREATE EXTERNAL TABLE `sales_raw`.`partner_orders` (
  `id` int,
  `amount` double,
  `note` string,
  `shipped` string
)
PARTITIONED BY (`dt` date)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
WITH SERDEPROPERTIES (
  'separatorChar' = '|',
  'quoteChar' = '"'
)
STORED AS TEXTFILE
LOCATION 's3://sales-landing/partner/'
TBLPROPERTIES ('skip.header.line.count' = '1');
"#
    );
    assert_eq!(
        athena.notes[0],
        "Athena's OpenCSVSerde parses only boolean, int, bigint, double and string from text, so `shipped` (date) is declared string: cast in queries"
    );

    assert_eq!(
        ddl(&table, Dialect::Spark).sql,
        r#"CREATE TABLE `sales_raw`.`partner_orders` (
  `id` int,
  `amount` double,
  `note` string,
  `shipped` date,
  `dt` date
)
USING csv
OPTIONS (header 'true', sep '|', quote '"', escape '"')
PARTITIONED BY (`dt`)
LOCATION 's3://sales-landing/partner/';
"#
    );

    assert_eq!(
        ddl(&table, Dialect::Trino).sql,
        r#"-- Trino's CSV format reads only VARCHAR columns, so every data column is declared VARCHAR.
-- The catalog's types, to CAST to in queries: "id" INTEGER, "amount" DOUBLE, "shipped" DATE.
CREATE TABLE "sales_raw"."partner_orders" (
  "id" VARCHAR,
  "amount" VARCHAR,
  "note" VARCHAR,
  "shipped" VARCHAR,
  "dt" DATE
)
WITH (
  external_location = 's3://sales-landing/partner/',
  format = 'CSV',
  partitioned_by = ARRAY['dt'],
  csv_separator = '|',
  csv_quote = '"',
  skip_header_line_count = 1
);
"#
    );

    assert_eq!(
        ddl(&table, Dialect::Duckdb).sql,
        r#"CREATE SCHEMA IF NOT EXISTS "sales_raw";
CREATE VIEW "sales_raw"."partner_orders" AS
SELECT *
FROM read_csv(
  's3://sales-landing/partner/**/[!._]*',
  delim = '|',
  quote = '"',
  escape = '"',
  header = true,
  columns = {
    'id': 'INTEGER',
    'amount': 'DOUBLE',
    'note': 'VARCHAR',
    'shipped': 'DATE'
  },
  hive_partitioning = true,
  hive_types = {'dt': 'DATE'}
);
"#
    );
}

fn json_lines() -> Table {
    table(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: sales-raw.customers}
spec:
  databaseName: sales_raw
  tableName: customers
  storage: {location: "s3://sales-landing/customers/", format: Json}
  columns:
    - {name: customer_id, type: bigint}
    - {name: name, type: string}
    - {name: address, type: "struct<city:string,Post Code:string>"}
    - {name: tags, type: "array<string>"}
    - {name: scores, type: "map<string,float>"}
"#,
    )
}

#[test]
fn json_lines_in_every_dialect() {
    let table = json_lines();
    assert_eq!(
        ddl(&table, Dialect::Athena).sql,
        r"CREATE EXTERNAL TABLE `sales_raw`.`customers` (
  `customer_id` bigint,
  `name` string,
  `address` struct<city:string,`Post Code`:string>,
  `tags` array<string>,
  `scores` map<string,float>
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS TEXTFILE
LOCATION 's3://sales-landing/customers/';
"
    );
    assert_eq!(
        ddl(&table, Dialect::Spark).sql,
        r"CREATE TABLE `sales_raw`.`customers` (
  `customer_id` bigint,
  `name` string,
  `address` struct<city:string,`Post Code`:string>,
  `tags` array<string>,
  `scores` map<string,float>
)
USING json
LOCATION 's3://sales-landing/customers/';
"
    );
    assert_eq!(
        ddl(&table, Dialect::Trino).sql,
        r#"CREATE TABLE "sales_raw"."customers" (
  "customer_id" BIGINT,
  "name" VARCHAR,
  "address" ROW(city VARCHAR, "Post Code" VARCHAR),
  "tags" ARRAY(VARCHAR),
  "scores" MAP(VARCHAR, REAL)
)
WITH (
  external_location = 's3://sales-landing/customers/',
  format = 'JSON'
);
"#
    );
    let duckdb = ddl(&table, Dialect::Duckdb);
    assert_eq!(
        duckdb.sql,
        r#"CREATE SCHEMA IF NOT EXISTS "sales_raw";
CREATE VIEW "sales_raw"."customers" AS
SELECT *
FROM read_json(
  's3://sales-landing/customers/**/[!._]*',
  format = 'newline_delimited',
  columns = {
    'customer_id': 'BIGINT',
    'name': 'VARCHAR',
    'address': 'STRUCT(city VARCHAR, "Post Code" VARCHAR)',
    'tags': 'VARCHAR[]',
    'scores': 'MAP(VARCHAR, FLOAT)'
  },
  hive_partitioning = false
);
"#
    );
    assert!(duckdb.notes.is_empty());
}

#[test]
fn json_arrays_are_read_where_the_engine_can() {
    let mut table = json_lines();
    table.spec.storage.format.json = Some(kglue_crds::common::JsonOptions {
        json_path: Some("$[*]".into()),
    });
    assert!(ddl(&table, Dialect::Duckdb).sql.contains("  format = 'array',\n"));
    assert!(
        ddl(&table, Dialect::Spark)
            .sql
            .contains("USING json\nOPTIONS (multiLine 'true')\n")
    );
    assert_eq!(
        error(&table, Dialect::Athena),
        "--dialect athena cannot express table sales_raw.customers: its files are JSON documents holding one array of records (json.jsonPath $[*]), and Athena's JSON SerDe reads one record per line"
    );
    assert!(error(&table, Dialect::Trino).starts_with("--dialect trino cannot express table sales_raw.customers: "));
}

#[test]
fn a_json_path_into_documents_is_refused_naming_the_dialect() {
    let mut table = json_lines();
    table.spec.storage.format.json = Some(kglue_crds::common::JsonOptions {
        json_path: Some("$.records[*]".into()),
    });
    for dialect in [Dialect::Duckdb, Dialect::Trino, Dialect::Spark, Dialect::Athena] {
        assert_eq!(
            error(&table, dialect),
            format!(
                "--dialect {dialect} cannot express table sales_raw.customers: its records sit at json.jsonPath $.records[*] inside each document, and {} reads only JSON lines or documents that are one top-level array ($[*])",
                dialect.engine()
            )
        );
    }
}

#[test]
fn identifiers_with_quote_characters_are_escaped() {
    let table = table(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: raw.odd}
spec:
  databaseName: raw
  tableName: odd
  storage: {location: "s3://bucket/o'dd/", format: Parquet}
  columns:
    - {name: "say \"hi\" o'c", type: "struct<it's:int>"}
"#,
    );
    assert_eq!(
        ddl(&table, Dialect::Athena).sql,
        r#"CREATE EXTERNAL TABLE `raw`.`odd` (
  `say "hi" o'c` struct<`it's`:int>
)
STORED AS PARQUET
LOCATION 's3://bucket/o\'dd/';
"#
    );
    assert_eq!(
        ddl(&table, Dialect::Spark).sql,
        r#"CREATE TABLE `raw`.`odd` (
  `say "hi" o'c` struct<`it's`:int>
)
USING parquet
LOCATION 's3://bucket/o\'dd/';
"#
    );
    assert_eq!(
        ddl(&table, Dialect::Trino).sql,
        r#"CREATE TABLE "raw"."odd" (
  "say ""hi"" o'c" ROW("it's" INTEGER)
)
WITH (
  external_location = 's3://bucket/o''dd/',
  format = 'PARQUET'
);
"#
    );
    assert_eq!(
        ddl(&table, Dialect::Duckdb).sql,
        r#"CREATE SCHEMA IF NOT EXISTS "raw";
CREATE VIEW "raw"."odd" AS
SELECT
  CAST("say ""hi"" o'c" AS STRUCT("it's" INTEGER)) AS "say ""hi"" o'c"
FROM read_parquet(
  's3://bucket/o''dd/**/[!._]*',
  hive_partitioning = false,
  union_by_name = true
);
"#
    );
    assert_eq!(quote_ident(Dialect::Spark, "a`b"), "`a``b`");
    assert_eq!(field_name(Dialect::Trino, "order"), "\"order\"");
    assert_eq!(field_name(Dialect::Athena, "Sku"), "`Sku`");
}

#[test]
fn string_literals_escape_per_dialect() {
    assert_eq!(string_literal(Dialect::Athena, "\t"), r"'\t'");
    assert_eq!(string_literal(Dialect::Spark, r"a\b'c"), r"'a\\b\'c'");
    assert_eq!(string_literal(Dialect::Athena, "\u{1}"), r"'\u0001'");
    assert_eq!(string_literal(Dialect::Trino, "\t"), r"U&'\0009'");
    assert_eq!(string_literal(Dialect::Trino, "it's"), "'it''s'");
    assert_eq!(string_literal(Dialect::Duckdb, "\t"), r"E'\t'");
    assert_eq!(string_literal(Dialect::Duckdb, r"a\b'c"), r"'a\b''c'");
}

#[test]
fn athena_refuses_local_files() {
    let mut table = orders_daily();
    table.spec.storage.location = "file:///data/orders_daily/".into();
    assert_eq!(
        error(&table, Dialect::Athena),
        "--dialect athena cannot express table sales_curated.orders_daily: Athena reads only from S3 (s3://…), and the table's location is file:///data/orders_daily/; use --dialect duckdb, spark or trino for data on a local filesystem"
    );
    assert!(
        ddl(&table, Dialect::Duckdb)
            .sql
            .contains("  '/data/orders_daily/**/[!._]*',\n")
    );
    assert!(
        ddl(&table, Dialect::Spark)
            .sql
            .contains("LOCATION 'file:///data/orders_daily/'\n")
    );
}

#[test]
fn s3a_locations_become_s3_for_athena() {
    let mut table = orders_daily();
    table.spec.storage.location = "s3a://sales-curated/orders_daily".into();
    assert!(
        ddl(&table, Dialect::Athena)
            .sql
            .contains("LOCATION 's3://sales-curated/orders_daily/';\n")
    );
}

#[test]
fn an_unknown_type_is_an_error_naming_the_column() {
    let mut table = pipe_csv();
    table.spec.columns[1].type_ = "money".into();
    assert_eq!(
        error(&table, Dialect::Trino),
        r#"table sales_raw.partner_orders: column "amount" has an invalid type: unknown type "money" at offset 0 in "money""#
    );
    let mut table = pipe_csv();
    table.spec.partition_keys[0].type_ = "long".into();
    assert_eq!(
        error(&table, Dialect::Duckdb),
        r#"table sales_raw.partner_orders: partition key "dt" has an invalid type: unknown type "long" (did you mean bigint?) at offset 0 in "long""#
    );
}

#[test]
fn formats_an_engine_cannot_read_are_refused() {
    let mut table = orders_daily();
    table.spec.storage.format.format = DataFormat::Orc;
    table.spec.storage.format.compression = None;
    assert!(
        error(&table, Dialect::Duckdb).contains("its files are ORC, which DuckDB has no reader for"),
        "{}",
        error(&table, Dialect::Duckdb)
    );
    assert!(ddl(&table, Dialect::Athena).sql.contains("\nSTORED AS ORC\n"));
    assert!(ddl(&table, Dialect::Trino).sql.contains("  format = 'ORC',\n"));
    assert!(ddl(&table, Dialect::Spark).sql.contains("\nUSING orc\n"));

    let mut table = pipe_csv();
    table.spec.storage.format.compression = Some(Compression::Bzip2);
    assert_eq!(
        error(&table, Dialect::Duckdb),
        "--dialect duckdb cannot express table sales_raw.partner_orders: its files are bzip2 compressed, and DuckDB reads only gzip and zstd text files"
    );
}

#[test]
fn grok_tables_use_athenas_grok_serde() {
    let table = table(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: logs.access}
spec:
  databaseName: logs
  tableName: access
  storage:
    location: s3://logs/access/
    format: Grok
    grok:
      pattern: '%{IP:client} \[%{HTTPDATE:time}\] %{QUEUE:queue}'
      customPatterns: {QUEUE: '[0-9A-F]{7}'}
  columns:
    - {name: client, type: string}
    - {name: time, type: string}
    - {name: queue, type: string}
"#,
    );
    assert_eq!(
        ddl(&table, Dialect::Athena).sql,
        r"CREATE EXTERNAL TABLE `logs`.`access` (
  `client` string,
  `time` string,
  `queue` string
)
ROW FORMAT SERDE 'com.amazonaws.glue.serde.GrokSerDe'
WITH SERDEPROPERTIES (
  'input.format' = '%{IP:client} \\[%{HTTPDATE:time}\\] %{QUEUE:queue}',
  'input.grokCustomPatterns' = 'QUEUE [0-9A-F]{7}'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://logs/access/';
"
    );
    for dialect in [Dialect::Duckdb, Dialect::Trino, Dialect::Spark] {
        assert!(
            error(&table, dialect).contains("parsed by a grok pattern"),
            "{}",
            error(&table, dialect)
        );
    }
}

#[test]
fn positional_partition_folders_are_refused_by_duckdb_and_explained_elsewhere() {
    let mut table = pipe_csv();
    table.spec.partition_keys = vec![Column {
        name: "partition_0".into(),
        type_: "int".into(),
        comment: None,
    }];
    assert_eq!(
        error(&table, Dialect::Duckdb),
        "--dialect duckdb cannot express table sales_raw.partner_orders: its partition folders are not named key=value (key partition_0), and DuckDB reads partition values only from Hive-style folders"
    );
    let spark = ddl(&table, Dialect::Spark);
    assert_eq!(
        spark.notes,
        [
            "the partition folders are not named key=value (key partition_0), so MSCK REPAIR TABLE cannot find them: add each with ALTER TABLE `sales_raw`.`partner_orders` ADD PARTITION (`partition_0` = <value>) LOCATION 's3://sales-landing/partner/<folders>/'"
        ]
    );
}

#[test]
fn table_names_are_database_dot_table() {
    assert_eq!(parse_table_name("sales_raw.orders").ok(), Some(("sales_raw", "orders")));
    for bad in ["orders", "a.b.c", ".orders", "sales_raw."] {
        assert_eq!(
            parse_table_name(bad).err().map(|e| e.to_string()),
            Some(format!(
                "{bad:?} is not a table name: write DATABASE.TABLE with the Glue names, e.g. sales_raw.orders"
            ))
        );
    }
}

#[test]
fn a_missing_table_names_the_directory_and_the_tables_there() {
    let dir = kglue_crds::crate_dir!().join("../examples/sales-pipeline");
    let catalog = DirCatalog::load(&dir).expect("examples load");
    let error = catalog_table_ddl(&catalog, "sales_curated.nope", Dialect::Trino)
        .expect_err("no such table")
        .to_string();
    assert_eq!(
        error,
        format!(
            "table sales_curated.nope is not in the catalog at {}; the tables of database sales_curated there are: orders_daily",
            dir.display()
        )
    );
    let error = catalog_table_ddl(&catalog, "nowhere.nope", Dialect::Trino)
        .expect_err("no such database")
        .to_string();
    assert!(error.ends_with("; database nowhere has no tables there"), "{error}");

    let notes = |dialect| {
        catalog_table_ddl(&catalog, "sales_curated.orders_daily", dialect)
            .expect("ddl")
            .notes
    };
    assert_eq!(
        notes(Dialect::Duckdb),
        [
            "the table is read through Connection lake: give DuckDB its S3 settings and credentials first, e.g. CREATE SECRET (TYPE s3, ENDPOINT 'object-store.storage.svc.cluster.local:9000', USE_SSL false, URL_STYLE 'path', REGION 'us-east-1', KEY_ID '…', SECRET '…')"
        ]
    );
    assert_eq!(
        notes(Dialect::Trino)[1],
        "the table is read through Connection lake (endpoint http://object-store.storage.svc.cluster.local:9000, region us-east-1, path-style addressing): give Trino the same S3 settings and credentials; the DDL does not carry them"
    );
    assert_eq!(
        notes(Dialect::Athena)[1],
        "the table is read through Connection lake, whose endpoint http://object-store.storage.svc.cluster.local:9000 is not AWS S3: Athena reads only from AWS S3, so the data must be there for the table to return rows"
    );
}
