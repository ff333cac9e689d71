//! One crawl, wherever it runs: the Crawler's targets are listed, classified and grouped into
//! tables ([`plan_crawl`]), then the plan is written to a [`Catalog`] — a directory of manifests
//! on a laptop, a namespace in the cluster — with the same order (partition indexes, the Database,
//! the Tables, the folders crawled), and a table whose entry someone else declared reported as a
//! conflict in both. `kglue crawl` renders the outcome ([`render`]); `kglue attempt` reports it.

use std::fmt::Write as _;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::table::TableUpdate;
use kglue_crds::{ClassifierSpec, Crawler, Table};
use kube::ResourceExt;

use super::plan::{Action, CrawlError, CrawlPlan, new_database, plan_crawl};
use super::state::StateError;
use crate::catalog::{Catalog, TableWriteError};
use crate::storage::{Credentials, StoreResolver};

/// The condition a crawl sets on a Table whose data disagrees with it beyond widening.
pub const CONDITION_SCHEMA_DRIFT: &str = "SchemaDrift";

/// What can stop a crawl.
#[derive(Debug, thiserror::Error)]
pub enum CrawlRunError {
    /// The crawl itself failed.
    #[error("crawler {crawler}: {source}")]
    Crawl {
        /// The crawler's name.
        crawler: String,
        /// The cause (boxed: object-store errors are large).
        source: Box<CrawlError>,
    },
    /// The catalog could not be written.
    #[error(transparent)]
    Catalog(#[from] TableWriteError),
}

/// Crawls with `crawler` against `catalog`; with `dry_run`, only plans.
pub async fn crawl<C: Catalog + ?Sized>(
    crawler: &Crawler,
    catalog: &mut C,
    credentials: Credentials,
    dry_run: bool,
) -> Result<CrawlPlan, CrawlRunError> {
    let name = crawler.name_any();
    let crawl_error = |source: CrawlError| CrawlRunError::Crawl {
        crawler: name.clone(),
        source: Box::new(source),
    };
    let view = catalog.view();
    let classifiers: Vec<(String, ClassifierSpec)> = crawler
        .spec
        .classifiers
        .iter()
        .map(|c| {
            view.classifiers()
                .get(c)
                .map(|spec| (c.clone(), spec.clone()))
                .ok_or_else(|| {
                    crawl_error(CrawlError::Invalid(format!(
                        "classifier {c:?} is not defined in {}",
                        catalog.place()
                    )))
                })
        })
        .collect::<Result<_, _>>()?;
    let resolver = StoreResolver::new(view.connections().clone(), credentials);
    let database = &crawler.spec.database_name;
    let existing: Vec<Table> = view.tables_in(database).cloned().collect();
    let database_exists = view.database(database).is_some();
    let mut plan = plan_crawl(&name, &crawler.spec, &classifiers, &resolver, &existing)
        .await
        .map_err(crawl_error)?;
    if dry_run {
        return Ok(plan);
    }
    let started = Instant::now();
    finish_tables(&mut plan, &name, &Time(Timestamp::now()));
    write_indexes(&mut plan).await.map_err(|e| crawl_error(e.into()))?;
    if !plan.tables.is_empty() && !database_exists {
        catalog.create_database(new_database(&name, database)).await?;
        plan.created_database = Some(database.clone());
    }
    for planned in &mut plan.tables {
        let before = existing
            .iter()
            .find(|t| t.spec.table_name == planned.table.spec.table_name);
        let written = match planned.action {
            Action::Delete => catalog.delete_table(&planned.table).await,
            _ => catalog.write_table(before, planned.table.clone()).await,
        };
        if let Err(error) = written {
            match error.conflict() {
                Some(message) => planned.action = Action::Conflict(message),
                None => return Err(error.into()),
            }
        }
    }
    record_folders(&plan).await.map_err(|e| crawl_error(e.into()))?;
    plan.report.add_time("write", started.elapsed());
    Ok(plan)
}

/// Writes the partition index of every planned table that has partition keys and points its
/// status at it. Called before the tables are written.
pub async fn write_indexes(plan: &mut CrawlPlan) -> Result<(), StateError> {
    let Some(state) = plan.state.clone() else {
        return Ok(());
    };
    for planned in &mut plan.tables {
        if planned.action == Action::Delete || planned.table.spec.partition_keys.is_empty() {
            continue;
        }
        let spec = &planned.table.spec;
        let url = state
            .write_index(&spec.database_name, &spec.table_name, &planned.partitions)
            .await?;
        if let Some(summary) = planned.table.status.as_mut().and_then(|s| s.partitions.as_mut()) {
            summary.index = Some(url);
        }
    }
    Ok(())
}

/// Records the folders the crawl read. Called after the tables are written.
pub async fn record_folders(plan: &CrawlPlan) -> Result<(), StateError> {
    let Some(state) = &plan.state else {
        return Ok(());
    };
    for (target, folders) in &plan.crawled_folders {
        state.record_folders(target, folders).await?;
    }
    Ok(())
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
