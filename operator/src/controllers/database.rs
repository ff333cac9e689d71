//! Database: always valid once accepted (the schema checks its fields); the operator records how
//! many Tables in the namespace belong to it, so `kubectl get kgdb` shows it.

use std::sync::Arc;

use kglue_crds::common::ObservedStatus;
use kglue_crds::{Database, Table};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reconcile, controller, referrers};

/// What the Database reconcile reads: the namespace's Tables' database names.
pub struct Refs {
    /// `spec.databaseName` of every readable Table in the namespace.
    pub table_databases: Vec<String>,
}

impl Reconcile for Database {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let tables: Api<DeserializeGuard<Table>> = Api::namespaced(client.clone(), namespace);
        let table_databases = tables
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|guard| guard.0.ok().map(|t| t.spec.database_name))
            .collect();
        Ok(Refs { table_databases })
    }

    fn validate(&self, _refs: &Refs) -> Vec<Problem> {
        Vec::new()
    }

    fn status_extra(&self, refs: &Refs) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("tables".into(), json!(table_count(self, refs)));
        extra
    }
}

/// How many Tables belong to `database`.
pub fn table_count(database: &Database, refs: &Refs) -> usize {
    refs.table_databases
        .iter()
        .filter(|name| **name == database.spec.database_name)
        .count()
}

/// Runs the Database controller; a Table change recounts its Database.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Database>(&ctx);
    let store = controller.store();
    let controller = controller.watches(
        ctx.watch_api::<DeserializeGuard<Table>>(),
        Default::default(),
        move |table: DeserializeGuard<Table>| {
            let namespace = table.namespace();
            match table.0 {
                Ok(table) => referrers(&store, namespace.as_deref(), |db: &Database| {
                    db.spec.database_name == table.spec.database_name
                }),
                Err(_) => Vec::new(),
            }
        },
    );
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kglue_crds::DatabaseSpec;

    #[test]
    fn counts_only_its_own_tables_and_is_always_valid() {
        let database = Database::new(
            "sales-raw",
            DatabaseSpec {
                database_name: "sales_raw".into(),
                description: None,
                location_uri: None,
                parameters: Default::default(),
            },
        );
        let refs = Refs {
            table_databases: vec!["sales_raw".into(), "other".into(), "sales_raw".into()],
        };
        assert_eq!(table_count(&database, &refs), 2);
        assert!(database.validate(&refs).is_empty());
        assert_eq!(database.status_extra(&refs)["tables"], 2);
    }
}
