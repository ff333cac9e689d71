//! Job: runs (see `crate::runs`), and spec checks: every source Table exists and a sink without
//! `storage` names an existing Table (`TableNotFound`); every Connection exists
//! (`ConnectionNotFound`). The SQL check (`InvalidScript`) is not done yet: it needs the runner's
//! planner.

use std::collections::BTreeSet;
use std::sync::Arc;

use kglue_crds::common::{ObservedStatus, TableRef};
use kglue_crds::{Connection, Job, Table};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reason, Reconcile, controller, existing_names, missing, referrers};

/// What the Job reconcile reads.
pub struct Refs {
    /// `(databaseName, tableName)` of every readable Table in the namespace.
    pub tables: BTreeSet<(String, String)>,
    /// The referenced Connections that exist.
    pub connections: BTreeSet<String>,
}

/// The Tables a Job must find, with the field that names each: table sources, and sinks that
/// write only to a catalog table (a sink with `storage` creates its table).
pub fn table_refs(job: &Job) -> Vec<(&TableRef, String)> {
    let sources = job.spec.sources.iter().enumerate().filter_map(|(i, source)| {
        source
            .table
            .as_ref()
            .map(|table| (table, format!("spec.sources[{i}].table")))
    });
    let sinks = job
        .spec
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(i, sink)| match (&sink.table, &sink.storage) {
            (Some(table), None) => Some((table, format!("spec.sinks[{i}].table"))),
            _ => None,
        });
    sources.chain(sinks).collect()
}

/// The Connections a Job refers to, with the field that names each.
pub fn connection_refs(job: &Job) -> Vec<(&str, String)> {
    let sources = job.spec.sources.iter().enumerate().filter_map(|(i, source)| {
        source
            .storage
            .as_ref()
            .and_then(|s| s.connection.as_deref())
            .map(|name| (name, format!("spec.sources[{i}].storage.connection")))
    });
    let sinks = job.spec.sinks.iter().enumerate().filter_map(|(i, sink)| {
        sink.storage
            .as_ref()
            .and_then(|s| s.connection.as_deref())
            .map(|name| (name, format!("spec.sinks[{i}].storage.connection")))
    });
    sources.chain(sinks).collect()
}

impl Reconcile for Job {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let tables: Api<DeserializeGuard<Table>> = Api::namespaced(client.clone(), namespace);
        let tables = tables
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|guard| guard.0.ok().map(|t| (t.spec.database_name, t.spec.table_name)))
            .collect();
        let connections = connection_refs(self).into_iter().map(|(name, _)| name.to_string());
        Ok(Refs {
            tables,
            connections: existing_names::<Connection>(client, namespace, connections).await?,
        })
    }

    async fn reconcile_runs(
        ctx: &Context,
        namespace: &str,
        name: &str,
        blocked: Option<String>,
    ) -> Result<Option<std::time::Duration>, Error> {
        crate::runs::reconcile_runs::<Job>(ctx, namespace, name, blocked).await
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems: Vec<Problem> = table_refs(self)
            .into_iter()
            .filter(|(table, _)| !refs.tables.contains(&(table.database.clone(), table.table.clone())))
            .map(|(table, field)| {
                Problem::new(
                    Reason::TableNotFound,
                    format!(
                        "{field} names {}.{}, but no Table in this namespace has that databaseName and tableName; create the Table (or run the Crawler that creates it) or fix the name",
                        table.database, table.table
                    ),
                )
            })
            .collect();
        problems.extend(missing(
            connection_refs(self),
            &refs.connections,
            Reason::ConnectionNotFound,
            "Connection",
        ));
        problems
    }
}

/// Runs the Job controller; Table and Connection changes re-check the Jobs that use them.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Job>(&ctx).owns(
        ctx.watch_api::<k8s_openapi::api::batch::v1::Job>(),
        kube::runtime::watcher::Config::default().labels("app.kubernetes.io/managed-by=kglue-operator"),
    );
    let (by_table, by_connection) = (controller.store(), controller.store());
    let controller = controller
        .watches(
            ctx.watch_api::<DeserializeGuard<Table>>(),
            Default::default(),
            move |table: DeserializeGuard<Table>| {
                let namespace = table.namespace();
                match table.0 {
                    Ok(t) => referrers(&by_table, namespace.as_deref(), |job: &Job| {
                        table_refs(job)
                            .iter()
                            .any(|(r, _)| r.database == t.spec.database_name && r.table == t.spec.table_name)
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
                referrers(&by_connection, connection.namespace().as_deref(), |job: &Job| {
                    connection_refs(job).iter().any(|(n, _)| *n == name)
                })
            },
        );
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {name: clean, namespace: ns}
spec:
  sources:
    - name: orders
      table: {database: raw, table: orders}
    - name: extra
      storage: {location: "s3://b/extra/", format: Json, connection: lake}
  sql: "CREATE VIEW out AS SELECT * FROM orders"
  sinks:
    - name: out
      table: {database: curated, table: out}
    - name: report
      storage: {location: "s3://b/report/", format: Csv, connection: reports}
"#;

    fn job() -> Job {
        serde_saphyr::from_str(JOB).expect("a Job")
    }

    fn refs(tables: &[(&str, &str)], connections: &[&str]) -> Refs {
        Refs {
            tables: tables.iter().map(|(d, t)| (d.to_string(), t.to_string())).collect(),
            connections: connections.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_job_whose_tables_and_connections_exist_is_valid() {
        let refs = refs(&[("raw", "orders"), ("curated", "out")], &["lake", "reports"]);
        assert_eq!(job().validate(&refs), vec![]);
    }

    #[test]
    fn missing_tables_and_connections_are_named_by_field() {
        let problems = job().validate(&refs(&[("raw", "orders")], &["lake"]));
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].reason, Reason::TableNotFound);
        assert!(problems[0].message.starts_with("spec.sinks[0].table names curated.out"));
        assert_eq!(problems[1].reason, Reason::ConnectionNotFound);
        assert!(problems[1].message.contains("spec.sinks[1].storage.connection"));
    }
}
