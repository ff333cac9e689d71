//! `kglue sql`: SQL over the catalog, read-only. Every Database of the catalog is a schema and
//! every Table a table (`SELECT … FROM sales.orders`), read where the Table says its data is, with
//! its declared columns and partition keys — the same reading as a Job's table source, without
//! bookmarks. Statements are checked by the SQL sandbox ([`check_session`]): queries, EXPLAIN,
//! SHOW, DESCRIBE and the session's own views only.
//!
//! - [`catalog`]: the catalog as the engine's catalog, tables built when first named, and the log
//!   of what each statement read from object storage.
//! - [`output`]: answers as an aligned table, CSV or JSON.
//! - [`remote`]: the prompt's statements sent to a Session's pod (`kglue sql --session`).
//! - [`secrets`]: a namespace's Secrets copied for `kglue sql -n`.
//! - [`serve`]: the same over the PostgreSQL wire protocol (`kglue serve`, a Session's pod).
//! - [`shell`]: the prompt's logic (statements over lines, `\d`, `\timing`, `\q`).

pub mod catalog;
pub mod lake_table;
pub mod output;
pub mod remote;
pub mod secrets;
pub mod serve;
pub mod shell;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::catalog::DirCatalog;
use crate::etl::run::{Resources, engine_runtime};
use crate::etl::sandbox::{RefusedInSession, check_session, object_stores};
use crate::etl::source::reading_sources;
use crate::storage::StoreResolver;
use catalog::{LakeCatalog, ReadLog, Reads};

/// The engine catalog the lake's databases are schemas of.
pub const CATALOG: &str = "kglue";
/// The schema of a session's own views when it names no database.
pub const SESSION_SCHEMA: &str = "session";

/// Why a statement gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The SQL does not parse (the message gives the line and column).
    #[error("{0}")]
    Syntax(String),
    /// The sandbox refused the statement.
    #[error(transparent)]
    Refused(#[from] RefusedInSession),
    /// Planning or running it failed (the engine's message, naming the table or column).
    #[error("{0}")]
    Engine(String),
    /// A name the catalog does not have.
    #[error("{0}")]
    Catalog(String),
}

/// One statement's answer.
#[derive(Debug)]
pub struct Answer {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What it read from object storage (`None`: not known here, the statement ran in a
    /// session's pod).
    pub reads: Option<Reads>,
    /// How long it took, planning included.
    pub elapsed: Duration,
}

impl Answer {
    /// Rows in the answer.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Where a session's catalog is read from, again before each statement.
pub enum CatalogSource {
    /// A directory of manifests.
    Dir(PathBuf),
    /// A namespace of the cluster.
    Namespace {
        /// The client.
        client: kube::Client,
        /// The namespace.
        namespace: String,
    },
}

impl CatalogSource {
    /// The catalog as it is now.
    pub async fn read(&self) -> Result<DirCatalog, SqlError> {
        match self {
            CatalogSource::Dir(dir) => DirCatalog::load(dir).map_err(|e| SqlError::Catalog(e.to_string())),
            CatalogSource::Namespace { client, namespace } => crate::cluster::catalog_snapshot(client, namespace)
                .await
                .map_err(|e| SqlError::Catalog(e.to_string())),
        }
    }
}

/// A SQL session over a catalog.
pub struct SqlSession {
    ctx: SessionContext,
    lake: Arc<LakeCatalog>,
    source: CatalogSource,
    reads: Arc<ReadLog>,
}

impl SqlSession {
    /// A session over `catalog`, read from `source` (and again before each statement), reaching
    /// storage through `resolver`; unqualified table names are looked up in `database` when
    /// given.
    pub fn open(
        catalog: DirCatalog,
        source: CatalogSource,
        resolver: StoreResolver,
        database: Option<&str>,
    ) -> Result<SqlSession, SqlError> {
        SqlSession::open_limited(catalog, source, resolver, database, None, None)
    }

    /// [`SqlSession::open`], showing only the databases of `only` when given (a Session's
    /// `spec.databases`), within `resources` when given (a Session's worker size).
    pub fn open_limited(
        catalog: DirCatalog,
        source: CatalogSource,
        resolver: StoreResolver,
        database: Option<&str>,
        only: Option<BTreeSet<String>>,
        resources: Option<&Resources>,
    ) -> Result<SqlSession, SqlError> {
        let runtime = match resources {
            // A session's pod: the memory pool and spill of its worker size, as a job's.
            Some(resources) => engine_runtime(resources),
            // No local file system but the tables' own stores, as in jobs.
            None => RuntimeEnvBuilder::new()
                .with_object_store_registry(object_stores())
                .build_arc(),
        }
        .map_err(|e| SqlError::Engine(e.to_string()))?;
        let reads = Arc::new(ReadLog::default());
        let mut lake = LakeCatalog::new(&catalog, Arc::new(resolver), runtime.clone(), reads.clone());
        if let Some(only) = only {
            lake = lake.with_only_databases(only, catalog.clone());
        }
        let default_schema = match database {
            Some(name) if lake.has_schema(name) => name.to_string(),
            Some(name) => {
                return Err(SqlError::Catalog(format!(
                    "no database {name:?} in the catalog (its databases: {})",
                    lake.schema_list().join(", ")
                )));
            }
            None => SESSION_SCHEMA.to_string(),
        };
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, &default_schema);
        if let Some(resources) = resources {
            config = config.with_target_partitions(resources.target_partitions);
        }
        let config = reading_sources(config);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let lake = Arc::new(lake.with_session_schema(Arc::new(MemorySchemaProvider::new())));
        ctx.register_catalog(CATALOG, lake.clone());
        Ok(SqlSession {
            ctx,
            lake,
            source,
            reads,
        })
    }

