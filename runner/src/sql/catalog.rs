//! The catalog as the engine's catalog: every Database a schema, every Table a table. A table's
//! provider is built when a statement first names it (listing nothing before), so a catalog of
//! thousands of tables costs nothing until it is queried; object-store tables are
//! [`LakeTable`]s, whose partition filters read only the partitions they can match (from the
//! crawler's partition index where one exists); database tables (format Jdbc) are the jobs'
//! database reader.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::Field;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::StreamExt;
use futures::stream::BoxStream;
use kglue_crds::common::{DataFormat, TableRef};
use kglue_crds::job::{BookmarkOption, JobSource};
use kglue_crds::table::PartitionSummary;
use kglue_crds::{Table, TableSpec};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use super::lake_table::{LakeTable, LakeTableParts};
use crate::catalog::DirCatalog;
use crate::etl::database::DatabaseSource;
use crate::etl::source::file_format;
use crate::etl::types::fields_of;
use crate::storage::{Location, StoreResolver};

/// What a session read from object storage: listings (by prefix) and objects (bytes fetched).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// The prefixes listed, as `kglue://table-N/prefix` relative to the table's store.
    pub listings: Vec<String>,
    /// Each object read, with the bytes fetched from it.
    pub objects: BTreeMap<String, u64>,
}

impl Reads {
    /// Bytes fetched, all objects together.
    pub fn bytes(&self) -> u64 {
        self.objects.values().sum()
    }
}

/// The reads of every table's store, shared by the session's stores; taken per statement.
#[derive(Debug, Default)]
pub struct ReadLog(Mutex<Reads>);

