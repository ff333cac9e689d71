//! A namespace as the catalog of a job run or a crawl ([`ClusterCatalog`]): a snapshot of its
//! Databases, Tables, Connections and Classifiers to plan against, and the API server to write
//! the Tables and Databases the work creates or updates, with server-side apply under the Job's
//! or Crawler's own field manager (`kglue-job-<name>`, `kglue-crawler-<name>`), never forced for
//! specs: a Table declared in Git keeps its manager's fields, and a change that would overwrite
//! them is reported as a conflict.

use kglue_crds::protocol::attempt::table_field_manager;
use kglue_crds::run_result::RunOwnerKind;
use kglue_crds::{Classifier, Connection, Database, Table};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, DirCatalog, TableWriteError};
use crate::crawl::CONDITION_SCHEMA_DRIFT;

/// A namespaced kind read from the API server.
pub trait NamespacedObject:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> NamespacedObject for K where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// The catalog of a namespace could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the catalog of namespace {namespace}: listing {kind}s: {source}")]
pub struct CatalogReadError {
    /// The namespace.
    pub namespace: String,
    /// The kind being listed.
    pub kind: String,
    /// The cause.
    pub source: Box<kube::Error>,
}

/// Reads the catalog of `namespace` into memory. One list per kind: a run reads each table it
/// uses once, and planning must not see the catalog change under it.
pub async fn catalog_snapshot(client: &Client, namespace: &str) -> Result<DirCatalog, CatalogReadError> {
    let databases = list::<Database>(client, namespace).await?;
    let tables = list::<Table>(client, namespace).await?;
    let connections = list::<Connection>(client, namespace).await?;
    let classifiers = list::<Classifier>(client, namespace).await?;
    Ok(DirCatalog::snapshot(
        databases,
        tables,
        connections.into_iter().map(|c| (c.name_any(), c.spec)).collect(),
        classifiers.into_iter().map(|c| (c.name_any(), c.spec)).collect(),
    ))
}

/// Every `K` of `namespace`.
async fn list<K>(client: &Client, namespace: &str) -> Result<Vec<K>, CatalogReadError>
where
    K: NamespacedObject,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(|source| CatalogReadError {
            namespace: namespace.to_string(),
            kind: K::kind(&()).into_owned(),
            source: Box::new(source),
        })
}

/// A namespace's catalog for a job run or a crawl: the snapshot it planned against, and the API
/// server it writes to under its own field manager.
pub struct ClusterCatalog {
    snapshot: DirCatalog,
    namespace: String,
    tables: Api<Table>,
    databases: Api<Database>,
    owner: RunOwnerKind,
    manager: String,
    /// Tables to delete are left for the operator (a run attempt: its Role has no delete) and
    /// listed here, instead of deleted with this client's rights (`kglue crawl -n`).
    defer_deletes: bool,
    deferred: Vec<String>,
}

impl ClusterCatalog {
    /// Reads the catalog of `namespace` for the Job or Crawler `owner`.
    pub async fn read(
        client: Client,
        namespace: &str,
        owner: RunOwnerKind,
        name: &str,
    ) -> Result<Self, CatalogReadError> {
        Ok(ClusterCatalog {
            snapshot: catalog_snapshot(&client, namespace).await?,
            namespace: namespace.to_string(),
            tables: Api::namespaced(client.clone(), namespace),
            databases: Api::namespaced(client, namespace),
            owner,
            manager: table_field_manager(owner, name),
            defer_deletes: false,
            deferred: Vec::new(),
        })
    }

    /// The same catalog, listing the Tables a crawl deletes ([`Self::deferred_deletes`]) instead
    /// of deleting them.
    pub fn deferring_deletes(mut self) -> Self {
        self.defer_deletes = true;
        self
    }

    /// The Tables (object names) left for the operator to delete.
    pub fn deferred_deletes(&self) -> &[String] {
        &self.deferred
    }

