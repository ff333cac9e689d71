//! `kglue crawl` on a laptop: the same Crawler manifest, with a directory of manifests as the
//! catalog. Tables are written there one object per file, as `kubectl apply` takes them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::table::TableUpdate;
use kglue_crds::{ClassifierSpec, Crawler, Table};
use kube::ResourceExt;

use super::plan::{Action, CrawlError, CrawlPlan, new_database, plan_crawl};
use super::state::{record_folders, write_indexes};
use crate::catalog::{CatalogError, DirCatalog};
use crate::storage::{Credentials, StoreResolver};

/// The condition a crawl sets on a Table whose data disagrees with it beyond widening.
pub const CONDITION_SCHEMA_DRIFT: &str = "SchemaDrift";

/// What can stop a local crawl.
#[derive(Debug, thiserror::Error)]
pub enum LocalCrawlError {
    /// The crawler manifest is unreadable or not a single Crawler.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The catalog directory could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The crawl itself failed.
    #[error("crawler {crawler}: {source}")]
    Crawl {
        /// The crawler's name.
        crawler: String,
        /// The cause (boxed: object-store errors are large).
        source: Box<CrawlError>,
    },
}

/// Reads the single Crawler of a manifest file.
pub fn read_crawler(path: &Path) -> Result<Crawler, LocalCrawlError> {
    let manifest_error = |message: String| LocalCrawlError::Manifest {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| manifest_error(e.to_string()))?;
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| manifest_error(format!("not valid YAML: {e}")))?;
    let mut crawlers = documents.into_iter().filter(|d| d["kind"] == "Crawler");
    let (Some(crawler), None) = (crawlers.next(), crawlers.next()) else {
        return Err(manifest_error("expected exactly one Crawler in the file".into()));
    };
    let name = crawler["metadata"]["name"].as_str().unwrap_or_default().to_string();
    serde_json::from_value(crawler).map_err(|e| manifest_error(format!("Crawler {name:?}: {e}")))
}

/// Crawls with `crawler` against the catalog in `catalog_dir`; with `dry_run`, only plans.
pub async fn crawl_dir(
    crawler: &Crawler,
    catalog_dir: &Path,
    credentials: Credentials,
    dry_run: bool,
) -> Result<CrawlPlan, LocalCrawlError> {
    let name = crawler.name_any();
    let crawl_error = |source: CrawlError| LocalCrawlError::Crawl {
        crawler: name.clone(),
        source: Box::new(source),
    };
    let mut catalog = DirCatalog::load(catalog_dir)?;
    let classifiers: Vec<(String, ClassifierSpec)> = crawler
        .spec
        .classifiers
        .iter()
        .map(|c| {
            catalog
                .classifiers()
                .get(c)
                .map(|spec| (c.clone(), spec.clone()))
                .ok_or_else(|| {
                    crawl_error(CrawlError::Invalid(format!(
                        "classifier {c:?} is not defined in {}",
                        catalog_dir.display()
                    )))
                })
        })
        .collect::<Result<_, _>>()?;
    let resolver = StoreResolver::new(catalog.connections().clone(), credentials);
    let existing: Vec<Table> = catalog.tables_in(&crawler.spec.database_name).cloned().collect();
    let mut plan = plan_crawl(&name, &crawler.spec, &classifiers, &resolver, &existing)
        .await
        .map_err(crawl_error)?;
    if dry_run {
        return Ok(plan);
    }
    let started = Instant::now();
    finish_tables(&mut plan, &name, &Time(Timestamp::now()));
    write_indexes(&mut plan).await.map_err(|e| crawl_error(e.into()))?;
    let database = &crawler.spec.database_name;
    if !plan.tables.is_empty() && catalog.database(database).is_none() {
        catalog.create_database(new_database(&name, database))?;
        plan.created_database = Some(database.clone());
    }
    for planned in &plan.tables {
        let table = &planned.table;
        match planned.action {
            Action::Delete => {
                catalog.delete_table(&table.spec.database_name, &table.spec.table_name)?;
            }
            _ => {
                catalog.save_table(table.clone())?;
            }
        }
    }
    record_folders(&plan).await.map_err(|e| crawl_error(e.into()))?;
    plan.report.add_time("write", started.elapsed());
    Ok(plan)
}