impl ReadLog {
    /// What was read since the last call, clearing it.
    pub fn take(&self) -> Reads {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reads> {
        // A panic while the lock was held leaves counts, not broken invariants: keep counting.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn listed(&self, prefix: Option<&Path>) {
        self.lock()
            .listings
            .push(prefix.map(ToString::to_string).unwrap_or_default());
    }

    fn fetched(&self, location: &Path, bytes: u64) {
        *self.lock().objects.entry(location.to_string()).or_default() += bytes;
    }
}

/// The catalog directory's Databases as schemas, under the engine catalog `kglue`.
#[derive(Debug)]
pub struct LakeCatalog {
    schemas: Mutex<BTreeMap<String, Arc<LakeSchema>>>,
    shared: Arc<Shared>,
    /// Where views go when the session names no database (`super::SESSION_SCHEMA`).
    session: Option<Arc<dyn SchemaProvider>>,
    /// The databases shown; `None`: all, including ones created later.
    only: Option<BTreeSet<String>>,
    /// Schemas the server registers beside the databases (`pg_catalog` for PostgreSQL clients);
    /// the sandbox keeps statements from registering any.
    extra: Mutex<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl LakeCatalog {
    /// The catalog of `catalog`'s Databases and Tables; stores are opened through `resolver` and
    /// registered in `runtime` as tables are first used, their reads counted in `reads`.
    pub fn new(
        catalog: &DirCatalog,
        resolver: Arc<StoreResolver>,
        runtime: Arc<RuntimeEnv>,
        reads: Arc<ReadLog>,
    ) -> LakeCatalog {
        let shared = Arc::new(Shared {
            catalog: Mutex::new(Arc::new(catalog.clone())),
            resolver,
            runtime,
            reads,
            next_store: Mutex::new(0),
        });
        let lake = LakeCatalog {
            schemas: Mutex::default(),
            session: None,
            only: None,
            extra: Mutex::default(),
            shared,
        };
        lake.refresh(catalog.clone());
        lake
    }

    /// Takes the catalog as it is now: Tables added, changed or removed since are seen by the
    /// next statement (a changed Table is opened again); the session's views stay.
    pub fn refresh(&self, catalog: DirCatalog) {
        // A Database without tables is still a schema (`\d` lists it).
        let names: BTreeSet<String> = catalog
            .tables()
            .map(|t| t.spec.database_name.clone())
            .chain(catalog.databases().map(|d| d.spec.database_name.clone()))
            .filter(|name| self.only.as_ref().is_none_or(|only| only.contains(name)))
            .collect();
        *locked(&self.shared.catalog) = Arc::new(catalog);
        let mut schemas = locked(&self.schemas);
        schemas.retain(|name, schema| names.contains(name) || !locked(&schema.views).is_empty());
        for database in names {
            schemas.entry(database.clone()).or_insert_with(|| {
                Arc::new(LakeSchema {
                    database,
                    shared: self.shared.clone(),
                    built: Mutex::default(),
                    views: Mutex::default(),
                })
            });
        }
    }

    /// The same catalog with `schema` as the session's own schema.
    pub fn with_session_schema(mut self, schema: Arc<dyn SchemaProvider>) -> LakeCatalog {
        self.session = Some(schema);
        self
    }

    /// The same catalog showing only `databases` (a Session's `spec.databases`); the others are
    /// not schemas, so their tables cannot be named.
    pub fn with_only_databases(mut self, databases: BTreeSet<String>, catalog: DirCatalog) -> LakeCatalog {
        self.only = Some(databases);
        locked(&self.schemas).clear();
        self.refresh(catalog);
        self
    }

    /// The catalog as last taken.
    pub fn snapshot(&self) -> Arc<DirCatalog> {
        locked(&self.shared.catalog).clone()
    }

    /// Whether the catalog has this database.
    pub fn has_schema(&self, name: &str) -> bool {
        locked(&self.schemas).contains_key(name)
    }

    /// The databases, in order.
    pub fn schema_list(&self) -> Vec<String> {
        locked(&self.schemas).keys().cloned().collect()
    }
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.schema_list();
        if self.session.is_some() && !self.has_schema(super::SESSION_SCHEMA) {
            names.push(super::SESSION_SCHEMA.to_string());
        }
        names.extend(locked(&self.extra).keys().filter(|n| !self.has_schema(n)).cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match locked(&self.schemas).get(name) {
            Some(schema) => Some(schema.clone() as Arc<dyn SchemaProvider>),
            None if name == super::SESSION_SCHEMA => self.session.clone(),
            None => locked(&self.extra).get(name).cloned(),
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn SchemaProvider>>> {
        if self.has_schema(name) || name == super::SESSION_SCHEMA {
            return Err(DataFusionError::Plan(format!(
                "{name} is a database of the catalog; another schema cannot take its name"
            )));
        }
        Ok(locked(&self.extra).insert(name.to_string(), schema))
    }
}

/// What every schema of a session shares.
struct Shared {
    catalog: Mutex<Arc<DirCatalog>>,
    resolver: Arc<StoreResolver>,
    runtime: Arc<RuntimeEnv>,
    reads: Arc<ReadLog>,
    next_store: Mutex<usize>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// One Database: its Tables, and the views a session defines in it.
#[derive(Debug)]
pub struct LakeSchema {
    database: String,
    shared: Arc<Shared>,
    /// Tables opened, with the spec they were opened from.
    built: Mutex<BTreeMap<String, Opened>>,
    views: Mutex<BTreeMap<String, Arc<dyn TableProvider>>>,
}

/// A table opened, with the spec and partition summary it was opened from (a new crawl can
/// rewrite the partition index the summary points at).
type Opened = ((TableSpec, Option<PartitionSummary>), Arc<dyn TableProvider>);

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LakeSchema {
    fn catalog(&self) -> Arc<DirCatalog> {
        locked(&self.shared.catalog).clone()
    }

    fn catalog_table(&self, name: &str) -> Option<Table> {
        self.catalog().table(&self.database, name).cloned()
    }

    async fn build(&self, table: &Table) -> Result<Arc<dyn TableProvider>, String> {
        let qualified = format!("{}.{}", self.database, table.spec.table_name);
        if table.spec.storage.format.format == DataFormat::Jdbc {
            let source = JobSource {
                name: table.spec.table_name.clone(),
                table: Some(TableRef {
                    database: self.database.clone(),
                    table: table.spec.table_name.clone(),
                }),
                storage: None,
                jdbc: None,
            };
            let prepared = DatabaseSource::prepare(
                0,
                &source,
                &self.catalog(),
                &self.shared.resolver,
                BookmarkOption::Disable,
                None,
            )
            .await
            .map_err(|e| format!("table {qualified}: {}", e.message))?;
            return Ok(prepared.provider());
        }
        let failed = |message: String| format!("table {qualified}: {message}");
        let storage = &table.spec.storage;
        let location: Location = storage.location.parse().map_err(|e| failed(format!("{e}")))?;
        let store = self
            .shared
            .resolver
            .store(&location, storage.connection.as_deref())
            .map_err(|e| failed(e.to_string()))?;
        if table.spec.columns.is_empty() {
            return Err(failed(
                "it declares no columns; crawl it, or declare its columns, to query it".into(),
            ));
        }
        let columns = fields_of(&table.spec.columns).map_err(|e| failed(e.to_string()))?;
        let keys: Vec<Field> = fields_of(&table.spec.partition_keys).map_err(|e| failed(e.to_string()))?;
        let format = file_format(&qualified, &storage.format).map_err(|e| failed(e.to_string()))?;
        // The index is read with the table's Connection when it sits in the table's store (a
        // crawler's state usually does), else with the standard credentials.
        let index = match table.status.as_ref().and_then(|s| s.partitions.as_ref()?.index.clone()) {
            Some(url) => {
                let index_location: Location = url.parse().map_err(|e| failed(format!("partition index: {e}")))?;
                let connection = storage
                    .connection
                    .as_deref()
                    .filter(|_| index_location.store == location.store);
                let store = self
                    .shared
                    .resolver
                    .store(&index_location, connection)
                    .map_err(|e| failed(format!("partition index {url}: {e}")))?;
                Some((url, self.shared.logged(store)))
            }
            None => None,
        };
        let (store_url, store) = self.shared.register(store).map_err(failed)?;
        Ok(Arc::new(LakeTable::new(LakeTableParts {
            name: qualified,
            location,
            columns,
            keys,
            format,
            store_url,
            store,
            index,
        })))
    }
}

impl Shared {
    /// A table's store as the engine reaches it (`kglue://table-N`), its reads logged.
    fn register(&self, store: Arc<dyn ObjectStore>) -> Result<(ObjectStoreUrl, Arc<dyn ObjectStore>), String> {
        let index = {
            let mut next = locked(&self.next_store);
            *next += 1;
            *next
        };
        let url = ObjectStoreUrl::parse(format!("kglue://table-{index}")).map_err(|e| e.to_string())?;
        let logged = self.logged(store);
        self.runtime.register_object_store(url.as_ref(), logged.clone());
        Ok((url, logged))
    }

    /// `store`, read-only, with its reads in the session's log.
    fn logged(&self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(LoggedStore {
            inner: store,
            log: self.reads.clone(),
        })
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let catalog = self.catalog();
        let mut names: BTreeSet<String> = catalog
            .tables_in(&self.database)
            .map(|t| t.spec.table_name.clone())
            .collect();
        names.extend(locked(&self.views).keys().cloned());
        names.into_iter().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(view) = locked(&self.views).get(name) {
            return Ok(Some(view.clone()));
        }
        let Some(table) = self.catalog_table(name) else {
            return Ok(None);
        };
        let opened_from = (
            table.spec.clone(),
            table.status.as_ref().and_then(|s| s.partitions.clone()),
        );
        if let Some((from, built)) = locked(&self.built).get(name)
            && *from == opened_from
        {
            return Ok(Some(built.clone()));
        }
        let provider = self.build(&table).await.map_err(DataFusionError::Plan)?;
        locked(&self.built).insert(name.to_string(), (opened_from, provider.clone()));
        Ok(Some(provider))
    }

    async fn table_type(&self, name: &str) -> Result<Option<TableType>, DataFusionError> {
        // Without building the table: `SHOW TABLES` lists a catalog without reading it.
        if let Some(view) = locked(&self.views).get(name) {
            return Ok(Some(view.table_type()));
        }
        Ok(self.catalog_table(name).map(|_| TableType::Base))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if self.catalog_table(&name).is_some() {
            return Err(DataFusionError::Plan(format!(
                "{}.{name} is a catalog table; name the view otherwise",
                self.database
            )));
        }
        Ok(locked(&self.views).insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(locked(&self.views).remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog_table(name).is_some() || locked(&self.views).contains_key(name)
    }
}

/// A table's store, read-only, with every listing and fetch recorded in the session's log.
struct LoggedStore {
    inner: Arc<dyn ObjectStore>,
    log: Arc<ReadLog>,
}

impl fmt::Debug for LoggedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoggedStore({})", self.inner)
    }
}

impl fmt::Display for LoggedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoggedStore({})", self.inner)
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported {
        source: "a SQL session is read-only".into(),
    }
}

#[async_trait]
impl ObjectStore for LoggedStore {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let result = self.inner.get_opts(location, options).await?;
        let bytes = result.range.end.saturating_sub(result.range.start);
        self.log.fetched(location, bytes);
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let fetched = self.inner.get_ranges(location, ranges).await?;
        self.log.fetched(location, fetched.iter().map(|b| b.len() as u64).sum());
        Ok(fetched)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.log.listed(prefix);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.log.listed(prefix);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only())
    }
}
