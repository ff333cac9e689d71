//! A crawl from start to plan: list each target, classify a sample of every folder, group files
//! into tables, and compare them with the catalog under the crawler's schema-change policy. The
//! plan says what to write; nothing is written here, so `--dry-run` and a real crawl share it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kglue_crds::common::DataFormat;
use kglue_crds::crawler::{DeleteBehavior, RecrawlPolicy, UpdateBehavior};
use kglue_crds::glue_type::{GlueType, TypeChange};
use kglue_crds::table::PartitionSummary;
use kglue_crds::{ClassifierSpec, CrawlerSpec, Table, TableSpec};
use object_store::ObjectStore;

use super::classify::{Classified, classify};
use super::group::{FileEntry, GroupOptions, PathTemplate, TableGroup, group};
use super::infer::InferredColumn;
use super::listing::{Exclusions, ListingError, list_target};
use super::state::{CrawlState, StateError};
use crate::storage::{Location, LocationError, StorageError, StoreResolver};

pub use kglue_crds::crawler::CRAWLER_LABEL;

/// How many files are classified at once (each is one or two ranged reads).
const CLASSIFY_CONCURRENCY: usize = 16;

/// Why a crawl could not run at all. Problems with single files are not errors: they go into
/// the report.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// A target's URL or connection is unusable.
    #[error("target {target}: {source}")]
    Storage {
        /// The target path.
        target: String,
        /// The cause.
        source: StorageError,
    },
    /// A target could not be listed (unreachable endpoint, wrong credentials, missing bucket…).
    #[error("target {target}: {source}")]
    Listing {
        /// The target path.
        target: String,
        /// The cause.
        source: ListingError,
    },
    /// A file could not be read after it was listed.
    #[error("reading {key}: {source}")]
    Read {
        /// The object's URL.
        key: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// The spec asks for something that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// The crawler's records could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A database target could not be read (unreachable, refused, a statement failed).
    #[error("{target}: {source}")]
    Database {
        /// The target, with its Connection.
        target: String,
        /// The cause.
        source: kglue_jdbc::JdbcError,
    },
    /// More tables than `grouping.tableThreshold` allows; nothing was written.
    #[error("the crawl would create {found} tables, more than tableThreshold {threshold}; nothing was written")]
    TooManyTables {
        /// Tables found.
        found: usize,
        /// The threshold.
        threshold: i32,
    },
}

/// What a crawl will do to one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create it.
    Create,
    /// Replace its columns, partitions or storage with the crawled ones.
    Update(Vec<String>),
    /// Nothing changed (partitions may still be refreshed in status).
    Unchanged,
    /// Changes were found but the policy (Log) or the table's lock keeps them out.
    Logged(Vec<String>),
    /// The data disagrees with the table in a way no widening covers; the table is left as it is
    /// and gets a `SchemaDrift` condition with this message.
    Drift(String),
    /// The data behind a table of this crawler disappeared: mark it deprecated.
    Deprecate,
    /// The data disappeared: delete the table.
    Delete,
    /// The change was not written: another field manager (a manifest applied from Git) owns the
    /// fields it would change. Only the cluster writer finds this.
    Conflict(String),
}

/// One table in the plan.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// The table as it should be after the crawl (for Delete: as it is).
    pub table: Table,
    /// What happens to it.
    pub action: Action,
    /// Partitions not in the catalog before.
    pub partitions_added: usize,
    /// Every partition of the table (values per key), for its index object.
    pub partitions: BTreeSet<Vec<String>>,
}

/// A table as one target shows it, before it is compared with the catalog.
#[derive(Debug, Clone)]
pub struct FoundTable {
    /// The Glue table name.
    pub name: String,
    /// The table as the data describes it.
    pub desired: Table,
    /// Where it was found (its root folder's URL, or its name in the database), for messages.
    pub origin: String,
    /// Objects of it left out, with the reason (files whose format does not fit).
    pub skipped: Vec<(String, String)>,
    /// For each column and each type it was seen with, the first object that held it (URL).
    pub column_examples: Vec<(String, GlueType, String)>,
    /// Its partitions (values per key); empty without partition keys.
    pub partitions: BTreeSet<Vec<String>>,
}

