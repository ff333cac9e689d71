//! `kglue table ddl`: a CREATE statement for a catalog table in the SQL of another engine, so that
//! DuckDB, Trino (Hive connector), Spark and Athena read the files the catalog describes: the
//! location, the format and its options, the columns and the partition keys with their types.
//!
//! - **athena**: `CREATE EXTERNAL TABLE` with Hive types, `PARTITIONED BY`, `STORED AS` or a
//!   `ROW FORMAT SERDE` (OpenCSVSerde, the OpenX JSON SerDe, Glue's GrokSerDe) and `LOCATION`.
//! - **spark**: `CREATE TABLE … USING <format> OPTIONS (…) PARTITIONED BY (…) LOCATION …`, the
//!   partition keys at the end of the column list.
//! - **trino**: `CREATE TABLE … WITH (external_location = …, format = …, partitioned_by = …)`, for
//!   the Hive connector.
//! - **duckdb**: DuckDB has no external tables, so a `CREATE VIEW` over `read_parquet`, `read_csv`,
//!   `read_json` or `read_avro` with Hive partitioning and the partition keys' types.
//!
//! Statements the engine needs after the CREATE (loading partitions) and facts the DDL cannot
//! carry (the S3 endpoint of a Connection) come back as [`Ddl::notes`]. What an engine cannot read
//! at all (a local file for Athena, records inside JSON documents, ORC in DuckDB) is an error that
//! names the dialect, never DDL that fails later.

use std::fmt;
use std::path::PathBuf;

use kglue_crds::Table;
use kglue_crds::common::{Column, Compression, CsvOptions, DataFormat};
use kglue_crds::glue_type::{GlueType, TypeParseError};

use crate::catalog::{CatalogError, DirCatalog};

/// The SQL dialect to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    /// DuckDB: a view over its file readers.
    Duckdb,
    /// Trino's Hive connector.
    Trino,
    /// Spark SQL data source tables.
    Spark,
    /// Amazon Athena (Hive DDL).
    Athena,
}

impl Dialect {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Duckdb => "duckdb",
            Dialect::Trino => "trino",
            Dialect::Spark => "spark",
            Dialect::Athena => "athena",
        }
    }

    /// The engine's name in prose.
    fn engine(self) -> &'static str {
        match self {
            Dialect::Duckdb => "DuckDB",
            Dialect::Trino => "Trino",
            Dialect::Spark => "Spark",
            Dialect::Athena => "Athena",
        }
    }

    /// Whether identifiers are quoted with backticks (Hive's family) rather than double quotes.
    fn backticks(self) -> bool {
        matches!(self, Dialect::Spark | Dialect::Athena)
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CREATE statement and what to know besides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddl {
    /// The statement(s), each ending with `;` and a line break. SQL comment lines before the
    /// statement say where the DDL differs from the catalog.
    pub sql: String,
    /// What the engine needs besides the statement (loading partitions, S3 endpoint and
    /// credentials), one sentence each.
    pub notes: Vec<String>,
}

/// Why no DDL could be written.
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// The table name is not `database.table`.
    #[error("{0:?} is not a table name: write DATABASE.TABLE with the Glue names, e.g. sales_raw.orders")]
    BadName(String),
    /// The catalog directory could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No such table in the catalog directory.
    #[error("table {database}.{table} is not in the catalog at {}; {}", .dir.display(), existing_tables(.database, .existing))]
    NotFound {
        /// The database name asked for.
        database: String,
        /// The table name asked for.
        table: String,
        /// The catalog directory.
        dir: PathBuf,
        /// The tables that database does have, sorted.
        existing: Vec<String>,
    },
    /// A column or partition key type that does not parse.
    #[error("table {table}: {} {column:?} has an invalid type: {error}", if *.partition_key { "partition key" } else { "column" })]
    InvalidType {
        /// `database.table`.
        table: String,
        /// The column or partition key.
        column: String,
        /// Whether it is a partition key.
        partition_key: bool,
        /// What is wrong with the type.
        error: Box<TypeParseError>,
    },
    /// The engine cannot read the table as the catalog describes it.
    #[error("--dialect {dialect} cannot express table {table}: {reason}")]
    Unsupported {
        /// The dialect asked for.
        dialect: Dialect,
        /// `database.table`.
        table: String,
        /// Why, and what to do instead.
        reason: String,
    },
}

