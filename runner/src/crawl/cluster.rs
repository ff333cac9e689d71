//! A crawl against the Kubernetes API: Classifiers, Connections and Tables are read from the
//! crawler's namespace, and Tables are written with server-side apply under the crawler's own
//! field manager (`kglue-crawler-<name>`), never forced. A Table declared in Git keeps its
//! manager's fields: a change that would overwrite them is reported as a conflict instead.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::{Classifier, ClassifierSpec, Connection, ConnectionSpec, Crawler, Database, Table};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::local::{CONDITION_SCHEMA_DRIFT, finish_tables};
use super::plan::{Action, CrawlError, CrawlPlan, new_database, plan_crawl};
use super::state::{record_folders, write_indexes};
use crate::storage::{Credentials, StoreResolver};

/// The field manager of a crawler's writes.
pub fn field_manager(crawler: &str) -> String {
    format!("kglue-crawler-{crawler}")
}

/// What can stop a crawl in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCrawlError {
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The cause.
        source: Box<kube::Error>,
    },
    /// The crawl itself failed.
    #[error("crawler {crawler}: {source}")]
    Crawl {
        /// The crawler's name.
        crawler: String,
        /// The cause.
        source: Box<CrawlError>,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterCrawlError {
    let what = what.into();
    move |source| ClusterCrawlError::Api {
        what,
        source: Box::new(source),
    }
}

/// Crawls with `crawler` in `namespace`; with `dry_run`, only plans.
pub async fn crawl_cluster(
    crawler: &Crawler,
    client: Client,
    namespace: &str,
    credentials: Credentials,
    dry_run: bool,
) -> Result<CrawlPlan, ClusterCrawlError> {
    let name = crawler.name_any();
    let crawl_error = |source: CrawlError| ClusterCrawlError::Crawl {
        crawler: name.clone(),
        source: Box::new(source),
    };
    let classifiers_api: Api<Classifier> = Api::namespaced(client.clone(), namespace);
    let mut classifiers: Vec<(String, ClassifierSpec)> = Vec::new();
    for wanted in &crawler.spec.classifiers {
        let classifier = classifiers_api
            .get_opt(wanted)
            .await
            .map_err(api_error(format!("reading Classifier {wanted}")))?
            .ok_or_else(|| {
                crawl_error(CrawlError::Invalid(format!(
                    "classifier {wanted:?} does not exist in namespace {namespace}"
                )))
            })?;
        classifiers.push((wanted.clone(), classifier.spec));
    }
    let connections: BTreeMap<String, ConnectionSpec> = Api::<Connection>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing Connections"))?
        .into_iter()
        .map(|c| (c.name_any(), c.spec))
        .collect();
    let tables: Api<Table> = Api::namespaced(client, namespace);
    let existing: Vec<Table> = tables
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing Tables"))?
        .into_iter()
        .filter(|t| t.spec.database_name == crawler.spec.database_name)
        .collect();
    let resolver = StoreResolver::new(connections, credentials);
    let mut plan = plan_crawl(&name, &crawler.spec, &classifiers, &resolver, &existing)
        .await
        .map_err(crawl_error)?;
    if dry_run {
        return Ok(plan);
    }
    let started = std::time::Instant::now();
    finish_tables(&mut plan, &name, &Time(Timestamp::now()));
    write_indexes(&mut plan).await.map_err(|e| crawl_error(e.into()))?;
    let manager = field_manager(&name);
    let databases: Api<Database> = Api::namespaced(tables.clone().into_client(), namespace);
    let database = &crawler.spec.database_name;
    let database_exists = databases
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing Databases"))?
        .iter()
        .any(|d| &d.spec.database_name == database);
    if !plan.tables.is_empty() && !database_exists {
        let object = new_database(&name, database);
        databases
            .patch(
                &object.name_any(),
                &PatchParams::apply(&manager),
                &Patch::Apply(&object),
            )
            .await
            .map_err(api_error(format!("creating Database {database}")))?;
        plan.created_database = Some(database.clone());
    }
    for planned in &mut plan.tables {
        let object_name = planned.table.name_any();
        match &planned.action {
            Action::Delete => {
                match tables.delete(&object_name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(api_error(format!("deleting Table {object_name}"))(error)),
                }
                continue;
            }
            Action::Create | Action::Update(_) => {
                // Only the fields the crawl decides, so the crawler owns nothing else.
                let spec_patch = json!({
                    "apiVersion": "kglue.dev/v1alpha1",
                    "kind": "Table",
                    "metadata": {"name": object_name, "labels": planned.table.metadata.labels},
                    "spec": planned.table.spec,
                });
                match tables
                    .patch(&object_name, &PatchParams::apply(&manager), &Patch::Apply(&spec_patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        planned.action = Action::Conflict(format!(
                            "not written: the change would overwrite fields another manager owns ({})",
                            status.message
                        ));
                        continue;
                    }
                    Err(error) => return Err(api_error(format!("applying Table {object_name}"))(error)),
                }
            }
            _ => {}
        }
        let status = planned.table.status.clone().unwrap_or_default();
        let drift: Vec<_> = status
            .observed
            .conditions
            .iter()
            .filter(|c| c.type_ == CONDITION_SCHEMA_DRIFT)
            .collect();
        let status_patch = json!({
            "apiVersion": "kglue.dev/v1alpha1",
            "kind": "Table",
            "metadata": {"name": object_name},
            "status": {
                "conditions": drift,
                "partitions": status.partitions,
                "deprecated": status.deprecated,
                "lastUpdated": status.last_updated,
            },
        });
        tables
            .patch_status(
                &object_name,
                &PatchParams::apply(&manager),
                &Patch::Apply(&status_patch),
            )
            .await
            .map_err(api_error(format!(
                "recording the crawl in Table {object_name}'s status"
            )))?;
    }
    record_folders(&plan).await.map_err(|e| crawl_error(e.into()))?;
    plan.report.add_time("write", started.elapsed());
    Ok(plan)
}