/// Everything a crawl found, for people.
#[derive(Debug, Clone, Default)]
pub struct CrawlReport {
    /// Objects listed under the targets.
    pub objects_listed: usize,
    /// Objects whose first bytes were read to classify them.
    pub objects_read: usize,
    /// Objects in folders earlier crawls read, left alone by `CrawlNewFoldersOnly`.
    pub previously_crawled: usize,
    /// Objects left out, with the reason, by URL.
    pub skipped: Vec<(String, String)>,
    /// Time per phase, in the order the phases ran.
    pub timings: Vec<(&'static str, Duration)>,
}

impl CrawlReport {
    /// Adds time to a phase (a crawl with several targets runs each phase several times).
    pub fn add_time(&mut self, phase: &'static str, elapsed: Duration) {
        match self.timings.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += elapsed,
            None => self.timings.push((phase, elapsed)),
        }
    }
}

/// The outcome of planning a crawl.
#[derive(Debug, Clone, Default)]
pub struct CrawlPlan {
    /// The tables, in name order.
    pub tables: Vec<PlannedTable>,
    /// The report.
    pub report: CrawlReport,
    /// The crawler's record store, when `spec.state` is set.
    pub state: Option<CrawlState>,
    /// Per target, every folder crawled so far (recorded once the tables are written).
    pub crawled_folders: Vec<(String, BTreeSet<String>)>,
    /// The Database the crawl created because it did not exist (set by the writers).
    pub created_database: Option<String>,
}

/// Plans a crawl of `spec` (the Crawler named `crawler`) against the Tables of its database in
/// `existing`.
pub async fn plan_crawl(
    crawler: &str,
    spec: &CrawlerSpec,
    classifiers: &[(String, ClassifierSpec)],
    resolver: &StoreResolver,
    existing: &[Table],
) -> Result<CrawlPlan, CrawlError> {
    let state = spec
        .state
        .as_ref()
        .map(|s| CrawlState::open(resolver, s, crawler))
        .transpose()?;
    let new_folders_only = spec.recrawl_policy == RecrawlPolicy::CrawlNewFoldersOnly;
    if new_folders_only && state.is_none() {
        return Err(CrawlError::Invalid(
            "recrawlPolicy CrawlNewFoldersOnly needs state.location: where the crawler records the folders it crawled"
                .into(),
        ));
    }
    let mut crawled_folders = Vec::new();
    let options = group_options(spec)?;
    let mut report = CrawlReport::default();
    let mut found: Vec<FoundTable> = Vec::new();
    for target in &spec.targets {
        let storage_error = |source| CrawlError::Storage {
            target: target.path.clone(),
            source,
        };
        let location: Location = target
            .path
            .parse()
            .map_err(|e: LocationError| storage_error(e.into()))?;
        let store = resolver
            .store(&location, target.connection.as_deref())
            .map_err(storage_error)?;
        let exclusions = Exclusions::new(&target.exclusions).map_err(|source| CrawlError::Listing {
            target: target.path.clone(),
            source,
        })?;

        let started = Instant::now();
        let listing = list_target(store.as_ref(), &location, &exclusions)
            .await
            .map_err(|source| CrawlError::Listing {
                target: target.path.clone(),
                source,
            })?;
        report.add_time("list", started.elapsed());
        report.objects_listed += listing.objects.len() + listing.skipped.len();
        let mut listing = listing;
        let folder_of = |o: &super::listing::Listed| o.folders.join("/");
        let mut folders: BTreeSet<String> = listing.objects.iter().map(folder_of).collect();
        if let (true, Some(state)) = (new_folders_only, &state) {
            let known = state.crawled_folders(&target.path).await?;
            let before = listing.objects.len();
            listing.objects.retain(|o| !known.contains(&folder_of(o)));
            report.previously_crawled += before - listing.objects.len();
            folders.extend(known);
        }
        crawled_folders.push((target.path.clone(), folders));
        report.skipped.extend(
            listing
                .skipped
                .iter()
                .map(|(meta, reason)| (location.url_of(&meta.location), reason.to_string())),
        );

        let started = Instant::now();
        let sample_size = target.sample_size.map(|n| n.max(1) as usize).unwrap_or(usize::MAX);
        let entries = classify_sample(
            store,
            &listing.objects,
            sample_size,
            classifiers,
            &mut report,
            &location,
        )
        .await?;
        report.add_time("classify", started.elapsed());

        let started = Instant::now();
        let grouping = group(&entries, &options);
        report.add_time("group", started.elapsed());
        report.skipped.extend(
            grouping
                .skipped
                .into_iter()
                .map(|(path, reason)| (format!("{location}/{path}"), reason)),
        );
        let target_name = location
            .prefix
            .parts()
            .next_back()
            .map(|p| p.as_ref().to_string())
            .unwrap_or_default();
        for mut table in grouping.tables {
            let name = table_name(spec.table_prefix.as_deref(), table.root.last().unwrap_or(&target_name));
            // A partial crawl sees only new partitions: the rest come from the table's index.
            if let (true, Some(state)) = (new_folders_only, &state) {
                let index = existing
                    .iter()
                    .find(|t| t.spec.table_name == name)
                    .and_then(|t| t.status.as_ref()?.partitions.as_ref()?.index.clone());
                if let Some(index) = index {
                    table.partitions.extend(state.partitions(&index).await?);
                }
            }
            found.push(files_table(
                crawler,
                &spec.database_name,
                name,
                &location,
                target.connection.clone(),
                table,
            ));
        }
    }
    for (index, target) in spec.jdbc_targets.iter().enumerate() {
        found.extend(
            super::database::crawl_database(
                crawler,
                &spec.database_name,
                spec.table_prefix.as_deref(),
                index,
                target,
                resolver,
                &mut report,
            )
            .await?,
        );
    }
    let tables = compare(crawler, spec, found, existing, &mut report)?;
    Ok(CrawlPlan {
        tables,
        report,
        state,
        crawled_folders,
        created_database: None,
    })
}

