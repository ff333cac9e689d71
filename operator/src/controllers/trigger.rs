//! Trigger: checks, then fires (`crate::triggers`). A Scheduled trigger's cron and time zone parse
//! (`InvalidSchedule`); every Job, Crawler and Workflow it starts or waits for exists
//! (`JobNotFound`, `CrawlerNotFound`, `WorkflowNotFound`); an Event trigger's Connection exists
//! (`ConnectionNotFound`).

use kglue_crds::Trigger;
use kglue_crds::references::NamedKind;

use super::pipeline::{Problem, Reason, Reconcile};
use super::refs::Found;
use crate::context::Act;
use crate::schedule::CronSchedule;

impl Reconcile for Trigger {
    type Refs = Found;
    const ACT: Option<Act> = Some(crate::triggers::reconcile);

    fn validate(&self, found: &Found) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(schedule) = &self.spec.schedule
            && let Err(message) = CronSchedule::parse(&schedule.schedule.cron, schedule.schedule.time_zone.as_deref())
        {
            problems.push(Problem::new(
                Reason::InvalidSchedule,
                format!("spec.schedule: {message}"),
            ));
        }
        for kind in [
            NamedKind::Job,
            NamedKind::Crawler,
            NamedKind::Workflow,
            NamedKind::Connection,
        ] {
            problems.extend(found.missing(self, kind));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGERS: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: nightly, namespace: ns}
spec:
  type: Scheduled
  schedule: {cron: "0 2 * * *", timeZone: Europe/Berlin}
  actions:
    - workflow: pipeline
    - job: clean
"#;

    fn trigger(yaml: &str) -> Trigger {
        serde_saphyr::from_str(yaml).expect("a Trigger")
    }

    fn refs(jobs: &[&str], workflows: &[&str]) -> Found {
        Found::of_named(&[(NamedKind::Job, jobs), (NamedKind::Workflow, workflows)])
    }

    #[test]
    fn a_scheduled_trigger_with_its_targets_is_valid() {
        assert_eq!(trigger(TRIGGERS).validate(&refs(&["clean"], &["pipeline"])), vec![]);
    }

    #[test]
    fn a_bad_cron_and_missing_targets_are_reported() {
        let bad = trigger(&TRIGGERS.replace("0 2 * * *", "0 25 * * *"));
        let reasons: Vec<Reason> = bad.validate(&refs(&[], &[])).iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            [Reason::InvalidSchedule, Reason::JobNotFound, Reason::WorkflowNotFound]
        );
    }

    #[test]
    fn predicates_and_event_connections_are_references_too() {
        let conditional = trigger(
            r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: on-failure}
spec:
  type: Conditional
  predicate:
    conditions:
      - {crawler: landing, state: Failed}
  actions:
    - crawler: landing
"#,
        );
        let problems = conditional.validate(&refs(&[], &[]));
        assert_eq!(problems.len(), 1, "one problem per missing name: {problems:?}");
        assert_eq!(problems[0].reason, Reason::CrawlerNotFound);
        assert!(problems[0].message.contains("spec.predicate.conditions[0].crawler"));
    }
}
