//! A catalog table over object storage, its partitions resolved from what the catalog knows
//! (docs/catalog-at-scale.md):
//!
//! - when the Table's status names a partition index (a crawler writes one), the partitions are
//!   the index's, as Athena takes a table's partitions from Glue's catalog: the statement's
//!   partition filters run over the index, and only the folders of the partitions they keep are
//!   listed;
//! - otherwise the layout is listed level by level, only as deep as the filters reach and only
//!   below the folders they keep (an equality names its folder without listing the level at all),
//!   and each kept folder is then listed once for its files.
//!
//! Either way a file is read only when the crawler's rule says it is data: markers, hidden and
//! `_`-prefixed folders (a running job's `_kglue_staging/`) and empty objects are not.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::{Path, PathPart};
use object_store::{ObjectMeta, ObjectStore};
use tokio::sync::OnceCell;

use crate::crawl::group::positional_key;
use crate::crawl::listing::{Exclusions, skip_reason};
use crate::crawl::state::CrawlState;
use crate::etl::sink::{HIVE_DEFAULT_PARTITION, escape_path_name, unescape_path_name};
use crate::storage::Location;

/// Listings in flight at once for one scan.
const LISTING_CONCURRENCY: usize = 32;

/// A store lists about this many keys per request (S3's page).
const KEYS_PER_LISTING: usize = 1000;

/// One partition key and how its folders are named.
#[derive(Debug, Clone)]
struct Key {
    field: FieldRef,
    /// Folders are the bare value (`2024/`), not `key=value`: the crawler named the key
    /// `partition_<level>`.
    positional: bool,
}

impl Key {
    /// The raw (escaped) value a folder of this key holds; `None` when it is not such a folder.
    fn value_in<'a>(&self, folder: &'a str) -> Option<&'a str> {
        if self.positional {
            return Some(folder);
        }
        let (name, value) = folder.split_once('=')?;
        (unescape_path_name(name) == *self.field.name()).then_some(value)
    }

    /// The folder of a raw (escaped) value, as the folder names it.
    fn folder_of_raw(&self, raw: &str) -> String {
        let mut folder = String::new();
        if !self.positional {
            escape_path_name(self.field.name(), &mut folder);
            folder.push('=');
        }
        folder.push_str(raw);
        folder
    }

    /// The folder a writer gives a value (Hive-escaped).
    fn folder_of_value(&self, value: &str) -> String {
        let mut raw = String::new();
        escape_path_name(value, &mut raw);
        self.folder_of_raw(&raw)
    }

    /// The typed value of a raw folder value.
    fn typed(&self, raw: &str) -> Result<ScalarValue, String> {
        if raw == HIVE_DEFAULT_PARTITION {
            return ScalarValue::try_from(self.field.data_type()).map_err(|e| e.to_string());
        }
        let value = unescape_path_name(raw);
        ScalarValue::try_from_string(value.clone(), self.field.data_type()).map_err(|_| {
            format!(
                "{value:?} is not a {} (key {})",
                self.field.data_type(),
                self.field.name()
            )
        })
    }

    fn expected(&self) -> String {
        if self.positional {
            "a folder named by the value".to_string()
        } else {
            format!("{}=<value>", self.field.name())
        }
    }
}

/// A partition (or, while listing, the folders above one): its folder and the values so far.
#[derive(Debug, Clone)]
struct Partition {
    folder: Path,
    values: Vec<ScalarValue>,
}

/// Where a table's partition index is, and its partitions once read.
struct Index {
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The index as read (`None`: unreadable or missing, said once, and the table is listed).
    loaded: OnceCell<Option<Arc<BTreeSet<Vec<String>>>>>,
}

/// An object-store table of the catalog (see the module's comment).
pub struct LakeTable {
    /// `database.table`, for messages.
    name: String,
    location: Location,
    schema: SchemaRef,
    file_schema: SchemaRef,
    keys: Vec<Key>,
    format: Arc<dyn FileFormat>,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    index: Option<Index>,
}

