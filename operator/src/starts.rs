//! Runs that one object starts on another: Triggers start Jobs, Crawlers and Workflows; Workflows
//! start Jobs and Crawlers. They ask the way a user does, with the `run.kglue.dev/<request-id>`
//! and `stop.kglue.dev/<run-id>` annotations (docs/runs.md), so every run goes through the one
//! state machine that owns it. Request ids are derived from what the starter has already
//! recorded, so asking twice (an operator restart between the ask and the record) is the same
//! request, and the same run.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kglue_crds::common::{RunRecord, RunState, StartedBy};
use kglue_crds::protocol::ids::{CRAWL_RUN_PREFIX, JOB_RUN_PREFIX, WORKFLOW_RUN_PREFIX, derived_id, run_id};
use kglue_crds::protocol::requests::{Request, StartBody};
use kglue_crds::{Crawler, Job, Workflow};
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::context::Error;
use crate::writes::put_requests;

/// The kinds that runs can be started on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// A kglue Job.
    Job,
    /// A Crawler.
    Crawler,
    /// A Workflow.
    Workflow,
}

impl TargetKind {
    /// The prefix of the kind's run ids.
    pub fn run_prefix(self) -> &'static str {
        match self {
            TargetKind::Job => JOB_RUN_PREFIX,
            TargetKind::Crawler => CRAWL_RUN_PREFIX,
            TargetKind::Workflow => WORKFLOW_RUN_PREFIX,
        }
    }

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Job => "Job",
            TargetKind::Crawler => "Crawler",
            TargetKind::Workflow => "Workflow",
        }
    }
}

/// An object runs are started on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Its kind.
    pub kind: TargetKind,
    /// Its name, in the starter's namespace.
    pub name: String,
}

impl Target {
    /// A Job.
    pub fn job(name: &str) -> Self {
        Target {
            kind: TargetKind::Job,
            name: name.to_string(),
        }
    }

    /// A Crawler.
    pub fn crawler(name: &str) -> Self {
        Target {
            kind: TargetKind::Crawler,
            name: name.to_string(),
        }
    }

    /// A Workflow.
    pub fn workflow(name: &str) -> Self {
        Target {
            kind: TargetKind::Workflow,
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// One run of a target, as a starter sees it (the newest attempt of a Job run).
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The start request it answers.
    pub request_id: Option<String>,
    /// What started it.
    pub started_by: StartedBy,
    /// Its state.
    pub state: RunState,
    /// When it started.
    pub started_at: Option<Time>,
    /// When it ended.
    pub completed_at: Option<Time>,
    /// What happened, in words.
    pub message: Option<String>,
    /// The run properties a succeeded Job run set.
    pub run_properties: BTreeMap<String, String>,
}

/// A target as read: its UID (run ids derive from it) and its runs, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetState {
    /// `metadata.uid`.
    pub uid: String,
    /// One entry per run (not per attempt), newest first.
    pub runs: Vec<RunSummary>,
}

impl TargetState {
    /// The run that answers `request_id`, if it is recorded.
    pub fn run_for_request(&self, request_id: &str) -> Option<&RunSummary> {
        self.runs.iter().find(|r| r.request_id.as_deref() == Some(request_id))
    }

