//! A job run's catalog in the cluster: a snapshot of the namespace's Databases, Tables,
//! Connections and Classifiers to plan against, and [`ClusterTables`], which writes the Tables a
//! run creates or updates with server-side apply under the job's own field manager
//! (`kglue-job-<name>`), as a crawl does under `kglue-crawler-<name>`.

use std::collections::BTreeMap;

use kglue_crds::{Classifier, Connection, Database, Table};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};

use crate::catalog::{DirCatalog, TableWriteError, TableWriter};

/// The field manager of a job's writes.
pub fn job_field_manager(job: &str) -> String {
    format!("kglue-job-{job}")
}

/// The catalog of a namespace could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the catalog of namespace {namespace}: listing {kind}s: {source}")]
pub struct CatalogReadError {
    /// The namespace.
    pub namespace: String,
    /// The kind being listed.
    pub kind: &'static str,
    /// The cause.
    pub source: Box<kube::Error>,
}

/// Reads the catalog of `namespace` into memory. One list per kind: a run reads each table it
/// uses once, and planning must not see the catalog change under it.
pub async fn catalog_snapshot(client: &Client, namespace: &str) -> Result<DirCatalog, CatalogReadError> {
    let error = |kind: &'static str| {
        move |source: kube::Error| CatalogReadError {
            namespace: namespace.to_string(),
            kind,
            source: Box::new(source),
        }
    };
    let params = ListParams::default();
    let databases = Api::<Database>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(error("Database"))?
        .items;
    let tables = Api::<Table>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(error("Table"))?
        .items;
    let connections = Api::<Connection>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(error("Connection"))?
        .into_iter()
        .map(|c| (c.name_any(), c.spec))
        .collect();
    let classifiers = Api::<Classifier>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(error("Classifier"))?
        .into_iter()
        .map(|c| (c.name_any(), c.spec))
        .collect();
    Ok(DirCatalog::snapshot(databases, tables, connections, classifiers))
}

/// Writes a job run's Tables to the API server.
pub struct ClusterTables {
    api: Api<Table>,
    manager: String,
}

impl ClusterTables {
    /// The writer for the Job `job` in `namespace`.
    pub fn new(client: Client, namespace: &str, job: &str) -> Self {
        ClusterTables {
            api: Api::namespaced(client, namespace),
            manager: job_field_manager(job),
        }
    }
}

#[async_trait::async_trait]
impl TableWriter for ClusterTables {
    async fn write_table(&mut self, existing: Option<&Table>, table: Table) -> Result<(), TableWriteError> {
        let what = format!("{}.{}", table.spec.database_name, table.spec.table_name);
        let name = table.name_any();
        // The spec is applied only when the run changed it (a new table, new columns): a job
        // that appends to a table declared in Git or made by a crawler would otherwise claim
        // fields of theirs, and an unchanged spec needs no write.
        if existing.is_none_or(|e| e.spec != table.spec) {
            let mut metadata = json!({"name": name});
            if let Some(labels) = &table.metadata.labels {
                metadata["labels"] = json!(labels);
            }
            let patch = json!({
                "apiVersion": "kglue.dev/v1alpha1",
                "kind": "Table",
                "metadata": metadata,
                "spec": table.spec,
            });
            // Never forced: a conflict means someone else declared these fields, and the run
            // says so instead of overwriting their manifest.
            match self
                .api
                .patch(&name, &PatchParams::apply(&self.manager), &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    return Err(TableWriteError::Conflict {
                        table: what,
                        message: status.message.clone(),
                    });
                }
                Err(source) => {
                    return Err(TableWriteError::Api {
                        table: what,
                        source: Box::new(source),
                    });
                }
            }
        }
        let patch = json!({
            "apiVersion": "kglue.dev/v1alpha1",
            "kind": "Table",
            "metadata": {"name": name},
            "status": status_fields(&table),
        });
        // Forced, unlike the spec: the partition summary and "last updated by" are facts about
        // the data this run has just committed, and supersede whatever the previous writer (a
        // crawl, another job) recorded. Refusing would leave committed data with a stale summary.
        self.api
            .patch_status(&name, &PatchParams::apply(&self.manager).force(), &Patch::Apply(&patch))
            .await
            .map_err(|source| TableWriteError::Api {
                table: what,
                source: Box::new(source),
            })?;
        Ok(())
    }
}

/// The status fields a job run owns: the partition summary and who last updated the table. Only
/// those present, since an explicit null in an apply would be a claim on the field too.
fn status_fields(table: &Table) -> Value {
    let mut fields = Map::new();
    if let Some(status) = &table.status {
        if let Some(partitions) = &status.partitions {
            fields.insert("partitions".into(), json!(partitions));
        }
        if let Some(updated) = &status.last_updated {
            fields.insert("lastUpdated".into(), json!(updated));
        }
    }
    Value::Object(fields)
}

/// The labels every object a run writes could carry, kept here so the writer and tests agree.
pub fn owner_labels(owner_name: &str, run_id: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("kglue.dev/run-id".to_string(), run_id.to_string())]);
    // A label value holds at most 63 characters; a longer name is found through the spec.
    if owner_name.len() <= 63 {
        labels.insert("kglue.dev/owner-name".into(), owner_name.to_string());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_leave_out_what_the_run_does_not_know() {
        let table: Table = serde_json::from_value(json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Table",
            "metadata": {"name": "raw.orders"},
            "spec": {"databaseName": "raw", "tableName": "orders",
                     "storage": {"location": "s3://bucket/orders/", "format": "Csv"}},
            "status": {"lastUpdated": {"by": "Job/load", "runId": "jr-1", "time": "2024-05-01T00:00:00Z"}}
        }))
        .expect("valid table");
        assert_eq!(
            status_fields(&table),
            json!({"lastUpdated": {"by": "Job/load", "runId": "jr-1", "time": "2024-05-01T00:00:00Z"}})
        );
    }

    #[test]
    fn owner_name_label_only_when_it_fits() {
        assert_eq!(
            owner_labels("load", "jr-1")
                .get("kglue.dev/owner-name")
                .map(String::as_str),
            Some("load")
        );
        let long = "x".repeat(64);
        let labels = owner_labels(&long, "jr-1");
        assert!(!labels.contains_key("kglue.dev/owner-name"));
        assert_eq!(labels.get("kglue.dev/run-id").map(String::as_str), Some("jr-1"));
    }
}
