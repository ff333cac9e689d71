//! Job: runs (see `crate::runs`), and spec checks: every source Table exists and a sink without
//! `storage` names an existing Table (`TableNotFound`); every Connection exists
//! (`ConnectionNotFound`). The SQL check (`InvalidScript`) is not done yet: it needs the runner's
//! planner.

use kglue_crds::references::{NamedKind, References};
use kglue_crds::{Job, Table};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;

use super::pipeline::{Problem, Reconcile, controller_with_attempts};
use super::refs::{Found, Rechecks};
use crate::context::{Act, Context};

impl Reconcile for Job {
    type Refs = Found;
    const ACT: Option<Act> = Some(crate::runs::reconcile::<Job>);

    fn validate(&self, found: &Found) -> Vec<Problem> {
        let mut problems = found.missing_tables(self);
        problems.extend(found.missing(self, NamedKind::Connection));
        problems
    }

    /// The Job controller; its attempts' Kubernetes Jobs, and Table and Connection changes,
    /// re-check the Jobs they belong to or that use them.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller_with_attempts::<Job>(ctx)
            .recheck::<Table>(ctx, |job, _, table| {
                table.is_some_and(|t| {
                    job.table_refs()
                        .iter()
                        .any(|(r, _)| r.database == t.spec.database_name && r.table == t.spec.table_name)
                })
            })
            .recheck_references(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pipeline::Reason;

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

    fn refs(tables: &[(&str, &str)], connections: &[&str]) -> Found {
        Found {
            tables: tables.iter().map(|(d, t)| (d.to_string(), t.to_string())).collect(),
            named: [(
                NamedKind::Connection,
                connections.iter().map(|c| c.to_string()).collect(),
            )]
            .into(),
            ..Found::default()
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