    /// The newest run.
    pub fn latest(&self) -> Option<&RunSummary> {
        self.runs.first()
    }
}

/// The id the run answering `request_id` gets on `target` (see `kglue_crds::protocol::ids`).
pub fn run_id_on(target: &Target, state: &TargetState, request_id: &str) -> String {
    run_id(target.kind.run_prefix(), &state.uid, request_id)
}

/// A request id derived from the starter's UID and a key naming what it starts and why: `prefix`
/// and ten hex digits.
pub fn request_id(prefix: &str, starter_uid: &str, key: &str) -> String {
    derived_id(prefix, starter_uid, key)
}

/// A kind whose runs a starter follows.
trait HasRuns:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug
{
    /// One entry per run (not per attempt), newest first.
    fn run_summaries(&self) -> Vec<RunSummary>;
}

fn summary<M>(record: &RunRecord<M>) -> RunSummary {
    RunSummary {
        id: record.id.clone(),
        request_id: record.request_id.clone(),
        started_by: record.started_by.clone(),
        state: record.state,
        started_at: record.started_at.clone(),
        completed_at: record.completed_at.clone(),
        message: record.message.clone(),
        run_properties: record.run_properties.clone(),
    }
}

fn summaries<M>(records: &[RunRecord<M>]) -> Vec<RunSummary> {
    // Records are per attempt, newest first; the first record of a run id is its newest attempt.
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| seen.insert(r.id.clone()))
        .map(summary)
        .collect()
}

impl HasRuns for Job {
    fn run_summaries(&self) -> Vec<RunSummary> {
        self.status.as_ref().map(|s| summaries(&s.runs)).unwrap_or_default()
    }
}

impl HasRuns for Crawler {
    fn run_summaries(&self) -> Vec<RunSummary> {
        self.status.as_ref().map(|s| summaries(&s.runs)).unwrap_or_default()
    }
}

impl HasRuns for Workflow {
    fn run_summaries(&self) -> Vec<RunSummary> {
        let runs = self.status.as_ref().map(|s| s.runs.as_slice()).unwrap_or_default();
        runs.iter()
            .map(|r| RunSummary {
                id: r.id.clone(),
                request_id: r.request_id.clone(),
                started_by: r.started_by.clone(),
                state: r.state,
                started_at: r.started_at.clone(),
                completed_at: r.completed_at.clone(),
                message: r.message.clone(),
                run_properties: BTreeMap::new(),
            })
            .collect()
    }
}

async fn read_state<K: HasRuns>(client: &Client, namespace: &str, name: &str) -> Result<Option<TargetState>, Error> {
    let object = Api::<K>::namespaced(client.clone(), namespace).get_opt(name).await?;
    Ok(object.map(|object| TargetState {
        uid: object.uid().unwrap_or_default(),
        runs: object.run_summaries(),
    }))
}

/// Reads `target` in `namespace`; None when it does not exist.
pub async fn read_target(client: &Client, namespace: &str, target: &Target) -> Result<Option<TargetState>, Error> {
    match target.kind {
        TargetKind::Job => read_state::<Job>(client, namespace, &target.name).await,
        TargetKind::Crawler => read_state::<Crawler>(client, namespace, &target.name).await,
        TargetKind::Workflow => read_state::<Workflow>(client, namespace, &target.name).await,
    }
}

/// Reads every target in `targets` that exists.
pub async fn read_targets<'a>(
    client: &Client,
    namespace: &str,
    targets: impl IntoIterator<Item = &'a Target>,
) -> Result<BTreeMap<Target, TargetState>, Error> {
    let mut found = BTreeMap::new();
    for target in targets {
        if found.contains_key(target) {
            continue;
        }
        if let Some(state) = read_target(client, namespace, target).await? {
            found.insert(target.clone(), state);
        }
    }
    Ok(found)
}

/// A start or stop request to put on a target.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    /// Start a run.
    Start {
        /// The target.
        target: Target,
        /// The request id (the annotation key's suffix).
        request_id: String,
        /// Arguments and starter.
        body: StartBody,
    },
    /// Stop a run.
    Stop {
        /// The target.
        target: Target,
        /// The run to stop.
        run_id: String,
    },
}

impl Ask {
    /// The object the request goes on.
    pub fn target(&self) -> &Target {
        match self {
            Ask::Start { target, .. } | Ask::Stop { target, .. } => target,
        }
    }

    /// The request, as the target reads it.
    pub fn request(&self) -> Request {
        match self {
            Ask::Start { request_id, body, .. } => Request::Start {
                request_id: request_id.clone(),
                body: body.clone(),
            },
            Ask::Stop { run_id, .. } => Request::Stop { run_id: run_id.clone() },
        }
    }
}