impl fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeTable")
            .field("name", &self.name)
            .field("location", &self.location.to_string())
            .finish_non_exhaustive()
    }
}

/// What a [`LakeTable`] is built from.
pub struct LakeTableParts {
    /// `database.table`.
    pub name: String,
    /// The table's location.
    pub location: Location,
    /// The data files' columns.
    pub columns: Vec<Field>,
    /// The partition keys, outermost first.
    pub keys: Vec<Field>,
    /// How the files are read.
    pub format: Arc<dyn FileFormat>,
    /// The URL the engine reaches `store` by.
    pub store_url: ObjectStoreUrl,
    /// The table's store (paths as in the location).
    pub store: Arc<dyn ObjectStore>,
    /// The partition index, when the Table's status names one: its URL and the store that holds it.
    pub index: Option<(String, Arc<dyn ObjectStore>)>,
}

impl LakeTable {
    /// The table of `parts`.
    pub fn new(parts: LakeTableParts) -> LakeTable {
        let keys: Vec<Key> = parts
            .keys
            .into_iter()
            .enumerate()
            .map(|(level, field)| Key {
                positional: *field.name() == positional_key(level),
                // A partition is NULL in Hive's default folder.
                field: Arc::new(field.with_nullable(true)),
            })
            .collect();
        let file_schema = Arc::new(Schema::new(parts.columns));
        let schema = Arc::new(Schema::new(
            file_schema
                .fields()
                .iter()
                .cloned()
                .chain(keys.iter().map(|k| k.field.clone()))
                .collect::<Vec<_>>(),
        ));
        LakeTable {
            name: parts.name,
            location: parts.location,
            schema,
            file_schema,
            keys,
            format: parts.format,
            store_url: parts.store_url,
            store: parts.store,
            index: parts.index.map(|(url, store)| Index {
                url,
                store,
                loaded: OnceCell::new(),
            }),
        }
    }

    fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.field.name().as_str()).collect()
    }

    fn failed(&self, message: impl fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("table {}: {message}", self.name))
    }

    fn listing_failed(&self, prefix: &Path, error: object_store::Error) -> DataFusionError {
        self.failed(format!("listing {}: {error}", self.location.url_of(prefix)))
    }

    /// The index's partitions, read once; `None` (said on stderr) when it cannot be read.
    async fn indexed(&self) -> Option<Arc<BTreeSet<Vec<String>>>> {
        let index = self.index.as_ref()?;
        index
            .loaded
            .get_or_init(|| async {
                let problem = match CrawlState::read_index(index.store.clone(), &index.url).await {
                    Ok(Some(partitions)) => match partitions.iter().find(|p| p.len() != self.keys.len()) {
                        None => return Some(Arc::new(partitions)),
                        Some(p) => format!(
                            "it lists partition {p:?} with {} values for {} keys",
                            p.len(),
                            self.keys.len()
                        ),
                    },
                    Ok(None) => "it does not exist".to_string(),
                    Err(error) => error.to_string(),
                };
                eprintln!(
                    "kglue sql: table {}: partition index {} cannot be used ({problem}); listing {} instead",
                    self.name, index.url, self.location
                );
                None
            })
            .await
            .clone()
    }

    /// The partitions the filters keep, with their folders, and how many the table has when an
    /// index says so.
    async fn partitions(&self, state: &dyn Session, pruner: &Pruner) -> DfResult<(Vec<Partition>, Option<usize>)> {
        if let Some(indexed) = self.indexed().await {
            let mut partitions = Vec::with_capacity(indexed.len());
            for raw in indexed.iter() {
                let mut folder = self.location.prefix.clone();
                let mut values = Vec::with_capacity(raw.len());
                for (key, value) in self.keys.iter().zip(raw) {
                    folder = self.child(&folder, &key.folder_of_raw(value))?;
                    values.push(
                        key.typed(value).map_err(|e| {
                            self.failed(format!("partition {raw:?} of index {}: {e}", self.index_url()))
                        })?,
                    );
                }
                partitions.push(Partition { folder, values });
            }
            let total = partitions.len();
            for level in 0..self.keys.len() {
                partitions = pruner.keep(state, &self.keys, level, partitions)?;
            }
            return Ok((partitions, Some(total)));
        }
        let mut partitions = vec![Partition {
            folder: self.location.prefix.clone(),
            values: Vec::new(),
        }];
        for level in 0..pruner.depth() {
            let key = &self.keys[level];
            let known = pruner.equal_value(key, level);
            let children: Vec<Vec<Partition>> = stream::iter(partitions)
                .map(|parent| self.children(parent, key, known.as_ref()))
                .buffer_unordered(LISTING_CONCURRENCY)
                .try_collect()
                .await?;
            partitions = pruner.keep(state, &self.keys, level, children.into_iter().flatten().collect())?;
        }
        Ok((partitions, None))
    }

    /// `parent/folder`, the folder name taken as it is (already escaped as writers escape it).
    fn child(&self, parent: &Path, folder: &str) -> DfResult<Path> {
        let part = PathPart::parse(folder).map_err(|e| {
            self.failed(format!(
                "partition folder {folder:?} is not a valid object path segment: {e}"
            ))
        })?;
        Ok(parent.clone().join(part))
    }

    fn index_url(&self) -> &str {
        self.index.as_ref().map(|i| i.url.as_str()).unwrap_or_default()
    }

    /// The folders of the next key below `parent`: named by an equality without listing, else
    /// listed. An object or folder that does not fit the layout fails the statement by name, as it
    /// fails a job.
    async fn children(&self, parent: Partition, key: &Key, known: Option<&ScalarValue>) -> DfResult<Vec<Partition>> {
        let child = |folder: Path, value: ScalarValue| {
            let mut values = parent.values.clone();
            values.push(value);
            Partition { folder, values }
        };
        if let Some(value) = known {
            let folder = self.child(&parent.folder, &key.folder_of_value(&value.to_string()))?;
            return Ok(vec![child(folder, value.clone())]);
        }
        let prefix = (!parent.folder.as_ref().is_empty()).then_some(&parent.folder);
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.listing_failed(&parent.folder, e))?;
        if let Some(stray) = listed.objects.iter().find(|meta| self.is_data(meta)) {
            return Err(self.failed(format!(
                "object {} is not in the table's partition folders (expected {}); move it or remove it from the location",
                self.location.url_of(&stray.location),
                self.expected_folders()
            )));
        }
        let mut children = Vec::with_capacity(listed.common_prefixes.len());
        for folder in listed.common_prefixes {
            let name = folder.filename().unwrap_or_default().to_string();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let not_partition = |why: String| {
                self.failed(format!(
                    "folder {}/ is not a partition folder of key {} ({why}); move it or remove it from the location",
                    self.location.url_of(&folder),
                    key.field.name()
                ))
            };
            let raw = key
                .value_in(&name)
                .ok_or_else(|| not_partition(format!("expected {}", key.expected())))?;
            let value = key.typed(raw).map_err(not_partition)?;
            children.push(child(folder, value));
        }
        Ok(children)
    }

    fn expected_folders(&self) -> String {
        self.keys.iter().map(Key::expected).collect::<Vec<_>>().join("/")
    }

    /// Whether an object is data by the crawler's rule (not a marker, hidden or empty).
    fn is_data(&self, meta: &ObjectMeta) -> bool {
        let parts = self.location.relative(&meta.location).unwrap_or_default();
        skip_reason(&parts, meta.size, &Exclusions::none()).is_none()
    }

    /// The files of `partitions`: each listed below its folder, or, for an index's partitions when
    /// that takes fewer round trips, the whole location listed once and kept to their folders.
    async fn files(&self, partitions: Vec<Partition>, total: Option<usize>) -> DfResult<Vec<PartitionedFile>> {
        let whole_listing = total.is_some_and(|total| {
            partitions.len().div_ceil(LISTING_CONCURRENCY) > total.div_ceil(KEYS_PER_LISTING) && partitions.len() > 1
        });
        if whole_listing {
            let keep: HashSet<&Path> = partitions.iter().map(|p| &p.folder).collect();
            let all = Partition {
                folder: self.location.prefix.clone(),
                values: Vec::new(),
            };
            let files = self.files_below(all, false).await?;
            return Ok(files
                .into_iter()
                .filter(|file| {
                    let folder = partition_folder(&file.object_meta.location, &self.location.prefix, self.keys.len());
                    keep.contains(&folder)
                })
                .collect());
        }
        let strict = total.is_none();
        let lists: Vec<Vec<PartitionedFile>> = stream::iter(partitions)
            .map(|p| self.files_below(p, strict))
            .buffer_unordered(LISTING_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// The data files below `partition`, with every key's value. `strict`: a file outside the
    /// partition folders fails the statement (listing); otherwise it is left out (an index
    /// defines the partitions, as Glue's catalog does for Athena).
    async fn files_below(&self, partition: Partition, strict: bool) -> DfResult<Vec<PartitionedFile>> {
        let prefix = (!partition.folder.as_ref().is_empty()).then_some(&partition.folder);
        let metas: Vec<ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| self.listing_failed(&partition.folder, e))?;
        let known = partition.values.len();
        let mut files = Vec::with_capacity(metas.len());
        for meta in metas {
            let parts = self.location.relative(&meta.location).unwrap_or_default();
            if skip_reason(&parts, meta.size, &Exclusions::none()).is_some() {
                continue;
            }
            let mut values = partition.values.clone();
            let mut fits = parts.len() > self.keys.len();
            for (key, folder) in self.keys.iter().zip(&parts).skip(known) {
                match key.value_in(folder).map(|raw| key.typed(raw)) {
                    Some(Ok(value)) => values.push(value),
                    Some(Err(why)) if strict => {
                        return Err(self.failed(format!(
                            "object {} is in folder {folder}, which is not a partition folder of key {} ({why})",
                            self.location.url_of(&meta.location),
                            key.field.name()
                        )));
                    }
                    _ => fits = false,
                }
            }
            if !fits || values.len() != self.keys.len() {
                if strict {
                    return Err(self.failed(format!(
                        "object {} is not in the table's partition folders (expected {}); move it or remove it from the location",
                        self.location.url_of(&meta.location),
                        self.expected_folders()
                    )));
                }
                continue;
            }
            files.push(PartitionedFile::from(meta).with_partition_values(values));
        }
        Ok(files)
    }
}