fn existing_tables(database: &str, existing: &[String]) -> String {
    if existing.is_empty() {
        format!("database {database} has no tables there")
    } else {
        format!("the tables of database {database} there are: {}", existing.join(", "))
    }
}

/// Splits `database.table` into its two Glue names.
pub fn parse_table_name(name: &str) -> Result<(&str, &str), DdlError> {
    match name.split_once('.') {
        Some((database, table)) if !database.is_empty() && !table.is_empty() && !table.contains('.') => {
            Ok((database, table))
        }
        _ => Err(DdlError::BadName(name.to_string())),
    }
}

/// The DDL of the table `name` (`database.table`) of a catalog directory. Besides
/// [`table_ddl`]'s notes, says which S3 endpoint the table's Connection points at.
pub fn catalog_table_ddl(catalog: &DirCatalog, name: &str, dialect: Dialect) -> Result<Ddl, DdlError> {
    let (database, table_name) = parse_table_name(name)?;
    let Some(table) = catalog.table(database, table_name) else {
        let mut existing: Vec<String> = catalog.tables_in(database).map(|t| t.spec.table_name.clone()).collect();
        existing.sort();
        return Err(DdlError::NotFound {
            database: database.to_string(),
            table: table_name.to_string(),
            dir: catalog.dir().to_path_buf(),
            existing,
        });
    };
    let mut ddl = table_ddl(table, dialect)?;
    let storage = &table.spec.storage;
    if let Some(connection) = &storage.connection
        && (storage.location.starts_with("s3://") || storage.location.starts_with("s3a://"))
    {
        let note = match catalog.connections().get(connection).and_then(|c| c.s3.as_ref()) {
            Some(s3) if dialect == Dialect::Athena && s3.endpoint.is_some() => format!(
                "the table is read through Connection {connection}, whose endpoint {} is not AWS S3: Athena reads only from AWS S3, so the data must be there for the table to return rows",
                s3.endpoint.as_deref().unwrap_or_default()
            ),
            Some(s3) if dialect == Dialect::Duckdb => {
                let mut options = vec!["TYPE s3".to_string()];
                if let Some(endpoint) = &s3.endpoint {
                    let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                    options.push(format!(
                        "ENDPOINT {}",
                        string_literal(dialect, host.trim_end_matches('/'))
                    ));
                    if scheme == "http" {
                        options.push("USE_SSL false".into());
                    }
                }
                if s3.force_path_style {
                    options.push("URL_STYLE 'path'".into());
                }
                if let Some(region) = &s3.region {
                    options.push(format!("REGION {}", string_literal(dialect, region)));
                }
                options.push("KEY_ID '…', SECRET '…'".into());
                format!(
                    "the table is read through Connection {connection}: give DuckDB its S3 settings and credentials first, e.g. CREATE SECRET ({})",
                    options.join(", ")
                )
            }
            Some(s3) => {
                let mut details = Vec::new();
                if let Some(endpoint) = &s3.endpoint {
                    details.push(format!("endpoint {endpoint}"));
                }
                if let Some(region) = &s3.region {
                    details.push(format!("region {region}"));
                }
                if s3.force_path_style {
                    details.push("path-style addressing".to_string());
                }
                let details = if details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", details.join(", "))
                };
                format!(
                    "the table is read through Connection {connection}{details}: give {} the same S3 settings and credentials; the DDL does not carry them",
                    dialect.engine()
                )
            }
            None => format!(
                "the table names Connection {connection}, which is not in the catalog directory: give {} the S3 endpoint and credentials it stands for",
                dialect.engine()
            ),
        };
        ddl.notes.push(note);
    }
    Ok(ddl)
}

/// A column with its type parsed.
#[derive(Clone, Debug)]
struct Col {
    name: String,
    type_: GlueType,
    comment: Option<String>,
}

