//! Table: nested column types parse (`InvalidColumnType`), its Database exists
//! (`DatabaseNotFound`), and the Connection of its storage exists (`ConnectionNotFound`).

use std::collections::BTreeSet;
use std::sync::Arc;

use kglue_crds::common::ObservedStatus;
use kglue_crds::connection::Connection;
use kglue_crds::glue_type::validate_columns;
use kglue_crds::{Database, Table};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reason, Reconcile, controller, existing_names, missing, referrers};

/// What the Table reconcile reads.
pub struct Refs {
    /// `spec.databaseName` of every readable Database in the namespace.
    pub databases: BTreeSet<String>,
    /// The referenced Connections that exist.
    pub connections: BTreeSet<String>,
}

impl Reconcile for Table {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        Ok(Refs {
            databases: database_names(client, namespace).await?,
            connections: existing_names::<Connection>(client, namespace, self.spec.storage.connection.clone()).await?,
        })
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (field, columns) in [
            ("spec.columns", &self.spec.columns),
            ("spec.partitionKeys", &self.spec.partition_keys),
        ] {
            if let Err(error) = validate_columns(columns) {
                problems.push(Problem::new(
                    Reason::InvalidColumnType,
                    format!("{field}: {error}; write a Glue/Hive type such as struct<a:int,b:array<string>>"),
                ));
            }
        }
        if !refs.databases.contains(&self.spec.database_name) {
            problems.push(database_not_found("spec.databaseName", &self.spec.database_name));
        }
        problems.extend(missing(
            self.spec
                .storage
                .connection
                .as_deref()
                .map(|name| (name, "spec.storage.connection".to_string())),
            &refs.connections,
            Reason::ConnectionNotFound,
            "Connection",
        ));
        problems
    }
}

/// The problem of a `databaseName` no Database in the namespace declares.
pub fn database_not_found(field: &str, database_name: &str) -> Problem {
    Problem::new(
        Reason::DatabaseNotFound,
        format!(
            "{field} is {database_name:?}, but no Database in this namespace has spec.databaseName {database_name:?}; create that Database or fix the name"
        ),
    )
}

/// `spec.databaseName` of every readable Database in `namespace`.
pub async fn database_names(client: &Client, namespace: &str) -> Result<BTreeSet<String>, Error> {
    let databases: Api<DeserializeGuard<Database>> = Api::namespaced(client.clone(), namespace);
    Ok(databases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok().map(|db| db.spec.database_name))
        .collect())
}

/// Runs the Table controller; a change of a Database or Connection re-checks the Tables that use it.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Table>(&ctx);
    let by_database = controller.store();
    let by_connection = controller.store();
    let controller = controller
        .watches(
            ctx.watch_api::<DeserializeGuard<Database>>(),
            Default::default(),
            move |database: DeserializeGuard<Database>| {
                let namespace = database.namespace();
                match database.0 {
                    Ok(db) => referrers(&by_database, namespace.as_deref(), |t: &Table| {
                        t.spec.database_name == db.spec.database_name
                    }),
                    Err(_) => Vec::new(),
                }
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Connection>>(),
            Default::default(),
            move |connection: DeserializeGuard<Connection>| {
                let name = connection.name_any();
                referrers(&by_connection, connection.namespace().as_deref(), |t: &Table| {
                    t.spec.storage.connection.as_deref() == Some(name.as_str())
                })
            },
        );
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Table {
        serde_saphyr::from_str(yaml).expect("a Table")
    }

    const TABLE: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: t, namespace: ns}
spec:
  databaseName: sales
  tableName: orders
  storage: {location: "s3://b/orders/", format: Parquet, connection: lake}
  columns:
    - {name: id, type: bigint}
    - {name: items, type: "array<struct<sku:string,quantity:int>>"}
  partitionKeys:
    - {name: dt, type: date}
"#;

    fn refs(databases: &[&str], connections: &[&str]) -> Refs {
        Refs {
            databases: databases.iter().map(|s| s.to_string()).collect(),
            connections: connections.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_table_with_its_database_and_connection_is_valid() {
        assert_eq!(table(TABLE).validate(&refs(&["sales"], &["lake"])), vec![]);
    }

    #[test]
    fn a_missing_database_or_connection_is_named() {
        let problems = table(TABLE).validate(&refs(&["other"], &[]));
        let reasons: Vec<Reason> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [Reason::DatabaseNotFound, Reason::ConnectionNotFound]);
        assert!(problems[0].message.contains("\"sales\""), "{}", problems[0].message);
        assert!(
            problems[1]
                .message
                .contains("spec.storage.connection names Connection \"lake\"")
        );
    }

    #[test]
    fn a_nested_type_that_does_not_parse_is_invalid_column_type() {
        let bad = table(&TABLE.replace("struct<sku:string,quantity:int>", "struct<sku string>"));
        let problems = bad.validate(&refs(&["sales"], &["lake"]));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::InvalidColumnType);
        assert!(
            problems[0].message.contains("spec.columns: column \"items\""),
            "{}",
            problems[0].message
        );
    }
}