fn group_options(spec: &CrawlerSpec) -> Result<GroupOptions, CrawlError> {
    let grouping = spec.grouping.clone().unwrap_or_default();
    let templates = grouping
        .path_templates
        .iter()
        .map(|t| PathTemplate::parse(t).map_err(CrawlError::Invalid))
        .collect::<Result<_, _>>()?;
    Ok(GroupOptions {
        table_level: grouping.table_level.map(|l| l.max(0) as usize),
        templates,
        combine_compatible_schemas: grouping.combine_compatible_schemas,
    })
}

/// Classifies the first `sample_size` files of every folder; the rest are listed without a
/// schema (they take their table's).
async fn classify_sample(
    store: Arc<dyn ObjectStore>,
    objects: &[super::listing::Listed],
    sample_size: usize,
    classifiers: &[(String, ClassifierSpec)],
    report: &mut CrawlReport,
    location: &Location,
) -> Result<Vec<FileEntry>, CrawlError> {
    let mut per_folder: BTreeMap<&[String], usize> = BTreeMap::new();
    let sampled: Vec<bool> = objects
        .iter()
        .map(|o| {
            let seen = per_folder.entry(o.folders.as_slice()).or_default();
            *seen += 1;
            *seen <= sample_size
        })
        .collect();
    let results: Vec<Option<Classified>> = futures::stream::iter(objects.iter().zip(&sampled))
        .map(|(object, &sample)| {
            let store = store.clone();
            async move {
                if !sample {
                    return Ok(None);
                }
                classify(store, &object.meta, classifiers)
                    .await
                    .map(Some)
                    .map_err(|source| CrawlError::Read {
                        key: location.url_of(&object.meta.location),
                        source: Box::new(source),
                    })
            }
        })
        .buffered(CLASSIFY_CONCURRENCY)
        .try_collect()
        .await?;
    let mut entries = Vec::with_capacity(objects.len());
    for (object, result) in objects.iter().zip(results) {
        let schema = match result {
            None => None,
            Some(Classified::Schema(schema)) => {
                report.objects_read += 1;
                Some(*schema)
            }
            Some(Classified::Unclassified(reason)) => {
                report.objects_read += 1;
                report.skipped.push((
                    location.url_of(&object.meta.location),
                    format!("unclassified: {reason}"),
                ));
                continue;
            }
        };
        entries.push(FileEntry {
            folders: object.folders.clone(),
            file_name: object.file_name.clone(),
            schema,
        });
    }
    Ok(entries)
}