/// The CREATE statement that lets `dialect` read `table`.
pub fn table_ddl(table: &Table, dialect: Dialect) -> Result<Ddl, DdlError> {
    let spec = &table.spec;
    let name = format!("{}.{}", spec.database_name, spec.table_name);
    let unsupported = |reason: String| DdlError::Unsupported {
        dialect,
        table: name.clone(),
        reason,
    };
    let columns = parse_columns(&name, &spec.columns, false)?;
    let keys = parse_columns(&name, &spec.partition_keys, true)?;
    if columns.is_empty() {
        return Err(unsupported(
            "it has no columns, and a CREATE statement needs at least one: crawl the data or declare them".into(),
        ));
    }
    let format = &spec.storage.format;
    let json_array = match (format.format, format.json.as_ref().and_then(|j| j.json_path.as_deref())) {
        (DataFormat::Json, Some("$[*]")) => true,
        (DataFormat::Json, Some(path)) => {
            return Err(unsupported(format!(
                "its records sit at json.jsonPath {path} inside each document, and {} reads only JSON lines or documents that are one top-level array ($[*])",
                dialect.engine()
            )));
        }
        _ => false,
    };
    let mut location = spec.storage.location.clone();
    if !location.ends_with('/') {
        location.push('/');
    }
    let folders = partition_folders(table);
    let mut ctx = Ctx {
        dialect,
        name,
        database: spec.database_name.clone(),
        table: spec.table_name.clone(),
        description: spec.description.clone(),
        columns,
        keys,
        location,
        format: format.format,
        compression: format.compression,
        csv: format.csv.clone().unwrap_or_default(),
        json_array,
        grok: format.grok.clone(),
        notes: Vec::new(),
    };
    let sql = match dialect {
        Dialect::Athena => athena(&mut ctx)?,
        Dialect::Spark => spark(&mut ctx)?,
        Dialect::Trino => trino(&mut ctx)?,
        Dialect::Duckdb => duckdb(&mut ctx, folders.as_deref())?,
    };
    if !ctx.keys.is_empty() && dialect != Dialect::Duckdb {
        let note = match (&folders, dialect) {
            (None, Dialect::Trino) => format!(
                "CREATE TABLE does not load partitions: run CALL system.sync_partition_metadata({}, {}, 'ADD') once the table exists, and again when new partitions arrive",
                ctx.string(&ctx.database),
                ctx.string(&ctx.table)
            ),
            (None, _) => format!(
                "CREATE TABLE does not load partitions: run MSCK REPAIR TABLE {} once the table exists, and again when new partitions arrive",
                ctx.qualified()
            ),
            (Some(example), Dialect::Trino) => format!(
                "the partition folders are not named key=value ({example}), so Trino cannot discover them: register each with CALL system.register_partition({}, {}, ARRAY[{}], ARRAY[<values>], {})",
                ctx.string(&ctx.database),
                ctx.string(&ctx.table),
                ctx.keys
                    .iter()
                    .map(|k| ctx.string(&k.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                ctx.string(&format!("{}<folders>/", ctx.location)),
            ),
            (Some(example), _) => format!(
                "the partition folders are not named key=value ({example}), so MSCK REPAIR TABLE cannot find them: add each with ALTER TABLE {} ADD PARTITION ({}) LOCATION {}",
                ctx.qualified(),
                ctx.keys
                    .iter()
                    .map(|k| format!("{} = <value>", ctx.ident(&k.name)))
                    .collect::<Vec<_>>()
                    .join(", "),
                ctx.string(&format!("{}<folders>/", ctx.location)),
            ),
        };
        ctx.notes.push(note);
    }
    Ok(Ddl { sql, notes: ctx.notes })
}

fn parse_columns(table: &str, columns: &[Column], partition_key: bool) -> Result<Vec<Col>, DdlError> {
    columns
        .iter()
        .map(|column| {
            let type_ = GlueType::parse(&column.type_).map_err(|error| DdlError::InvalidType {
                table: table.to_string(),
                column: column.name.clone(),
                partition_key,
                error: Box::new(error),
            })?;
            Ok(Col {
                name: column.name.clone(),
                type_,
                comment: column.comment.clone(),
            })
        })
        .collect()
}

/// `Some(evidence)` when the table's partition folders are not Hive-style `key=value` names, e.g.
/// `e.g. 2024/01/` or `keys partition_0, partition_1`: the crawler names such levels
/// `partition_0`, `partition_1`, …, and the partition summary in status may show the folders.
fn partition_folders(table: &Table) -> Option<String> {
    let newest = table
        .status
        .as_ref()
        .and_then(|s| s.partitions.as_ref())
        .map(|p| p.newest.as_slice())
        .unwrap_or_default();
    if let Some(folder) = newest.iter().find(|p| p.split('/').any(|level| !level.contains('='))) {
        return Some(format!("e.g. {folder}/"));
    }
    let positional: Vec<&str> = table
        .spec
        .partition_keys
        .iter()
        .map(|k| k.name.as_str())
        .filter(|name| {
            name.strip_prefix("partition_")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    (!positional.is_empty()).then(|| {
        let s = if positional.len() == 1 { "" } else { "s" };
        format!("key{s} {}", positional.join(", "))
    })
}

/// What every dialect's writer needs.
struct Ctx {
    dialect: Dialect,
    /// `database.table`, for messages.
    name: String,
    database: String,
    table: String,
    description: Option<String>,
    columns: Vec<Col>,
    keys: Vec<Col>,
    /// The location, ending with `/`.
    location: String,
    format: DataFormat,
    compression: Option<Compression>,
    csv: CsvOptions,
    json_array: bool,
    grok: Option<kglue_crds::common::GrokOptions>,
    notes: Vec<String>,
}

impl Ctx {
    fn unsupported(&self, reason: String) -> DdlError {
        DdlError::Unsupported {
            dialect: self.dialect,
            table: self.name.clone(),
            reason,
        }
    }

    fn ident(&self, name: &str) -> String {
        quote_ident(self.dialect, name)
    }

    fn qualified(&self) -> String {
        format!("{}.{}", self.ident(&self.database), self.ident(&self.table))
    }

    fn string(&self, value: &str) -> String {
        string_literal(self.dialect, value)
    }

    fn type_(&self, type_: &GlueType) -> String {
        render_type(self.dialect, type_)
    }

    fn delimiter(&self) -> &str {
        self.csv.delimiter.as_deref().unwrap_or(",")
    }

    fn quote(&self) -> &str {
        self.csv.quote.as_deref().unwrap_or("\"")
    }

    fn header(&self) -> bool {
        self.csv.header.unwrap_or(true)
    }

    /// `  name type COMMENT '…'` lines of a column list (Hive, Spark and Trino).
    fn column_lines(&self, columns: &[Col], types: impl Fn(&Col) -> String) -> Vec<String> {
        columns
            .iter()
            .map(|c| {
                let mut line = format!("  {} {}", self.ident(&c.name), types(c));
                if let Some(comment) = &c.comment {
                    line.push_str(&format!(" COMMENT {}", self.string(comment)));
                }
                line
            })
            .collect()
    }

    fn refuse_grok(&self) -> DdlError {
        self.unsupported(format!(
            "its files are text lines parsed by a grok pattern, which {} has no reader for (Athena has: --dialect athena)",
            self.dialect.engine()
        ))
    }
}

fn athena(ctx: &mut Ctx) -> Result<String, DdlError> {
    let location = if let Some(rest) = ctx.location.strip_prefix("s3a://") {
        format!("s3://{rest}")
    } else if ctx.location.starts_with("s3://") {
        ctx.location.clone()
    } else {
        return Err(ctx.unsupported(format!(
            "Athena reads only from S3 (s3://…), and the table's location is {}; use --dialect duckdb, spark or trino for data on a local filesystem",
            ctx.location
        )));
    };
    if ctx.format == DataFormat::Json && ctx.json_array {
        return Err(ctx.unsupported(
            "its files are JSON documents holding one array of records (json.jsonPath $[*]), and Athena's JSON SerDe reads one record per line".into(),
        ));
    }
    // Athena's OpenCSVSerde parses only these types from text; others (dates as text, timestamps
    // as text, decimals…) fail at query time, so they are declared string.
    let csv_text = |t: &GlueType| {
        matches!(
            t,
            GlueType::Boolean | GlueType::Int | GlueType::BigInt | GlueType::Double | GlueType::String
        )
    };
    let is_csv = ctx.format == DataFormat::Csv;
    let lines = ctx.column_lines(&ctx.columns, |c| {
        if is_csv && !csv_text(&c.type_) {
            "string".to_string()
        } else {
            ctx.type_(&c.type_)
        }
    });
    if is_csv {
        let as_text: Vec<String> = ctx
            .columns
            .iter()
            .filter(|c| !csv_text(&c.type_))
            .map(|c| format!("{} ({})", ctx.ident(&c.name), ctx.type_(&c.type_)))
            .collect();
        if !as_text.is_empty() {
            ctx.notes.push(format!(
                "Athena's OpenCSVSerde parses only boolean, int, bigint, double and string from text, so {} {} declared string: cast in queries",
                as_text.join(", "),
                if as_text.len() == 1 { "is" } else { "are" }
            ));
        }
        if let Some(null) = &ctx.csv.null_value {
            ctx.notes.push(format!(
                "Athena's OpenCSVSerde has no NULL marker: fields holding {null:?} (csv.nullValue) read as that text"
            ));
        }
    }
    let mut sql = format!(
        "CREATE EXTERNAL TABLE {} (\n{}\n)\n",
        ctx.qualified(),
        lines.join(",\n")
    );
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("COMMENT {}\n", ctx.string(description)));
    }
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx
            .column_lines(&ctx.keys, |c| ctx.type_(&c.type_))
            .into_iter()
            .map(|l| l.trim_start().to_string())
            .collect();
        sql.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
    }
    match ctx.format {
        DataFormat::Parquet => sql.push_str("STORED AS PARQUET\n"),
        DataFormat::Avro => sql.push_str("STORED AS AVRO\n"),
        DataFormat::Orc => sql.push_str("STORED AS ORC\n"),
        DataFormat::Csv => {
            let mut properties = vec![
                format!("  'separatorChar' = {}", ctx.string(ctx.delimiter())),
                format!("  'quoteChar' = {}", ctx.string(ctx.quote())),
            ];
            if let Some(escape) = &ctx.csv.escape {
                properties.push(format!("  'escapeChar' = {}", ctx.string(escape)));
            }
            sql.push_str(&format!(
                "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\nWITH SERDEPROPERTIES (\n{}\n)\nSTORED AS TEXTFILE\n",
                properties.join(",\n")
            ));
        }
        DataFormat::Json => {
            sql.push_str("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS TEXTFILE\n");
        }
        DataFormat::Grok => {
            let Some(grok) = &ctx.grok else {
                return Err(ctx.unsupported("its format is Grok but it has no grok pattern".into()));
            };
            let mut properties = vec![format!("  'input.format' = {}", ctx.string(&grok.pattern))];
            if !grok.custom_patterns.is_empty() {
                let patterns: Vec<String> = grok
                    .custom_patterns
                    .iter()
                    .map(|(name, regex)| format!("{name} {regex}"))
                    .collect();
                properties.push(format!(
                    "  'input.grokCustomPatterns' = {}",
                    ctx.string(&patterns.join("\n"))
                ));
            }
            sql.push_str(&format!(
                "ROW FORMAT SERDE 'com.amazonaws.glue.serde.GrokSerDe'\nWITH SERDEPROPERTIES (\n{}\n)\nSTORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n",
                properties.join(",\n")
            ));
        }
    }
    sql.push_str(&format!("LOCATION {}", ctx.string(&location)));
    if ctx.format == DataFormat::Csv && ctx.header() {
        sql.push_str("\nTBLPROPERTIES ('skip.header.line.count' = '1')");
    }
    sql.push_str(";\n");
    Ok(sql)
}

fn spark(ctx: &mut Ctx) -> Result<String, DdlError> {
    let source = match ctx.format {
        DataFormat::Parquet => "parquet",
        DataFormat::Csv => "csv",
        DataFormat::Json => "json",
        DataFormat::Avro => "avro",
        DataFormat::Orc => "orc",
        DataFormat::Grok => return Err(ctx.refuse_grok()),
    };
    let mut options = Vec::new();
    match ctx.format {
        DataFormat::Csv => {
            options.push(format!(
                "header {}",
                ctx.string(if ctx.header() { "true" } else { "false" })
            ));
            options.push(format!("sep {}", ctx.string(ctx.delimiter())));
            options.push(format!("quote {}", ctx.string(ctx.quote())));
            // Spark's default escape is a backslash; the catalog's default is a doubled quote.
            let escape = ctx.csv.escape.clone().unwrap_or_else(|| ctx.quote().to_string());
            options.push(format!("escape {}", ctx.string(&escape)));
            if let Some(null) = &ctx.csv.null_value {
                options.push(format!("nullValue {}", ctx.string(null)));
            }
        }
        DataFormat::Json if ctx.json_array => options.push(format!("multiLine {}", ctx.string("true"))),
        _ => {}
    }
    let all: Vec<Col> = ctx.columns.iter().chain(&ctx.keys).cloned().collect();
    let lines = ctx.column_lines(&all, |c| ctx.type_(&c.type_));
    let mut sql = format!(
        "CREATE TABLE {} (\n{}\n)\nUSING {source}\n",
        ctx.qualified(),
        lines.join(",\n")
    );
    if !options.is_empty() {
        sql.push_str(&format!("OPTIONS ({})\n", options.join(", ")));
    }
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx.keys.iter().map(|k| ctx.ident(&k.name)).collect();
        sql.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
    }
    sql.push_str(&format!("LOCATION {}", ctx.string(&ctx.location)));
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("\nCOMMENT {}", ctx.string(description)));
    }
    sql.push_str(";\n");
    Ok(sql)
}

