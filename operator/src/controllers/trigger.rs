//! Trigger: checks, then fires (`crate::triggers`). A Scheduled trigger's cron and time zone parse
//! (`InvalidSchedule`); every Job, Crawler and Workflow it starts or waits for exists
//! (`JobNotFound`, `CrawlerNotFound`, `WorkflowNotFound`); an Event trigger's Connection exists
//! (`ConnectionNotFound`).

use std::collections::BTreeSet;
use std::sync::Arc;

use kglue_crds::common::ObservedStatus;
use kglue_crds::{Connection, Crawler, Job, Trigger, Workflow};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reason, Reconcile, controller, existing_names, missing, referrers};
use crate::schedule::CronSchedule;

/// What the Trigger reconcile reads: the referenced objects that exist, per kind.
pub struct Refs {
    /// Jobs that exist.
    pub jobs: BTreeSet<String>,
    /// Crawlers that exist.
    pub crawlers: BTreeSet<String>,
    /// Workflows that exist.
    pub workflows: BTreeSet<String>,
    /// Connections that exist.
    pub connections: BTreeSet<String>,
}

/// The names a Trigger refers to, per kind, with the field that names each.
#[derive(Default)]
pub struct Names<'a> {
    /// Jobs.
    pub jobs: Vec<(&'a str, String)>,
    /// Crawlers.
    pub crawlers: Vec<(&'a str, String)>,
    /// Workflows.
    pub workflows: Vec<(&'a str, String)>,
    /// Connections.
    pub connections: Vec<(&'a str, String)>,
}

/// Everything a Trigger refers to.
pub fn names(trigger: &Trigger) -> Names<'_> {
    let mut names = Names::default();
    if let Some(predicate) = &trigger.spec.predicate {
        for (i, condition) in predicate.conditions.iter().enumerate() {
            if let Some(job) = &condition.job {
                names.jobs.push((job, format!("spec.predicate.conditions[{i}].job")));
            }
            if let Some(crawler) = &condition.crawler {
                names
                    .crawlers
                    .push((crawler, format!("spec.predicate.conditions[{i}].crawler")));
            }
        }
    }
    for (i, action) in trigger.spec.actions.iter().enumerate() {
        if let Some(job) = &action.job {
            names.jobs.push((job, format!("spec.actions[{i}].job")));
        }
        if let Some(crawler) = &action.crawler {
            names.crawlers.push((crawler, format!("spec.actions[{i}].crawler")));
        }
        if let Some(workflow) = &action.workflow {
            names.workflows.push((workflow, format!("spec.actions[{i}].workflow")));
        }
    }
    if let Some(connection) = trigger.spec.event.as_ref().and_then(|e| e.connection.as_deref()) {
        names.connections.push((connection, "spec.event.connection".into()));
    }
    names
}

fn owned(refs: &[(&str, String)]) -> Vec<String> {
    refs.iter().map(|(name, _)| name.to_string()).collect()
}

impl Reconcile for Trigger {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let names = names(self);
        Ok(Refs {
            jobs: existing_names::<Job>(client, namespace, owned(&names.jobs)).await?,
            crawlers: existing_names::<Crawler>(client, namespace, owned(&names.crawlers)).await?,
            workflows: existing_names::<Workflow>(client, namespace, owned(&names.workflows)).await?,
            connections: existing_names::<Connection>(client, namespace, owned(&names.connections)).await?,
        })
    }

    async fn reconcile_runs(
        ctx: &Context,
        namespace: &str,
        name: &str,
        blocked: Option<String>,
    ) -> Result<Option<std::time::Duration>, Error> {
        crate::triggers::reconcile_trigger(ctx, namespace, name, blocked).await
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(schedule) = &self.spec.schedule
            && let Err(message) = CronSchedule::parse(&schedule.schedule.cron, schedule.schedule.time_zone.as_deref())
        {
            problems.push(Problem::new(
                Reason::InvalidSchedule,
                format!("spec.schedule: {message}"),
            ));
        }
        let names = names(self);
        problems.extend(missing(names.jobs, &refs.jobs, Reason::JobNotFound, "Job"));
        problems.extend(missing(
            names.crawlers,
            &refs.crawlers,
            Reason::CrawlerNotFound,
            "Crawler",
        ));
        problems.extend(missing(
            names.workflows,
            &refs.workflows,
            Reason::WorkflowNotFound,
            "Workflow",
        ));
        problems.extend(missing(
            names.connections,
            &refs.connections,
            Reason::ConnectionNotFound,
            "Connection",
        ));
        problems
    }
}

/// Runs the Trigger controller; Job, Crawler, Workflow and Connection changes re-check the
/// Triggers that name them.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Trigger>(&ctx);
    let stores = [
        controller.store(),
        controller.store(),
        controller.store(),
        controller.store(),
    ];
    let [by_job, by_crawler, by_workflow, by_connection] = stores;
    let controller = controller
        .watches(
            ctx.watch_api::<DeserializeGuard<Job>>(),
            Default::default(),
            move |job: DeserializeGuard<Job>| {
                let name = job.name_any();
                referrers(&by_job, job.namespace().as_deref(), |t: &Trigger| {
                    names(t).jobs.iter().any(|(n, _)| *n == name)
                })
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Crawler>>(),
            Default::default(),
            move |crawler: DeserializeGuard<Crawler>| {
                let name = crawler.name_any();
                referrers(&by_crawler, crawler.namespace().as_deref(), |t: &Trigger| {
                    names(t).crawlers.iter().any(|(n, _)| *n == name)
                })
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Workflow>>(),
            Default::default(),
            move |workflow: DeserializeGuard<Workflow>| {
                let name = workflow.name_any();
                referrers(&by_workflow, workflow.namespace().as_deref(), |t: &Trigger| {
                    names(t).workflows.iter().any(|(n, _)| *n == name)
                })
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Connection>>(),
            Default::default(),
            move |connection: DeserializeGuard<Connection>| {
                let name = connection.name_any();
                referrers(&by_connection, connection.namespace().as_deref(), |t: &Trigger| {
                    names(t).connections.iter().any(|(n, _)| *n == name)
                })
            },
        );
    super::run(controller, ctx, shutdown).await;
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

    fn refs(jobs: &[&str], workflows: &[&str]) -> Refs {
        Refs {
            jobs: jobs.iter().map(|s| s.to_string()).collect(),
            crawlers: BTreeSet::new(),
            workflows: workflows.iter().map(|s| s.to_string()).collect(),
            connections: BTreeSet::new(),
        }
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