/// The partition folder (the first `levels` folders below `root`) of an object.
fn partition_folder(object: &Path, root: &Path, levels: usize) -> Path {
    let mut folder = root.clone();
    if let Some(parts) = object.prefix_match(root) {
        for part in parts.take(levels) {
            folder = folder.join(part);
        }
    }
    folder
}

/// The statement's filters on partition keys, by the deepest key each names.
struct Pruner {
    by_level: Vec<Vec<Expr>>,
}

impl Pruner {
    fn new(key_names: &[&str], filters: &[Expr]) -> Pruner {
        let mut by_level = vec![Vec::new(); key_names.len()];
        if key_names.is_empty() {
            return Pruner { by_level };
        }
        for filter in filters {
            if !expr_applicable_for_cols(key_names, filter) || filter.is_volatile() {
                continue;
            }
            let deepest = filter
                .column_refs()
                .iter()
                .filter_map(|c| key_names.iter().position(|k| *k == c.name))
                .max()
                .unwrap_or(0);
            by_level[deepest].push(filter.clone());
        }
        Pruner { by_level }
    }

    /// How many levels must be listed before every filter can be evaluated.
    fn depth(&self) -> usize {
        self.by_level.iter().rposition(|f| !f.is_empty()).map_or(0, |i| i + 1)
    }