fn trino(ctx: &mut Ctx) -> Result<String, DdlError> {
    let format = match ctx.format {
        DataFormat::Parquet => "PARQUET",
        DataFormat::Csv => "CSV",
        DataFormat::Json => "JSON",
        DataFormat::Avro => "AVRO",
        DataFormat::Orc => "ORC",
        DataFormat::Grok => return Err(ctx.refuse_grok()),
    };
    if ctx.format == DataFormat::Json && ctx.json_array {
        return Err(ctx.unsupported(
            "its files are JSON documents holding one array of records (json.jsonPath $[*]), and Trino's JSON format reads one record per line".into(),
        ));
    }
    let is_csv = ctx.format == DataFormat::Csv;
    let mut sql = String::new();
    if is_csv {
        // The Hive connector refuses CSV tables with data columns of any other type (partition
        // keys may keep theirs), so the DDL declares VARCHAR and says so.
        let typed: Vec<String> = ctx
            .columns
            .iter()
            .filter(|c| c.type_ != GlueType::String)
            .map(|c| format!("{} {}", ctx.ident(&c.name), ctx.type_(&c.type_)))
            .collect();
        if !typed.is_empty() {
            sql.push_str(
                "-- Trino's CSV format reads only VARCHAR columns, so every data column is declared VARCHAR.\n",
            );
            sql.push_str(&format!(
                "-- The catalog's types, to CAST to in queries: {}.\n",
                typed.join(", ")
            ));
        }
        if let Some(null) = &ctx.csv.null_value {
            ctx.notes.push(format!(
                "Trino's CSV format has no NULL marker: fields holding {null:?} (csv.nullValue) read as that text"
            ));
        }
    }
    let mut lines = ctx.column_lines(&ctx.columns, |c| {
        if is_csv {
            "VARCHAR".to_string()
        } else {
            ctx.type_(&c.type_)
        }
    });
    lines.extend(ctx.column_lines(&ctx.keys, |c| ctx.type_(&c.type_)));
    sql.push_str(&format!(
        "CREATE TABLE {} (\n{}\n)\n",
        ctx.qualified(),
        lines.join(",\n")
    ));
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("COMMENT {}\n", ctx.string(description)));
    }
    let mut properties = vec![
        format!("  external_location = {}", ctx.string(&ctx.location)),
        format!("  format = {}", ctx.string(format)),
    ];
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx.keys.iter().map(|k| ctx.string(&k.name)).collect();
        properties.push(format!("  partitioned_by = ARRAY[{}]", keys.join(", ")));
    }
    if is_csv {
        properties.push(format!("  csv_separator = {}", ctx.string(ctx.delimiter())));
        properties.push(format!("  csv_quote = {}", ctx.string(ctx.quote())));
        if let Some(escape) = &ctx.csv.escape {
            properties.push(format!("  csv_escape = {}", ctx.string(escape)));
        }
        if ctx.header() {
            properties.push("  skip_header_line_count = 1".to_string());
        }
    }
    sql.push_str(&format!("WITH (\n{}\n);\n", properties.join(",\n")));
    Ok(sql)
}

