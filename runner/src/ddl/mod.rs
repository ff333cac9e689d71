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

mod athena;
mod ctx;
mod duckdb;
mod model;
mod quote;
mod spark;
mod trino;

use kglue_crds::Table;
use kglue_crds::common::DataFormat;

use self::athena::athena;
use self::ctx::{Ctx, parse_columns, partition_folders};
use self::duckdb::duckdb;
pub use self::model::{Ddl, DdlError, Dialect};
use self::quote::string_literal;
use self::spark::spark;
use self::trino::trino;
use crate::catalog::DirCatalog;

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

#[cfg(test)]
mod tests;
