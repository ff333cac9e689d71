//! Crawler: crawls (see `crate::runs`), and spec checks: the schedule parses
//! (`InvalidSchedule`), the Database exists (`DatabaseNotFound`), every Classifier exists
//! (`ClassifierNotFound`), exclusion globs compile (`InvalidExclusion`) and every Connection
//! exists (`ConnectionNotFound`).

use std::collections::BTreeSet;
use std::sync::Arc;

use globset::GlobBuilder;
use kglue_crds::common::ObservedStatus;
use kglue_crds::{Classifier, Connection, Crawler, Database};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::table::{database_names, database_not_found};
use super::{Context, Error, Problem, Reason, Reconcile, controller, existing_names, missing, referrers};
use crate::schedule::CronSchedule;

/// What the Crawler reconcile reads.
pub struct Refs {
    /// `spec.databaseName` of every readable Database in the namespace.
    pub databases: BTreeSet<String>,
    /// The listed Classifiers that exist.
    pub classifiers: BTreeSet<String>,
    /// The referenced Connections that exist.
    pub connections: BTreeSet<String>,
}

/// The Connections a Crawler refers to, with the field that names each.
pub fn connection_refs(crawler: &Crawler) -> Vec<(&str, String)> {
    let targets = crawler.spec.targets.iter().enumerate().filter_map(|(i, target)| {
        target
            .connection
            .as_deref()
            .map(|name| (name, format!("spec.targets[{i}].connection")))
    });
    let state = crawler
        .spec
        .state
        .as_ref()
        .and_then(|s| s.connection.as_deref())
        .map(|name| (name, "spec.state.connection".to_string()));
    targets.chain(state).collect()
}

impl Reconcile for Crawler {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let connections = connection_refs(self).into_iter().map(|(name, _)| name.to_string());
        Ok(Refs {
            databases: database_names(client, namespace).await?,
            classifiers: existing_names::<Classifier>(client, namespace, self.spec.classifiers.clone()).await?,
            connections: existing_names::<Connection>(client, namespace, connections).await?,
        })
    }

    async fn reconcile_runs(
        ctx: &Context,
        namespace: &str,
        name: &str,
        blocked: Option<String>,
    ) -> Result<Option<std::time::Duration>, Error> {
        crate::runs::reconcile_runs::<Crawler>(ctx, namespace, name, blocked).await
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(schedule) = &self.spec.schedule
            && let Err(message) = CronSchedule::parse(&schedule.cron, schedule.time_zone.as_deref())
        {
            problems.push(Problem::new(
                Reason::InvalidSchedule,
                format!("spec.schedule: {message}"),
            ));
        }
        if !refs.databases.contains(&self.spec.database_name) {
            problems.push(database_not_found("spec.databaseName", &self.spec.database_name));
        }
        problems.extend(missing(
            self.spec
                .classifiers
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_str(), format!("spec.classifiers[{i}]"))),
            &refs.classifiers,
            Reason::ClassifierNotFound,
            "Classifier",
        ));
        for (i, target) in self.spec.targets.iter().enumerate() {
            for (j, pattern) in target.exclusions.iter().enumerate() {
                // The crawler compiles exclusions the same way (runner/src/crawl/listing.rs).
                if let Err(error) = GlobBuilder::new(pattern).literal_separator(true).build() {
                    problems.push(Problem::new(
                        Reason::InvalidExclusion,
                        format!("spec.targets[{i}].exclusions[{j}] {pattern:?} is not a valid glob: {error}"),
                    ));
                }
            }
        }
        problems.extend(missing(
            connection_refs(self),
            &refs.connections,
            Reason::ConnectionNotFound,
            "Connection",
        ));
        problems
    }
}

/// Runs the Crawler controller; Database, Classifier and Connection changes re-check the Crawlers
/// that use them.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Crawler>(&ctx).owns(
        ctx.watch_api::<k8s_openapi::api::batch::v1::Job>(),
        kube::runtime::watcher::Config::default().labels("app.kubernetes.io/managed-by=kglue-operator"),
    );
    let (by_database, by_classifier, by_connection) = (controller.store(), controller.store(), controller.store());
    let controller = controller
        .watches(
            ctx.watch_api::<DeserializeGuard<Database>>(),
            Default::default(),
            move |database: DeserializeGuard<Database>| {
                let namespace = database.namespace();
                match database.0 {
                    Ok(db) => referrers(&by_database, namespace.as_deref(), |c: &Crawler| {
                        c.spec.database_name == db.spec.database_name
                    }),
                    Err(_) => Vec::new(),
                }
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Classifier>>(),
            Default::default(),
            move |classifier: DeserializeGuard<Classifier>| {
                let name = classifier.name_any();
                referrers(&by_classifier, classifier.namespace().as_deref(), |c: &Crawler| {
                    c.spec.classifiers.contains(&name)
                })
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Connection>>(),
            Default::default(),
            move |connection: DeserializeGuard<Connection>| {
                let name = connection.name_any();
                referrers(&by_connection, connection.namespace().as_deref(), |c: &Crawler| {
                    connection_refs(c).iter().any(|(n, _)| *n == name)
                })
            },
        );
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRAWLER: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Crawler
metadata: {name: landing, namespace: ns}
spec:
  databaseName: sales_raw
  targets:
    - path: "s3://landing/orders/"
      connection: lake
      exclusions: ["**/_tmp/**", "**/*.bak"]
  classifiers: [pipe-csv]
  schedule: {cron: "cron(0 3 * * ? *)", timeZone: Europe/Berlin}
"#;

    fn crawler(yaml: &str) -> Crawler {
        serde_saphyr::from_str(yaml).expect("a Crawler")
    }

    fn refs() -> Refs {
        Refs {
            databases: ["sales_raw".to_string()].into(),
            classifiers: ["pipe-csv".to_string()].into(),
            connections: ["lake".to_string()].into(),
        }
    }

    #[test]
    fn the_example_crawler_is_valid() {
        assert_eq!(crawler(CRAWLER).validate(&refs()), vec![]);
    }

    #[test]
    fn every_problem_is_reported_in_spec_order() {
        let bad = crawler(
            &CRAWLER
                .replace("cron(0 3 * * ? *)", "0 3 * *")
                .replace("\"**/*.bak\"", "\"a[\""),
        );
        let refs = Refs {
            databases: BTreeSet::new(),
            classifiers: BTreeSet::new(),
            connections: BTreeSet::new(),
        };
        let reasons: Vec<Reason> = bad.validate(&refs).iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            [
                Reason::InvalidSchedule,
                Reason::DatabaseNotFound,
                Reason::ClassifierNotFound,
                Reason::InvalidExclusion,
                Reason::ConnectionNotFound
            ]
        );
    }

    #[test]
    fn an_unknown_time_zone_is_an_invalid_schedule() {
        let bad = crawler(&CRAWLER.replace("Europe/Berlin", "Europe/Atlantis"));
        let problems = bad.validate(&refs());
        assert_eq!(problems[0].reason, Reason::InvalidSchedule);
        assert!(problems[0].message.contains("Europe/Atlantis"));
    }
}