    /// Applies `table` (with `dry_run`, only asks the API server whether it would apply).
    async fn apply_table(&self, existing: Option<&Table>, table: &Table, dry_run: bool) -> Result<(), TableWriteError> {
        let what = format!("{}.{}", table.spec.database_name, table.spec.table_name);
        let name = table.name_any();
        // The spec is applied only when it changed (a new table, new columns): a job that appends
        // to a table declared in Git or made by a crawler would otherwise claim fields of theirs,
        // and an unchanged spec needs no write.
        if existing.is_none_or(|e| e.spec != table.spec) {
            let mut params = PatchParams::apply(&self.manager);
            params.dry_run = dry_run;
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
            // Never forced: a conflict means someone else declared these fields, and the work
            // says so instead of overwriting their manifest.
            match self.tables.patch(&name, &params, &Patch::Apply(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    return Err(TableWriteError::Conflict {
                        table: what,
                        message: status.message.clone(),
                    });
                }
                Err(source) => return Err(Self::api_error(format!("table {what}"))(source)),
            }
        }
        // The status is forced for a job (it cannot conflict) and a table new to this run has no
        // status to try yet: a dry run stops at the spec.
        if dry_run {
            return Ok(());
        }
        let (fields, force) = match self.owner {
            // Forced: the partition summary and "last updated by" are facts about the data the
            // run has just committed, and supersede whatever the previous writer recorded.
            RunOwnerKind::Job => (job_status_fields(table), true),
            // Not forced: a crawl records what it found, beside what others own.
            RunOwnerKind::Crawler => (crawl_status_fields(table), false),
        };
        let patch = json!({
            "apiVersion": "kglue.dev/v1alpha1",
            "kind": "Table",
            "metadata": {"name": name},
            "status": fields,
        });
        let mut params = PatchParams::apply(&self.manager);
        params.force = force;
        self.tables
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(Self::api_error(format!("table {what}")))?;
        Ok(())
    }

    fn api_error(what: String) -> impl FnOnce(kube::Error) -> TableWriteError {
        move |source| TableWriteError::Api {
            what,
            source: Box::new(source),
        }
    }
}

#[async_trait::async_trait]
impl Catalog for ClusterCatalog {
    fn view(&self) -> &DirCatalog {
        &self.snapshot
    }

    fn place(&self) -> String {
        format!("namespace {}", self.namespace)
    }

    async fn write_table(&mut self, existing: Option<&Table>, table: Table) -> Result<(), TableWriteError> {
        self.apply_table(existing, &table, false).await
    }

    async fn check_table(&mut self, existing: Option<&Table>, table: &Table) -> Result<(), TableWriteError> {
        self.apply_table(existing, table, true).await
    }

    async fn create_database(&mut self, database: Database) -> Result<(), TableWriteError> {
        let what = format!("database {}", database.spec.database_name);
        self.databases
            .patch(
                &database.name_any(),
                &PatchParams::apply(&self.manager),
                &Patch::Apply(&database),
            )
            .await
            .map_err(Self::api_error(what))?;
        Ok(())
    }

    async fn delete_table(&mut self, table: &Table) -> Result<(), TableWriteError> {
        let name = table.name_any();
        if self.defer_deletes {
            self.deferred.push(name);
            return Ok(());
        }
        match self.tables.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Self::api_error(format!("deleting Table {name}"))(source)),
        }
    }
}

/// The status fields a job run owns: the partition summary and who last updated the table. Only
/// those present, since an explicit null in an apply would be a claim on the field too.
fn job_status_fields(table: &Table) -> Value {
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

/// The status fields a crawl owns: its `SchemaDrift` condition, the partition summary, whether
/// the table is deprecated and who last updated it.
fn crawl_status_fields(table: &Table) -> Value {
    let status = table.status.clone().unwrap_or_default();
    let drift: Vec<_> = status
        .observed
        .conditions
        .iter()
        .filter(|c| c.type_ == CONDITION_SCHEMA_DRIFT)
        .collect();
    json!({
        "conditions": drift,
        "partitions": status.partitions,
        "deprecated": status.deprecated,
        "lastUpdated": status.last_updated,
    })
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
            job_status_fields(&table),
            json!({"lastUpdated": {"by": "Job/load", "runId": "jr-1", "time": "2024-05-01T00:00:00Z"}})
        );
    }
}
