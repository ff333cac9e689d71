//! Crawler: crawls (see `crate::runs`), and spec checks: the schedule parses
//! (`InvalidSchedule`), the Database exists (`DatabaseNotFound`), every Classifier exists
//! (`ClassifierNotFound`), exclusion globs compile (`InvalidExclusion`) and every Connection
//! exists (`ConnectionNotFound`).

use std::collections::BTreeMap;

use globset::GlobBuilder;
use kglue_crds::Crawler;
use kglue_crds::references::NamedKind;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;

use super::pipeline::{Problem, Reason, Reconcile, controller_with_attempts};
use super::refs::{Found, Rechecks};
use crate::context::{Act, Context};
use crate::schedule::CronSchedule;

impl Reconcile for Crawler {
    type Refs = Found;
    const ACT: Option<Act> = Some(crate::runs::reconcile::<Crawler>);

    fn validate(&self, found: &Found) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(schedule) = &self.spec.schedule
            && let Err(message) = CronSchedule::parse(&schedule.cron, schedule.time_zone.as_deref())
        {
            problems.push(Problem::new(
                Reason::InvalidSchedule,
                format!("spec.schedule: {message}"),
            ));
        }
        problems.extend(found.missing_databases(self));
        problems.extend(found.missing(self, NamedKind::Classifier));
        problems.extend(found.missing_service_account(self));
        let files = self.spec.targets.iter().map(|t| ("targets", &t.exclusions));
        let databases = self.spec.jdbc_targets.iter().map(|t| ("jdbcTargets", &t.exclusions));
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (field, exclusions) in files.chain(databases) {
            let i = index.entry(field).or_default();
            for (j, pattern) in exclusions.iter().enumerate() {
                // The crawler compiles exclusions the same way (runner/src/crawl/listing.rs).
                if let Err(error) = GlobBuilder::new(pattern).literal_separator(true).build() {
                    problems.push(Problem::new(
                        Reason::InvalidExclusion,
                        format!("spec.{field}[{i}].exclusions[{j}] {pattern:?} is not a valid glob: {error}"),
                    ));
                }
            }
            *i += 1;
        }
        problems.extend(found.missing(self, NamedKind::Connection));
        problems
    }

    /// The Crawler controller: its attempts' Kubernetes Jobs, besides what it refers to, re-check
    /// the Crawler they belong to.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller_with_attempts::<Crawler>(ctx).recheck_references(ctx)
    }
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

    fn refs() -> Found {
        Found {
            databases: ["sales_raw".to_string()].into(),
            named: [
                (NamedKind::Classifier, ["pipe-csv".to_string()].into()),
                (NamedKind::Connection, ["lake".to_string()].into()),
            ]
            .into(),
            ..Found::default()
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
        let refs = Found::default();
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