fn duckdb(ctx: &mut Ctx, folders: Option<&str>) -> Result<String, DdlError> {
    if let Some(example) = folders {
        return Err(ctx.unsupported(format!(
            "its partition folders are not named key=value ({example}), and DuckDB reads partition values only from Hive-style folders"
        )));
    }
    let reader = match ctx.format {
        DataFormat::Parquet => "read_parquet",
        DataFormat::Avro => "read_avro",
        DataFormat::Csv => "read_csv",
        DataFormat::Json => "read_json",
        DataFormat::Orc => {
            return Err(ctx.unsupported(
                "its files are ORC, which DuckDB has no reader for; use --dialect trino, spark or athena".into(),
            ));
        }
        DataFormat::Grok => return Err(ctx.refuse_grok()),
    };
    let text = matches!(ctx.format, DataFormat::Csv | DataFormat::Json);
    if text && let Some(codec @ (Compression::Bzip2 | Compression::Xz)) = ctx.compression {
        return Err(ctx.unsupported(format!(
            "its files are {} compressed, and DuckDB reads only gzip and zstd text files",
            if codec == Compression::Bzip2 { "bzip2" } else { "xz" }
        )));
    }
    // file:///path becomes the plain path; s3:// stays. Like Hive, Spark and Trino, skip files and
    // folders' markers whose names start with '.' or '_' (_SUCCESS, .crc files).
    let root = ctx.location.strip_prefix("file://").unwrap_or(&ctx.location);
    let mut arguments = vec![ctx.string(&format!("{root}**/[!._]*"))];
    let struct_of = |columns: &[Col]| {
        let entries: Vec<String> = columns
            .iter()
            .map(|c| format!("{}: {}", ctx.string(&c.name), ctx.string(&ctx.type_(&c.type_))))
            .collect();
        entries
    };
    match ctx.format {
        DataFormat::Csv => {
            arguments.push(format!("delim = {}", ctx.string(ctx.delimiter())));
            arguments.push(format!("quote = {}", ctx.string(ctx.quote())));
            let escape = ctx.csv.escape.clone().unwrap_or_else(|| ctx.quote().to_string());
            arguments.push(format!("escape = {}", ctx.string(&escape)));
            arguments.push(format!("header = {}", ctx.header()));
            if let Some(null) = &ctx.csv.null_value {
                arguments.push(format!("nullstr = {}", ctx.string(null)));
            }
        }
        DataFormat::Json => {
            let format = if ctx.json_array { "array" } else { "newline_delimited" };
            arguments.push(format!("format = {}", ctx.string(format)));
        }
        _ => {}
    }
    if text {
        arguments.push(format!(
            "columns = {{\n    {}\n  }}",
            struct_of(&ctx.columns).join(",\n    ")
        ));
    }
    if ctx.keys.is_empty() {
        arguments.push("hive_partitioning = false".into());
    } else {
        arguments.push("hive_partitioning = true".into());
        arguments.push(format!("hive_types = {{{}}}", struct_of(&ctx.keys).join(", ")));
    }
    let select = if text {
        // The reader applies the catalog's types itself.
        "SELECT *".to_string()
    } else {
        // Self-describing files: project the catalog's columns, cast to the catalog's types.
        arguments.push("union_by_name = true".into());
        let mut projection: Vec<String> = ctx
            .columns
            .iter()
            .map(|c| {
                let name = ctx.ident(&c.name);
                format!("  CAST({name} AS {}) AS {name}", ctx.type_(&c.type_))
            })
            .collect();
        projection.extend(ctx.keys.iter().map(|k| format!("  {}", ctx.ident(&k.name))));
        format!("SELECT\n{}", projection.join(",\n"))
    };
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {};\nCREATE VIEW {} AS\n{select}\nFROM {reader}(\n  {}\n);\n",
        ctx.ident(&ctx.database),
        ctx.qualified(),
        arguments.join(",\n  ")
    ))
}

