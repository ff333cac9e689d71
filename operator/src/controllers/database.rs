//! Database: always valid once accepted (the schema checks its fields); the operator records how
//! many Tables in the namespace belong to it, so `kubectl get kgdb` shows it.

use kglue_crds::{Database, Table};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use serde_json::{Map, Value, json};

use super::pipeline::{Problem, Reconcile, controller};
use super::refs::{Changes, ReadRefs, Rechecks};
use crate::context::{Context, Error};

/// What the Database reconcile reads: the namespace's Tables' database names.
pub struct Refs {
    /// `spec.databaseName` of every readable Table in the namespace.
    pub table_databases: Vec<String>,
}

impl ReadRefs<Database> for Refs {
    async fn read(_database: &Database, ctx: &Context, namespace: &str) -> Result<Refs, Error> {
        // One entry per Table object (its name makes it unique): the count is of tables.
        let tables = ctx.informers.tables.readable(namespace, |t| {
            (
                t.spec.database_name.clone(),
                t.metadata.name.clone().unwrap_or_default(),
            )
        });
        Ok(Refs {
            table_databases: tables.into_iter().map(|(database, _)| database).collect(),
        })
    }
}

impl Reconcile for Database {
    type Refs = Refs;

    fn validate(&self, _refs: &Refs) -> Vec<Problem> {
        Vec::new()
    }

    fn status_extra(&self, refs: &Refs) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("tables".into(), json!(table_count(self, refs)));
        extra
    }

    /// The Database controller; a Table change recounts its Database.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller::<Database>(ctx).recheck::<Table>(ctx, Changes::Spec, |db, _, table| {
            table.is_some_and(|t| t.spec.database_name == db.spec.database_name)
        })
    }
}

/// How many Tables belong to `database`.
pub fn table_count(database: &Database, refs: &Refs) -> usize {
    refs.table_databases
        .iter()
        .filter(|name| **name == database.spec.database_name)
        .count()
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