/// A Glue table name from a folder name: lowercase, `[a-z0-9_]`, with the crawler's prefix.
pub fn table_name(prefix: Option<&str>, folder: &str) -> String {
    let mut name: String = folder
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    format!("{}{name}", prefix.unwrap_or_default())
}

/// The Database a crawl creates when its database does not exist: named after the database,
/// labelled with the crawler.
pub fn new_database(crawler: &str, database: &str) -> kglue_crds::Database {
    let mut object = kglue_crds::Database::new(
        database.replace('_', "-").trim_matches('-'),
        kglue_crds::DatabaseSpec {
            database_name: database.to_string(),
            description: Some(format!("Created by crawler {crawler}.")),
            location_uri: None,
            parameters: BTreeMap::new(),
        },
    );
    object.metadata.labels = Some(BTreeMap::from([(CRAWLER_LABEL.to_string(), crawler.to_string())]));
    object
}

/// The Kubernetes object name of a table: `<database>.<table>` with underscores as dashes.
pub fn object_name(database: &str, table: &str) -> String {
    format!("{database}.{table}")
        .replace('_', "-")
        .trim_matches(['-', '.'])
        .to_string()
}

fn compare(
    crawler: &str,
    spec: &CrawlerSpec,
    found: Vec<FoundTable>,
    existing: &[Table],
    report: &mut CrawlReport,
) -> Result<Vec<PlannedTable>, CrawlError> {
    let mut planned: BTreeMap<String, PlannedTable> = BTreeMap::new();
    for found in found {
        let name = found.name.clone();
        if planned.contains_key(&name) {
            report.skipped.push((
                found.origin.clone(),
                format!(
                    "another folder or database table already gives table {name}; set a tablePrefix or path templates"
                ),
            ));
            continue;
        }
        report.skipped.extend(found.skipped.iter().cloned());
        let previous = existing.iter().find(|t| t.spec.table_name == name);
        let partitions_before = previous.and_then(Table::partition_count).unwrap_or(0);
        let partition_count = found.desired.partition_count().unwrap_or(0);
        let partitions_added = (partition_count - partitions_before).max(0) as usize;
        let (table, action) = match previous {
            None => (found.desired.clone(), Action::Create),
            Some(previous) => decide(previous, found.desired.clone(), spec, &found),
        };
        planned.insert(
            name,
            PlannedTable {
                table,
                action,
                partitions_added,
                partitions: found.partitions,
            },
        );
    }
    let threshold = spec.grouping.as_ref().and_then(|g| g.table_threshold);
    let creating = planned.values().filter(|p| p.action == Action::Create).count();
    if let Some(threshold) = threshold.filter(|&t| creating > t.max(0) as usize) {
        return Err(CrawlError::TooManyTables {
            found: creating,
            threshold,
        });
    }
    // Tables this crawler made whose data is gone (a partial crawl cannot tell).
    let partial = spec.recrawl_policy == RecrawlPolicy::CrawlNewFoldersOnly;
    for table in existing.iter().filter(|_| !partial) {
        let ours = table
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CRAWLER_LABEL))
            .is_some_and(|c| c == crawler);
        if !ours || planned.contains_key(&table.spec.table_name) {
            continue;
        }
        let action = match spec.schema_change_policy.delete_behavior {
            DeleteBehavior::DeleteFromDatabase => Action::Delete,
            DeleteBehavior::DeprecateInDatabase => Action::Deprecate,
            DeleteBehavior::Log => Action::Logged(vec!["its data disappeared".into()]),
        };
        let mut table = table.clone();
        if action == Action::Deprecate {
            table.status.get_or_insert_with(Default::default).deprecated = true;
        }
        planned.insert(
            table.spec.table_name.clone(),
            PlannedTable {
                table,
                action,
                partitions_added: 0,
                partitions: BTreeSet::new(),
            },
        );
    }
    Ok(planned.into_values().collect())
}