/// A quoted identifier: backticks for Hive, Spark and Athena, double quotes for Trino and DuckDB;
/// the quote character inside is doubled.
fn quote_ident(dialect: Dialect, name: &str) -> String {
    if dialect.backticks() {
        format!("`{}`", name.replace('`', "``"))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Words that must be quoted as struct field names in at least one of the engines.
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "between",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "column",
    "constraint",
    "create",
    "cross",
    "cube",
    "current",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "date",
    "default",
    "delete",
    "desc",
    "describe",
    "distinct",
    "drop",
    "else",
    "end",
    "escape",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "function",
    "grant",
    "group",
    "grouping",
    "having",
    "in",
    "inner",
    "insert",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "local",
    "map",
    "natural",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "primary",
    "range",
    "recursive",
    "references",
    "revoke",
    "right",
    "rollup",
    "row",
    "rows",
    "select",
    "set",
    "some",
    "struct",
    "table",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "unnest",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

/// A struct field name inside a type: as it is when it is a plain lowercase identifier, quoted
/// otherwise (spaces, dashes, upper case, reserved words).
fn field_name(dialect: Dialect, name: &str) -> String {
    let plain = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        quote_ident(dialect, name)
    }
}

/// A type in the dialect's spelling.
fn render_type(dialect: Dialect, type_: &GlueType) -> String {
    use GlueType::*;
    let render = |t: &GlueType| render_type(dialect, t);
    match dialect {
        Dialect::Athena | Dialect::Spark => match type_ {
            Array(element) => format!("array<{}>", render(element)),
            Map(key, value) => format!("map<{},{}>", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{}:{}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("struct<{}>", fields.join(","))
            }
            primitive => primitive.to_string(),
        },
        Dialect::Trino => match type_ {
            Boolean => "BOOLEAN".into(),
            TinyInt => "TINYINT".into(),
            SmallInt => "SMALLINT".into(),
            Int => "INTEGER".into(),
            BigInt => "BIGINT".into(),
            Float => "REAL".into(),
            Double => "DOUBLE".into(),
            Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            String => "VARCHAR".into(),
            Char(n) => format!("CHAR({n})"),
            Varchar(n) => format!("VARCHAR({n})"),
            Binary => "VARBINARY".into(),
            Date => "DATE".into(),
            Timestamp => "TIMESTAMP(3)".into(),
            Array(element) => format!("ARRAY({})", render(element)),
            Map(key, value) => format!("MAP({}, {})", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{} {}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("ROW({})", fields.join(", "))
            }
        },
        Dialect::Duckdb => match type_ {
            Boolean => "BOOLEAN".into(),
            TinyInt => "TINYINT".into(),
            SmallInt => "SMALLINT".into(),
            Int => "INTEGER".into(),
            BigInt => "BIGINT".into(),
            Float => "FLOAT".into(),
            Double => "DOUBLE".into(),
            Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            // DuckDB's VARCHAR has no length; CHAR(n) and VARCHAR(n) are VARCHAR.
            String | Char(_) | Varchar(_) => "VARCHAR".into(),
            Binary => "BLOB".into(),
            Date => "DATE".into(),
            Timestamp => "TIMESTAMP".into(),
            Array(element) => format!("{}[]", render(element)),
            Map(key, value) => format!("MAP({}, {})", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{} {}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("STRUCT({})", fields.join(", "))
            }
        },
    }
}

/// A string literal.
///
/// - Hive, Spark, Athena: backslash escapes (`\'`, `\\`, `\t`, `\n`, `\uXXXX`), which their
///   parsers unescape (a doubled quote would be two adjacent literals there).
/// - Trino: a doubled quote; text with control characters as a Unicode literal `U&'\0009'`.
/// - DuckDB: a doubled quote; text with tabs or line breaks as an escape string `E'\t'`.
fn string_literal(dialect: Dialect, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    match dialect {
        Dialect::Athena | Dialect::Spark => {
            out.push('\'');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
        }
        Dialect::Trino if value.chars().any(char::is_control) => {
            out.push_str("U&'");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("''"),
                    c if c.is_control() => out.push_str(&format!("\\{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
        }
        Dialect::Duckdb if value.contains(['\t', '\n', '\r']) => {
            out.push_str("E'");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        Dialect::Trino | Dialect::Duckdb => {
            out.push('\'');
            out.push_str(&value.replace('\'', "''"));
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn table(yaml: &str) -> Table {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("test table: {e}\n{yaml}"))
    }

    fn orders_daily() -> Table {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sales-pipeline/table-orders-daily.yaml");
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
        assert!(
            error(&table, Dialect::Trino).starts_with("--dialect trino cannot express table sales_raw.customers: ")
        );
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
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sales-pipeline");
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
}