/// The requests `asks` put on each target.
pub fn requests_by_target(asks: &[Ask]) -> BTreeMap<Target, Vec<Request>> {
    let mut by_target: BTreeMap<Target, Vec<Request>> = BTreeMap::new();
    for ask in asks {
        by_target.entry(ask.target().clone()).or_default().push(ask.request());
    }
    by_target
}

/// Puts the annotations of `asks` on their targets (one merge patch per target). A target that
/// vanished meanwhile is skipped: its run can never start, which the starter sees on its next
/// read (the target is missing, so the starter is Stalled).
pub async fn ask(client: &Client, namespace: &str, asks: &[Ask]) -> Result<(), Error> {
    for (target, requests) in requests_by_target(asks) {
        let name = &target.name;
        let put = match target.kind {
            TargetKind::Job => {
                put_requests(&Api::<Job>::namespaced(client.clone(), namespace), name, &requests).await?
            }
            TargetKind::Crawler => {
                put_requests(&Api::<Crawler>::namespaced(client.clone(), namespace), name, &requests).await?
            }
            TargetKind::Workflow => {
                put_requests(&Api::<Workflow>::namespaced(client.clone(), namespace), name, &requests).await?
            }
        };
        if !put {
            tracing::warn!(%namespace, %target, "the target of a start or stop request is gone");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kglue_crds::common::StartedByKind;

    #[test]
    fn asks_become_one_annotation_map_per_target() {
        let body = StartBody {
            arguments: [("day".to_string(), "2030-01-01".to_string())].into(),
            started_by: StartedBy {
                kind: StartedByKind::Trigger,
                name: Some("nightly".into()),
            },
        };
        let asks = vec![
            Ask::Start {
                target: Target::job("clean"),
                request_id: "t-0123456789".into(),
                body: body.clone(),
            },
            Ask::Stop {
                target: Target::job("clean"),
                run_id: "jr-aaaaaaaaaa".into(),
            },
            Ask::Start {
                target: Target::workflow("daily"),
                request_id: "t-9876543210".into(),
                body,
            },
        ];
        let by_target = requests_by_target(&asks);
        assert_eq!(by_target.len(), 2);
        let patch = Request::patch_of(&by_target[&Target::job("clean")]);
        let clean = &patch["metadata"]["annotations"];
        assert_eq!(clean["stop.kglue.dev/jr-aaaaaaaaaa"], "");
        let value = clean["run.kglue.dev/t-0123456789"].as_str().expect("a string");
        // The value is what the run machine reads back.
        let requests = kglue_crds::protocol::requests::Requests::from_annotations(
            &[("run.kglue.dev/t-0123456789".to_string(), value.to_string())].into(),
        );
        let read = requests.starts[0].body.as_ref().expect("readable");
        assert_eq!(read.arguments["day"], "2030-01-01");
        assert_eq!(read.started_by.kind, StartedByKind::Trigger);
    }

    #[test]
    fn summaries_keep_the_newest_attempt_of_each_run() {
        let record = |id: &str, attempt: i32, state: RunState| RunRecord::<()> {
            id: id.into(),
            attempt,
            request_id: None,
            started_by: StartBody::default().started_by,
            arguments: BTreeMap::new(),
            state,
            started_at: None,
            completed_at: None,
            duration_seconds: None,
            not_before: None,
            kubernetes_job: None,
            settle_attempts: None,
            failures_in_a_row: None,
            message: None,
            metrics: None,
            executors: None,
            run_properties: BTreeMap::new(),
        };
        let runs = summaries(&[
            record("jr-b", 1, RunState::Running),
            record("jr-b", 0, RunState::Failed),
            record("jr-a", 0, RunState::Succeeded),
        ]);
        let states: Vec<_> = runs.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(states, [("jr-b", RunState::Running), ("jr-a", RunState::Succeeded)]);
    }
}