    /// Takes the catalog as it is now, so a statement sees Tables applied or crawled since the
    /// last one.
    pub async fn refresh(&self) -> Result<(), SqlError> {
        self.lake.refresh(self.source.read().await?);
        Ok(())
    }

    /// The engine's context, sharing this session's catalog and state (for the wire server).
    pub fn context(&self) -> SessionContext {
        self.ctx.clone()
    }

    /// What statements read from object storage since the last call.
    pub fn take_reads(&self) -> Reads {
        self.reads.take()
    }

    /// The statements of `sql`, parsed; a syntax error names the line and column.
    pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
        DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
            .map(Vec::from)
            .map_err(|e| SqlError::Syntax(e.to_string()))
    }

    /// Runs one statement, after the sandbox's check.
    pub async fn run(&self, statement: Statement) -> Result<Answer, SqlError> {
        check_session(&statement)?;
        self.refresh().await?;
        self.reads.take();
        let started = Instant::now();
        let engine = |e: datafusion::error::DataFusionError| SqlError::Engine(e.strip_backtrace().to_string());
        let plan = self.ctx.state().statement_to_plan(statement).await.map_err(engine)?;
        let frame = self.ctx.execute_logical_plan(plan).await.map_err(engine)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(engine)?;
        Ok(Answer {
            schema,
            batches,
            reads: Some(self.reads.take()),
            elapsed: started.elapsed(),
        })
    }

    /// `\d`: every table of the catalog, with its format, location and partition keys.
    pub fn list_tables(&self) -> Answer {
        let catalog = self.lake.snapshot();
        let mut rows: Vec<[String; 5]> = catalog
            .tables()
            .map(|t| {
                [
                    t.spec.database_name.clone(),
                    t.spec.table_name.clone(),
                    format!("{:?}", t.spec.storage.format.format),
                    t.spec.storage.location.clone(),
                    t.spec
                        .partition_keys
                        .iter()
                        .map(|k| k.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        rows.sort();
        text_answer(&["database", "table", "format", "location", "partition keys"], rows)
    }

    /// `\d db.table`: a table's columns and partition keys, then where and how it is stored.
    pub fn describe_table(&self, name: &str) -> Result<(Answer, String), SqlError> {
        let (database, table) = name.split_once('.').ok_or_else(|| {
            SqlError::Catalog(format!(
                "name the table with its database: \\d DATABASE.TABLE, not {name:?}"
            ))
        })?;
        let catalog = self.lake.snapshot();
        let found = catalog
            .table(database, table)
            .ok_or_else(|| SqlError::Catalog(format!("no table {database}.{table} in the catalog (\\d lists them)")))?;
        let spec = &found.spec;
        let mut rows: Vec<[String; 3]> = spec
            .columns
            .iter()
            .map(|c| [c.name.clone(), c.type_.clone(), String::new()])
            .collect();
        rows.extend(
            spec.partition_keys
                .iter()
                .map(|k| [k.name.clone(), k.type_.clone(), "partition key".to_string()]),
        );
        let mut footer = format!(
            "Location: {}\nFormat: {:?}",
            spec.storage.location, spec.storage.format.format
        );
        if let Some(connection) = &spec.storage.connection {
            footer.push_str(&format!("\nConnection: {connection}"));
        }
        Ok((text_answer(&["column", "type", ""], rows), footer))
    }
}

/// An answer of text columns, for the shell's own listings.
fn text_answer<const N: usize>(names: &[&str; N], rows: Vec<[String; N]>) -> Answer {
    let schema: SchemaRef = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns = (0..N)
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as _)
        .collect();
    let batches = RecordBatch::try_new(schema.clone(), columns).into_iter().collect();
    Answer {
        schema,
        batches,
        reads: Some(Reads::default()),
        elapsed: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kglue_crds::common::WorkerResources;

    use super::*;
    use crate::storage::{Credentials, SecretsDir};

    /// A session given a worker's resources (a Session's pod) keeps to its memory pool: a sort
    /// larger than the pool spills to the spill folder and still answers in full.
    #[tokio::test]
    async fn a_bounded_session_spills_a_sort_larger_than_its_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut resources =
            Resources::for_resources(WorkerResources { cpu: 1, memory_gib: 1 }, dir.path().join("spill"));
        resources.memory_limit_bytes = 24 << 20;
        let catalog = DirCatalog::snapshot(Vec::new(), Vec::new(), BTreeMap::new(), BTreeMap::new());
        let resolver = StoreResolver::new(
            BTreeMap::new(),
            Credentials::from_process(SecretsDir(dir.path().into())),
        );
        let session = SqlSession::open_limited(
            catalog,
            CatalogSource::Dir(dir.path().into()),
            resolver,
            None,
            None,
            Some(&resources),
        )
        .expect("opens");
        let runtime = session.context().runtime_env();
        assert!(matches!(
            runtime.memory_pool.memory_limit(),
            datafusion::execution::memory_pool::MemoryLimit::Finite(limit) if limit == 24 << 20
        ));
        let sql = "SELECT sum(r) AS s FROM (SELECT row_number() OVER (ORDER BY v DESC) AS r \
                   FROM (SELECT value * 7919 % 1000003 AS v FROM generate_series(1, 5000000)))";
        let statement = SqlSession::parse(sql).expect("parses").remove(0);
        let answer = session
            .run(statement)
            .await
            .expect("answers within the pool by spilling");
        let total = answer.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            .map(|a| a.value(0));
        // 5,000,000 sorted rows (40 MB of values alone) do not fit in 24 MiB: without spilling
        // the sort would fail with "Resources exhausted".
        assert_eq!(total, Some(5_000_000 * 5_000_001 / 2));
    }
}