    /// The one value an equality filter gives `key` at `level`, in the key's type.
    fn equal_value(&self, key: &Key, level: usize) -> Option<ScalarValue> {
        self.by_level[level].iter().find_map(|filter| {
            let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = filter
            else {
                return None;
            };
            let (column, literal) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
                _ => return None,
            };
            if column.name != *key.field.name() || literal.is_null() {
                return None;
            }
            literal.cast_to(key.field.data_type()).ok()
        })
    }

    /// The partitions that pass the filters whose deepest key is `level`.
    fn keep(
        &self,
        state: &dyn Session,
        keys: &[Key],
        level: usize,
        partitions: Vec<Partition>,
    ) -> DfResult<Vec<Partition>> {
        let Some(filter) = conjunction(self.by_level[level].iter().cloned()) else {
            return Ok(partitions);
        };
        if partitions.is_empty() {
            return Ok(partitions);
        }
        let fields: Vec<FieldRef> = keys[..=level].iter().map(|k| k.field.clone()).collect();
        let columns = (0..=level)
            .map(|i| ScalarValue::iter_to_array(partitions.iter().map(|p| p.values[i].clone())))
            .collect::<DfResult<Vec<_>>>()?;
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let expr = state.create_physical_expr(filter, &DFSchema::try_from(schema)?)?;
        let matches = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(matches) = matches.as_boolean_opt() else {
            return Ok(partitions);
        };
        Ok(partitions
            .into_iter()
            .enumerate()
            .filter(|(i, _)| matches.is_valid(*i) && matches.value(*i))
            .map(|(_, p)| p)
            .collect())
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pruner = Pruner::new(&self.key_names(), filters);
        let (partitions, total) = self.partitions(state, &pruner).await?;
        let files = self.files(partitions, total).await?;
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(self.keys.iter().map(|k| k.field.clone()).collect::<Vec<FieldRef>>())
            .build();
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.store_url.clone(), self.format.file_source(table_schema))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        self.format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let keys = self.key_names();
        Ok(filters
            .iter()
            .map(|filter| {
                // A filter on keys alone is applied to the partitions in full; others are applied
                // again above the scan (and lend the file format its pruning).
                if !keys.is_empty() && expr_applicable_for_cols(&keys, filter) && !filter.is_volatile() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path as FsPath;

    use datafusion::arrow::array::Int64Array;

    use super::super::{CatalogSource, SqlSession};
    use super::*;
    use crate::catalog::DirCatalog;
    use crate::storage::{Credentials, SecretsDir, StoreResolver};

    fn write(dir: &FsPath, key: &str, text: &str) {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// `lake.events` at `data/events`, keyed as `keys` says, with a partition index when given.
    fn table(dir: &FsPath, keys: &str, index: Option<&str>) -> String {
        let status = index.map_or(String::new(), |url| {
            format!("status:\n  partitions: {{count: 6, index: \"{url}\"}}\n")
        });
        format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: lake.events}}\nspec:\n  databaseName: lake\n  tableName: events\n  storage: {{location: \"file://{}/data/events/\", format: Csv}}\n  columns: [{{name: id, type: bigint}}]\n  partitionKeys: {keys}\n{status}",
            dir.display()
        )
    }

    /// A session over a catalog folder holding `table` (statements read the folder again).
    fn session(dir: &FsPath, table: String) -> SqlSession {
        write(dir, "catalog/lake.events.yaml", &table);
        let catalog = DirCatalog::load(&dir.join("catalog")).expect("a catalog");
        let resolver = StoreResolver::new(BTreeMap::new(), Credentials::from_process(SecretsDir(dir.into())))
            .with_local_paths(vec![Location::from_directory(dir).expect("a location")]);
        SqlSession::open(catalog, CatalogSource::Dir(dir.join("catalog")), resolver, None).expect("opens")
    }

    /// The count a `SELECT count(*)` answered, and the listings and objects it took.
    async fn count(session: &SqlSession, sql: &str) -> Result<(i64, usize, usize), String> {
        let statement = SqlSession::parse(sql).map_err(|e| e.to_string())?.remove(0);
        let answer = session.run(statement).await.map_err(|e| e.to_string())?;
        let n = answer.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(0))
            .ok_or("a count")?;
        let reads = answer.reads.ok_or("reads are known")?;
        Ok((n, reads.listings.len(), reads.objects.len()))
    }

    /// Four days by two regions, one row per partition; day 4 was written after the crawl (the
    /// index of `index_url` lists days 1 to 3 only).
    fn two_level_lake(dir: &FsPath) -> String {
        let mut indexed = Vec::new();
        for day in 1..=4 {
            for region in ["eu", "us"] {
                if day == 4 && region == "us" {
                    continue;
                }
                write(
                    dir,
                    &format!("data/events/dt=2024-01-0{day}/region={region}/part-0.csv"),
                    &format!("id\n{day}\n"),
                );
                if day < 4 {
                    indexed.push(vec![format!("2024-01-0{day}"), region.to_string()]);
                }
            }
        }
        let index = dir.join("state/landing/partitions/lake.events.json");
        write(
            dir,
            "state/landing/partitions/lake.events.json",
            &serde_json::to_string(&indexed).expect("json"),
        );
        format!("file://{}", index.display())
    }

    const TWO_KEYS: &str = "[{name: dt, type: date}, {name: region, type: string}]";

    #[tokio::test]
    async fn an_index_gives_the_partitions_and_only_matching_folders_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = two_level_lake(dir.path());
        let session = session(dir.path(), table(dir.path(), TWO_KEYS, Some(&url)));
        // A filter on the inner key alone: three partitions of the index, one listing each, no
        // listing of the day folders; the index is one object read, the files three more.
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE region = 'eu'").await,
            Ok((3, 3, 4))
        );
        // A range on the outer key, the index read once per opened table.
        assert_eq!(
            count(
                &session,
                "SELECT count(*) FROM lake.events WHERE dt >= DATE '2024-01-02'"
            )
            .await,
            Ok((4, 4, 4))
        );
        // Day 4's folder is not in the index: as in Athena over Glue's catalog, it is read once a
        // crawl adds it.
        assert_eq!(count(&session, "SELECT count(*) FROM lake.events").await, Ok((6, 6, 6)));
    }

    #[tokio::test]
    async fn without_an_index_only_the_levels_the_filters_reach_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_level_lake(dir.path());
        let session = session(dir.path(), table(dir.path(), TWO_KEYS, None));
        // The location's days (1 listing); the equality names each day's eu folder, listed for
        // its files (4).
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE region = 'eu'").await,
            Ok((4, 5, 4))
        );
        // A filter that names no folder: the days (1), each day's regions (4), each kept
        // partition (4).
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE region LIKE 'e%'").await,
            Ok((4, 9, 4))
        );
        // A range on the outer key: the days (1), then the two kept days listed for files (2).
        assert_eq!(
            count(
                &session,
                "SELECT count(*) FROM lake.events WHERE dt >= DATE '2024-01-03'"
            )
            .await,
            Ok((3, 3, 3))
        );
        // Equalities name the folders: one listing, of the partition itself.
        assert_eq!(
            count(
                &session,
                "SELECT count(*) FROM lake.events WHERE dt = DATE '2024-01-02' AND region = 'us'"
            )
            .await,
            Ok((1, 1, 1))
        );
        // No filter: one listing of everything.
        assert_eq!(count(&session, "SELECT count(*) FROM lake.events").await, Ok((7, 1, 7)));
    }

    #[tokio::test]
    async fn an_index_that_cannot_be_read_leaves_the_table_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_level_lake(dir.path());
        let missing = format!("file://{}/state/landing/partitions/gone.json", dir.path().display());
        let session = session(dir.path(), table(dir.path(), TWO_KEYS, Some(&missing)));
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE region = 'eu'").await,
            Ok((4, 5, 4))
        );
    }

    #[tokio::test]
    async fn positional_folders_give_their_values_to_the_crawlers_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "data/events/2024/01/a.csv", "id\n1\n2\n");
        write(dir.path(), "data/events/2024/02/b.csv", "id\n3\n");
        let keys = "[{name: partition_0, type: int}, {name: partition_1, type: string}]";
        let session = session(dir.path(), table(dir.path(), keys, None));
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE partition_1 = '02'").await,
            Ok((1, 2, 1))
        );
        // The folder's value, typed as the key: 2024 for each of the three rows.
        assert_eq!(
            count(&session, "SELECT sum(partition_0) FROM lake.events").await,
            Ok((3 * 2024, 1, 2))
        );
        assert_eq!(
            count(&session, "SELECT count(*) FROM lake.events WHERE partition_0 = 2024").await,
            Ok((3, 1, 2))
        );
    }

    /// Values Hive escapes in folder names (`:` is `%3A`) are matched and read back unescaped,
    /// from the folders and from the index alike.
    #[tokio::test]
    async fn escaped_folder_values_read_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "data/events/dt=2024-01-01/region=e%3Au/part-0.csv",
            "id\n1\n",
        );
        write(dir.path(), "data/events/dt=2024-01-01/region=us/part-0.csv", "id\n2\n");
        write(
            dir.path(),
            "state/partitions.json",
            r#"[["2024-01-01","e%3Au"],["2024-01-01","us"]]"#,
        );
        let index = format!("file://{}/state/partitions.json", dir.path().display());
        for index in [None, Some(index.as_str())] {
            let session = session(dir.path(), table(dir.path(), TWO_KEYS, index));
            assert_eq!(
                count(&session, "SELECT count(*) FROM lake.events WHERE region = 'e:u'").await,
                Ok((
                    1,
                    if index.is_some() { 1 } else { 2 },
                    if index.is_some() { 2 } else { 1 }
                )),
                "index {index:?}"
            );
            assert_eq!(
                // The index was read by the first statement: one object, the file.
                count(&session, "SELECT sum(id) FROM lake.events WHERE region LIKE 'e:%'").await,
                Ok((1, if index.is_some() { 1 } else { 3 }, 1)),
                "index {index:?}"
            );
        }
    }

    #[tokio::test]
    async fn staged_hidden_and_marker_files_are_not_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "data/events/part-0.csv", "id\n1\n2\n");
        // A running job's staged output, a checksum file, a marker and an editor's leftovers.
        write(
            dir.path(),
            "data/events/_kglue_staging/jr-1/part-jr-1.csv",
            "id\n7\n8\n9\n",
        );
        write(dir.path(), "data/events/.part-0.csv.crc", "crc");
        write(dir.path(), "data/events/part-0.csv.crc", "crc");
        write(dir.path(), "data/events/_SUCCESS", "");
        let session = session(dir.path(), table(dir.path(), "[]", None));
        assert_eq!(count(&session, "SELECT count(*) FROM lake.events").await, Ok((2, 1, 1)));
    }

    #[tokio::test]
    async fn an_object_or_folder_outside_the_layout_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_level_lake(dir.path());
        write(dir.path(), "data/events/notes.csv", "id\n1\n");
        let session = session(dir.path(), table(dir.path(), TWO_KEYS, None));
        let error = count(&session, "SELECT count(*) FROM lake.events WHERE region = 'eu'")
            .await
            .expect_err("a stray object");
        assert!(
            error.contains(&format!(
                "table lake.events: object file:///{}/data/events/notes.csv is not in the table's partition folders (expected dt=<value>/region=<value>)",
                dir.path().display().to_string().trim_start_matches('/')
            )),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("data/events/notes.csv")).expect("rm");
        write(dir.path(), "data/events/dt=2024-01-05/eu/part-0.csv", "id\n1\n");
        let error = count(&session, "SELECT count(*) FROM lake.events WHERE region LIKE 'e%'")
            .await
            .expect_err("a folder of no key");
        assert!(
            error.contains(
                "data/events/dt=2024-01-05/eu/ is not a partition folder of key region (expected region=<value>)"
            ),
            "{error}"
        );
        write(dir.path(), "data/events/dt=someday/region=eu/part-0.csv", "id\n1\n");
        let error = count(
            &session,
            "SELECT count(*) FROM lake.events WHERE dt > DATE '2024-01-01'",
        )
        .await
        .expect_err("a value of the wrong type");
        assert!(
            error.contains(
                "data/events/dt=someday/ is not a partition folder of key dt (\"someday\" is not a Date32 (key dt))"
            ),
            "{error}"
        );
    }
}