/// Sets what a crawl records in each planned table's status, wherever the table is written: the
/// `SchemaDrift` condition, and who last changed it.
pub fn finish_tables(plan: &mut CrawlPlan, crawler: &str, now: &Time) {
    for planned in &mut plan.tables {
        let table = &mut planned.table;
        match &planned.action {
            Action::Delete => continue,
            Action::Drift(message) => {
                set_condition(table, CONDITION_SCHEMA_DRIFT, "True", "IncompatibleData", message, now)
            }
            _ => set_condition(table, CONDITION_SCHEMA_DRIFT, "False", "Compatible", "", now),
        }
        if matches!(planned.action, Action::Create | Action::Update(_)) {
            table.status.get_or_insert_with(Default::default).last_updated = Some(TableUpdate {
                by: format!("Crawler/{crawler}"),
                run_id: None,
                time: now.clone(),
            });
        }
    }
}

/// Sets a condition, keeping its transition time when its status did not change.
fn set_condition(table: &mut Table, type_: &str, status: &str, reason: &str, message: &str, now: &Time) {
    let conditions = &mut table.status.get_or_insert_with(Default::default).observed.conditions;
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.into();
            existing.reason = reason.into();
            existing.message = message.into();
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now.clone(),
            observed_generation: None,
        }),
    }
}

/// The plan or outcome of a crawl, for people.
pub fn render(plan: &CrawlPlan, crawler: &Crawler, dry_run: bool) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would" } else { "did" };
    let _ = writeln!(
        out,
        "crawler {} (database {}): {} table(s){}",
        crawler.name_any(),
        crawler.spec.database_name,
        plan.tables.len(),
        if dry_run { " — dry run, nothing written" } else { "" }
    );
    for planned in &plan.tables {
        let spec = &planned.table.spec;
        let (word, detail) = match &planned.action {
            Action::Create => ("create", String::new()),
            Action::Update(changes) => ("update", changes.join("; ")),
            Action::Unchanged => ("unchanged", String::new()),
            Action::Logged(changes) => ("log only", changes.join("; ")),
            Action::Drift(message) => ("drift", message.clone()),
            Action::Deprecate => ("deprecate", "its data disappeared".to_string()),
            Action::Delete => ("delete", "its data disappeared".to_string()),
            Action::Conflict(message) => ("conflict", message.clone()),
        };
        let partitions = planned.table.partition_count().unwrap_or(0);
        let _ = writeln!(
            out,
            "  {word:<10} {}.{}  {:?} {}  columns: {}  partition keys: {}  partitions: {partitions} (+{})",
            spec.database_name,
            spec.table_name,
            spec.storage.format.format,
            spec.storage.location,
            spec.columns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            spec.partition_keys
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            planned.partitions_added,
        );
        if !detail.is_empty() {
            let _ = writeln!(out, "             {detail}");
        }
    }
    if let Some(database) = &plan.created_database {
        let _ = writeln!(out, "  created database {database}");
    }
    let report = &plan.report;
    let _ = writeln!(
        out,
        "objects: {} listed, {} read, {} skipped, {} in folders crawled before ({verb} write {} table file(s))",
        report.objects_listed,
        report.objects_read,
        report.skipped.len(),
        report.previously_crawled,
        if dry_run { 0 } else { plan.tables.len() }
    );
    for (key, reason) in &report.skipped {
        let _ = writeln!(out, "  skipped {key}: {reason}");
    }
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(phase, d)| format!("{phase} {:.3}s", d.as_secs_f64()))
        .collect();
    let _ = writeln!(out, "timings: {}", timings.join(", "));
    out
}