/// The table a group of files gives.
fn files_table(
    crawler: &str,
    database: &str,
    name: String,
    location: &Location,
    connection: Option<String>,
    group: TableGroup,
) -> FoundTable {
    let desired = desired_table(crawler, database, &name, location, connection, &group);
    FoundTable {
        origin: format!("{location}/{}", group.root.join("/")),
        skipped: group
            .conflicts
            .iter()
            .map(|conflict| (format!("{location}/{}", conflict.file), conflict.message.clone()))
            .collect(),
        column_examples: group
            .column_examples
            .into_iter()
            .map(|(column, type_, file)| (column, type_, format!("{location}/{file}")))
            .collect(),
        partitions: if group.partition_keys.is_empty() {
            BTreeSet::new()
        } else {
            group.partitions
        },
        name,
        desired,
    }
}

/// A Table as a crawl writes it: named after its database and table, labelled with the crawler,
/// with the partition summary in status.
pub(super) fn crawled_table(crawler: &str, spec: TableSpec, partitions: Option<PartitionSummary>) -> Table {
    let mut table = Table::new(&object_name(&spec.database_name, &spec.table_name), spec);
    table.metadata = ObjectMeta {
        name: table.metadata.name.clone(),
        labels: Some(BTreeMap::from([(CRAWLER_LABEL.to_string(), crawler.to_string())])),
        ..ObjectMeta::default()
    };
    table.status = Some(kglue_crds::TableStatus {
        partitions,
        ..Default::default()
    });
    table
}

