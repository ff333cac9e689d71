//! A crawler's database targets (Glue's `JdbcTargets`): the tables and views an include path
//! selects, read from the database's own catalog (`kglue_jdbc::schema`), each becoming a Table of
//! format `Jdbc` whose location is its qualified name. Columns take the Glue type of their
//! database type; a column whose type has no Glue type is left out of the Table and reported by
//! name, never guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kglue_crds::common::{DataFormat, FormatSpec, StorageSpec};
use kglue_crds::connection::{JdbcEngine, JdbcTableName};
use kglue_crds::crawler::JdbcTarget;
use kglue_crds::{Table, TableSpec};
use kglue_jdbc::schema::{DescribedTable, IncludePath, describe};

use super::listing::Exclusions;
use super::plan::{CrawlError, CrawlReport, FoundTable, crawled_table, table_name};
use crate::storage::StoreResolver;

/// Table parameter: the primary key's columns, comma-separated in key order.
pub const PRIMARY_KEY_PARAMETER: &str = "primaryKey";
/// Table parameter: the database columns left out because their type has no Glue type.
pub const UNMAPPED_COLUMNS_PARAMETER: &str = "unmappedColumns";

/// The tables of the database target `target` (`spec.jdbcTargets[index]`).
pub async fn crawl_database(
    crawler: &str,
    database_name: &str,
    table_prefix: Option<&str>,
    index: usize,
    target: &JdbcTarget,
    resolver: &StoreResolver,
    report: &mut CrawlReport,
) -> Result<Vec<FoundTable>, CrawlError> {
    let field = format!("spec.jdbcTargets[{index}]");
    let connection = &target.connection_name;
    let endpoint = resolver
        .database(connection, &format!("{field}.connectionName"))
        .map_err(|source| CrawlError::Storage {
            target: field.clone(),
            source,
        })?;
    let engine = endpoint.url.engine;
    let include = IncludePath::parse(&target.path, engine, &endpoint.url.database)
        .map_err(|message| CrawlError::Invalid(format!("{field}.path: {message}")))?;
    let exclusions = Exclusions::new(&target.exclusions).map_err(|source| CrawlError::Listing {
        target: field.clone(),
        source,
    })?;
    let started = Instant::now();
    let described = describe(&endpoint, &include)
        .await
        .map_err(|source| CrawlError::Database {
            target: format!("{field} (connection {connection})"),
            source,
        })?;
    report.add_time("describe", started.elapsed());
    report.objects_listed += described.len();

    let mut found = Vec::new();
    for table in described {
        let name = JdbcTableName {
            database: match engine {
                JdbcEngine::Postgres => endpoint.url.database.clone(),
                JdbcEngine::Mysql => table.schema.clone(),
            },
            schema: (engine == JdbcEngine::Postgres).then(|| table.schema.clone()),
            table: table.name.clone(),
        };
        let path = match &name.schema {
            Some(schema) => format!("{}/{schema}/{}", name.database, name.table),
            None => format!("{}/{}", name.database, name.table),
        };
        if let Some(pattern) = exclusions.matching(&path) {
            report
                .skipped
                .push((name.to_string(), format!("excluded by {pattern:?}")));
            continue;
        }
        report.objects_read += 1;
        let glue_name = table_name(table_prefix, &path.replace('/', "_"));
        found.push(found_table(
            crawler,
            database_name,
            glue_name,
            connection,
            engine,
            &name,
            &table,
            report,
        ));
    }
    Ok(found)
}

/// The Table a described database table becomes.
#[allow(clippy::too_many_arguments)]
fn found_table(
    crawler: &str,
    database_name: &str,
    glue_name: String,
    connection: &str,
    engine: JdbcEngine,
    name: &JdbcTableName,
    described: &DescribedTable,
    report: &mut CrawlReport,
) -> FoundTable {
    let mut columns = Vec::new();
    let mut unmapped = Vec::new();
    for column in &described.columns {
        match &column.glue_type {
            Ok(glue_type) => columns.push(kglue_crds::common::Column {
                name: column.name.clone(),
                type_: glue_type.to_string(),
                comment: None,
            }),
            Err(reason) => {
                report.skipped.push((
                    format!("{name} column {}", column.name),
                    format!("left out of the table: {reason}"),
                ));
                unmapped.push(format!("{} {}", column.name, column.database_type));
            }
        }
    }
    let mut parameters = BTreeMap::from([
        (
            "classification".to_string(),
            match engine {
                JdbcEngine::Postgres => "postgresql",
                JdbcEngine::Mysql => "mysql",
            }
            .to_string(),
        ),
        ("connectionName".to_string(), connection.to_string()),
        (
            "typeOfData".to_string(),
            if described.view { "view" } else { "table" }.to_string(),
        ),
    ]);
    if !described.primary_key.is_empty() {
        parameters.insert(PRIMARY_KEY_PARAMETER.into(), described.primary_key.join(","));
    }
    if !unmapped.is_empty() {
        parameters.insert(UNMAPPED_COLUMNS_PARAMETER.into(), unmapped.join(", "));
    }
    let spec = TableSpec {
        database_name: database_name.to_string(),
        table_name: glue_name.clone(),
        description: None,
        storage: StorageSpec {
            location: name.to_string(),
            format: FormatSpec {
                format: DataFormat::Jdbc,
                compression: None,
                csv: None,
                json: None,
                grok: None,
                kafka: None,
            },
            connection: Some(connection.to_string()),
        },
        columns,
        partition_keys: Vec::new(),
        schema_locked: false,
        parameters,
    };
    let desired: Table = crawled_table(crawler, spec, None);
    FoundTable {
        name: glue_name,
        desired,
        origin: name.to_string(),
        skipped: Vec::new(),
        column_examples: Vec::new(),
        partitions: BTreeSet::new(),
    }
}