fn desired_table(
    crawler: &str,
    database: &str,
    name: &str,
    location: &Location,
    connection: Option<String>,
    group: &TableGroup,
) -> Table {
    let root = group.root.iter().fold(location.prefix.clone(), |path, folder| {
        path.clone().join(folder.as_str())
    });
    let mut url = location.url_of(&root);
    url.push('/');
    let columns = group.schema.columns.iter().map(InferredColumn::to_column).collect();
    let partition_keys = group.partition_keys.iter().map(InferredColumn::to_column).collect();
    let mut parameters = BTreeMap::from([("classification".to_string(), group.schema.classification.clone())]);
    if let Some(classifier) = &group.schema.classifier {
        parameters.insert("classifier".into(), classifier.clone());
    }
    let newest = group
        .partitions
        .iter()
        .rev()
        .take(10)
        .map(|values| {
            group
                .partition_keys
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{}={v}", k.name))
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let partitions = (!group.partition_keys.is_empty()).then_some(PartitionSummary {
        count: group.partitions.len() as i64,
        newest,
        index: None,
        deprecated: None,
    });
    crawled_table(
        crawler,
        TableSpec {
            database_name: database.to_string(),
            table_name: name.to_string(),
            description: None,
            storage: kglue_crds::common::StorageSpec {
                location: url,
                format: group.schema.format.clone(),
                connection,
            },
            columns,
            partition_keys,
            schema_locked: false,
            parameters,
        },
        partitions,
    )
}

/// How a column's type changes from the table's to the data's. Within one crawl, conflicting
/// types widen to string (Glue's inference); but an existing table's typed column that the data
/// would turn into a string is drift: its readers cannot read the new values.
fn column_change(new: &GlueType, old: &GlueType) -> TypeChange {
    let text = |t: &GlueType| matches!(t, GlueType::String | GlueType::Char(_) | GlueType::Varchar(_));
    match new.change_from(old) {
        TypeChange::Widened if text(new) && !text(old) => TypeChange::Incompatible,
        change => change,
    }
}

/// Compares an existing table with what the crawl found.
fn decide(previous: &Table, desired: Table, spec: &CrawlerSpec, found: &FoundTable) -> (Table, Action) {
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    let old_columns = &previous.spec.columns;
    let mut merged = old_columns.clone();
    for column in &desired.spec.columns {
        match old_columns.iter().find(|c| c.name.eq_ignore_ascii_case(&column.name)) {
            None => {
                changes.push(format!("new column {} {}", column.name, column.type_));
                merged.push(column.clone());
            }
            Some(old) => match (GlueType::parse(&column.type_), GlueType::parse(&old.type_)) {
                (Ok(new), Ok(old_type)) => match column_change(&new, &old_type) {
                    TypeChange::Same => {}
                    TypeChange::Widened => {
                        changes.push(format!("column {} {} → {}", column.name, old.type_, column.type_));
                        if let Some(slot) = merged.iter_mut().find(|c| c.name == old.name) {
                            slot.type_ = column.type_.clone();
                        }
                    }
                    TypeChange::Incompatible => {
                        // Name an object that holds a type the table's cannot take.
                        let example = found
                            .column_examples
                            .iter()
                            .filter(|(name, _, _)| name.eq_ignore_ascii_case(&old.name))
                            .find(|(_, type_, _)| column_change(type_, &old_type) == TypeChange::Incompatible);
                        drift.push(match example {
                            Some((_, type_, url)) => format!(
                                "{url} holds column {} as {type_} where the table has {}",
                                old.name, old.type_
                            ),
                            None => format!(
                                "column {} is {} in the table but {} holds {}",
                                old.name, old.type_, found.origin, column.type_
                            ),
                        })
                    }
                },
                (_, Err(e)) => drift.push(format!("column {}: the table's type does not parse: {e}", old.name)),
                (Err(e), _) => drift.push(format!("column {}: {e}", column.name)),
            },
        }
    }
    // A database table's columns are the database's: one dropped there cannot be read any more.
    // (Files keep old columns: older files still hold them.)
    let database = desired.spec.storage.format.format == DataFormat::Jdbc;
    if database {
        for old in old_columns {
            if !desired
                .spec
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&old.name))
            {
                changes.push(format!("column {} is no longer in {}", old.name, found.origin));
                merged.retain(|c| c.name != old.name);
            }
        }
    }
    if previous.spec.storage.format.format != desired.spec.storage.format.format {
        drift.push(format!(
            "the table is {:?} but the data is {:?}",
            previous.spec.storage.format.format, desired.spec.storage.format.format
        ));
    }
    let old_keys: Vec<&str> = previous.spec.partition_keys.iter().map(|k| k.name.as_str()).collect();
    let new_keys: Vec<&str> = desired.spec.partition_keys.iter().map(|k| k.name.as_str()).collect();
    if old_keys != new_keys {
        drift.push(format!(
            "partition keys are {old_keys:?} in the table but the folders give {new_keys:?}"
        ));
    }
    let mut table = previous.clone();
    // Partitions are facts about the data: the summary is refreshed whatever the policy.
    let status = table.status.get_or_insert_with(Default::default);
    status.partitions = desired.status.as_ref().and_then(|s| s.partitions.clone());
    status.deprecated = false;
    if !drift.is_empty() {
        return (table, Action::Drift(drift.join("; ")));
    }
    if changes.is_empty() {
        return (table, Action::Unchanged);
    }
    if previous.spec.schema_locked || spec.schema_change_policy.update_behavior == UpdateBehavior::Log {
        return (table, Action::Logged(changes));
    }
    table.spec.columns = merged;
    if database {
        // The key, the view-or-table and the unmapped columns are facts of the database too.
        table.spec.parameters = desired.spec.parameters;
    }
    (table, Action::Update(changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_glue_names() {
        assert_eq!(table_name(None, "Orders-2024"), "orders_2024");
        assert_eq!(table_name(Some("raw_"), "customers"), "raw_customers");
        assert_eq!(table_name(None, "2024"), "_2024");
        assert_eq!(object_name("sales_raw", "orders_2024"), "sales-raw.orders-2024");
    }
}
