//! The workflow run state machine: from the Workflow's runs in status, the requests in its
//! annotations (start, stop, resume, update run properties) and the runs of its nodes' Jobs and
//! Crawlers, to the new runs and the start and stop requests to put on the nodes' targets. Pure,
//! so every transition is unit-tested without a cluster.
//!
//! A node starts when every node it depends on ended in the state it waits for; it is skipped
//! when one ended otherwise (or was skipped). A run ends when no node is active and none can
//! start: Failed when a node ended in a state no dependent waits for, else Succeeded. Resuming a
//! run resets the chosen nodes and everything downstream of them and runs them again; upstream
//! nodes keep their results and are not run again.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{RunState, StartedBy, StartedByKind};
use kglue_crds::workflow::{NodeRun, WorkflowNode, WorkflowRun, WorkflowSpec};

use kglue_crds::protocol::ids::run_id;
use kglue_crds::protocol::requests::{Requests, StartBody, WorkflowRequests};

use crate::starts::{Ask, Target, TargetState, request_id, run_id_on};
use crate::writes::Notice;

/// Everything a workflow decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The current time.
    pub now: Timestamp,
    /// The Workflow's name.
    pub name: &'a str,
    /// Its UID.
    pub uid: &'a str,
    /// Its spec.
    pub spec: &'a WorkflowSpec,
    /// `status.runs`, newest first.
    pub runs: Vec<WorkflowRun>,
    /// Start and stop requests.
    pub requests: &'a Requests,
    /// Resume and properties requests.
    pub workflow_requests: &'a WorkflowRequests,
    /// The nodes' Jobs and Crawlers that exist.
    pub targets: &'a BTreeMap<Target, TargetState>,
    /// Why runs cannot start (the Workflow is Stalled), if so.
    pub blocked: Option<&'a str>,
}

/// What to do.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// The new `status.runs`.
    pub runs: Vec<WorkflowRun>,
    /// Start and stop requests for the nodes' targets.
    pub asks: Vec<Ask>,
    /// Annotations to remove.
    pub handled: Vec<String>,
    /// Events to publish.
    pub events: Vec<Notice>,
    /// Runs that reached a final state, with their duration in seconds.
    pub finished: Vec<(RunState, f64)>,
}

/// The Job or Crawler a node runs.
pub fn node_target(node: &WorkflowNode) -> Option<Target> {
    match (&node.job, &node.crawler) {
        (Some(job), None) => Some(Target::job(job)),
        (None, Some(crawler)) => Some(Target::crawler(crawler)),
        _ => None,
    }
}

fn active(state: Option<RunState>) -> bool {
    state.is_some_and(|s| !s.is_final())
}

fn fresh_node(name: &str) -> NodeRun {
    NodeRun {
        name: name.to_string(),
        state: None,
        skipped: false,
        run_id: None,
        started_at: None,
        completed_at: None,
        message: None,
    }
}

/// `roots` and every node downstream of them.
pub fn downstream(spec: &WorkflowSpec, roots: &[String]) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = roots.iter().cloned().collect();
    loop {
        let before = found.len();
        for node in &spec.nodes {
            if node.depends_on.iter().any(|d| found.contains(&d.node)) {
                found.insert(node.name.clone());
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Nodes that ended in a state no dependent waits for: the failures of a run.
fn unhandled(spec: &WorkflowSpec, run: &WorkflowRun) -> Vec<(String, RunState, Option<String>)> {
    run.nodes
        .iter()
        .filter_map(|node| {
            let state = node.state.filter(|s| s.is_final() && *s != RunState::Succeeded)?;
            let handled = spec
                .nodes
                .iter()
                .any(|n| n.depends_on.iter().any(|d| d.node == node.name && d.state == state));
            (!handled).then(|| (node.name.clone(), state, node.message.clone()))
        })
        .collect()
}

struct Decider<'a> {
    o: &'a Observed<'a>,
    d: Decision,
}

impl Decider<'_> {
    fn note(&mut self, warning: bool, reason: &'static str, note: String) {
        self.d.events.push(Notice { warning, reason, note });
    }

    fn end(&mut self, run: &mut WorkflowRun, state: RunState, message: Option<String>) {
        run.state = state;
        run.completed_at = Some(Time(self.o.now));
        if message.is_some() {
            run.message = message;
        }
        let seconds = run
            .started_at
            .as_ref()
            .map(|t| self.o.now.duration_since(t.0).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        self.d.finished.push((state, seconds));
        let (warning, reason) = match state {
            RunState::Succeeded => (false, "WorkflowRunSucceeded"),
            RunState::Stopped => (false, "WorkflowRunStopped"),
            _ => (true, "WorkflowRunFailed"),
        };
        let note = format!(
            "workflow run {} ended {state:?} after {seconds:.1} s{}",
            run.id,
            run.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        );
        self.note(warning, reason, note);
    }

    /// New start requests become Waiting runs.
    fn starts(&mut self, runs: &mut Vec<WorkflowRun>) {
        for request in &self.o.requests.starts {
            self.d.handled.push(request.annotation.clone());
            if runs.iter().any(|r| r.request_id.as_deref() == Some(&request.id)) {
                continue;
            }
            let (started_by, arguments) = match &request.body {
                Ok(body) => (body.started_by.clone(), body.arguments.clone()),
                Err(_) => (StartBody::default().started_by, BTreeMap::new()),
            };
            let mut properties = self.o.spec.default_run_properties.clone();
            properties.extend(arguments);
            let mut run = WorkflowRun {
                id: run_id("wr-", self.o.uid, &request.id),
                request_id: Some(request.id.clone()),
                started_by,
                state: RunState::Waiting,
                run_properties: properties,
                started_at: Some(Time(self.o.now)),
                completed_at: None,
                resumes: None,
                nodes: Vec::new(),
                message: None,
            };
            if let Err(error) = &request.body {
                self.end(&mut run, RunState::Error, Some(error.clone()));
            }
            runs.insert(0, run);
        }
    }

    fn stops(&mut self, runs: &mut [WorkflowRun]) {
        for (key, run_id) in &self.o.requests.stops {
            self.d.handled.push(key.clone());
            let Some(run) = runs.iter_mut().find(|r| &r.id == run_id) else {
                self.note(true, "WorkflowRunError", format!("{key}: there is no run {run_id}"));
                continue;
            };
            match run.state {
                RunState::Waiting => self.end(run, RunState::Stopped, Some("stopped before it started".into())),
                RunState::Running => {
                    run.state = RunState::Stopping;
                    run.message = Some("stopping on request".into());
                    for node in run.nodes.iter().filter(|n| active(n.state)) {
                        let target = self
                            .o
                            .spec
                            .nodes
                            .iter()
                            .find(|s| s.name == node.name)
                            .and_then(node_target);
                        if let (Some(target), Some(run_id)) = (target, &node.run_id) {
                            self.d.asks.push(Ask::Stop {
                                target,
                                run_id: run_id.clone(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn resumes(&mut self, runs: &mut [WorkflowRun]) {
        for (key, run_id, body) in &self.o.workflow_requests.resumes {
            self.d.handled.push(key.clone());
            let refuse = |why: String| (true, "ResumeRefused", format!("{key}: not resumed: {why}"));
            let outcome = match (runs.iter_mut().find(|r| &r.id == run_id), body) {
                (_, Err(error)) => refuse(error.clone()),
                (None, _) => refuse(format!("there is no run {run_id}")),
                (Some(run), _) if !run.state.is_final() => refuse(format!("run {run_id} is still {:?}", run.state)),
                (Some(run), Ok(body)) => {
                    let chosen: Vec<String> = if body.nodes.is_empty() {
                        let mut failed: Vec<String> =
                            unhandled(self.o.spec, run).into_iter().map(|(n, _, _)| n).collect();
                        // A run stopped midway: the nodes that never ran are the ones to run.
                        failed.extend(
                            run.nodes
                                .iter()
                                .filter(|n| n.state.is_none() && !n.skipped)
                                .map(|n| n.name.clone()),
                        );
                        failed
                    } else {
                        body.nodes.clone()
                    };
                    let unknown: Vec<&String> = chosen
                        .iter()
                        .filter(|n| !self.o.spec.nodes.iter().any(|s| &s.name == *n))
                        .collect();
                    if !unknown.is_empty() {
                        refuse(format!("no node named {unknown:?} in this workflow"))
                    } else if chosen.is_empty() {
                        refuse(format!("run {run_id} has no failed node; name the nodes to run again"))
                    } else {
                        let reset = downstream(self.o.spec, &chosen);
                        for spec_node in &self.o.spec.nodes {
                            if !run.nodes.iter().any(|n| n.name == spec_node.name) {
                                run.nodes.push(fresh_node(&spec_node.name));
                            }
                        }
                        for node in run.nodes.iter_mut().filter(|n| reset.contains(&n.name)) {
                            *node = fresh_node(&node.name);
                        }
                        run.resumes = Some(run.resumes.unwrap_or(0) + 1);
                        run.state = RunState::Waiting;
                        run.completed_at = None;
                        run.message = None;
                        let list = reset.iter().cloned().collect::<Vec<_>>().join(", ");
                        (
                            false,
                            "WorkflowRunResumed",
                            format!("workflow run {run_id} resumed; runs again: {list}"),
                        )
                    }
                }
            };
            let (warning, reason, note) = outcome;
            self.note(warning, reason, note);
        }
        for (key, run_id, body) in &self.o.workflow_requests.properties {
            self.d.handled.push(key.clone());
            match (runs.iter_mut().find(|r| &r.id == run_id), body) {
                (Some(run), Ok(update)) => run.run_properties.extend(update.clone()),
                (None, _) => self.note(true, "PropertiesRefused", format!("{key}: there is no run {run_id}")),
                (_, Err(error)) => self.note(true, "PropertiesRefused", error.clone()),
            }
        }
    }

    /// Follows the nodes' runs on their targets; a job node that succeeded hands on the run
    /// properties it set.
    fn follow(&mut self, run: &mut WorkflowRun) {
        let mut updates = BTreeMap::new();
        for node in run.nodes.iter_mut().filter(|n| active(n.state)) {
            let Some(spec_node) = self.o.spec.nodes.iter().find(|s| s.name == node.name) else {
                continue;
            };
            let Some(target) = node_target(spec_node) else {
                continue;
            };
            let Some(state) = self.o.targets.get(&target) else {
                node.state = Some(RunState::Error);
                node.completed_at = Some(Time(self.o.now));
                node.message = Some(format!("{target} no longer exists"));
                continue;
            };
            if let Some(seen) = node
                .run_id
                .as_deref()
                .and_then(|id| state.runs.iter().find(|r| r.id == id))
            {
                node.state = Some(seen.state);
                node.message = seen.message.clone();
                if seen.state.is_final() {
                    node.completed_at = seen.completed_at.clone().or(Some(Time(self.o.now)));
                }
                if seen.state == RunState::Succeeded {
                    updates.extend(seen.run_properties.clone());
                }
            }
        }
        run.run_properties.extend(updates);
    }

    /// Starts the nodes whose dependencies hold and skips those that can no longer run.
    fn advance(&mut self, run: &mut WorkflowRun) {
        loop {
            let mut changed = false;
            for index in 0..run.nodes.len() {
                let node = &run.nodes[index];
                if node.state.is_some() || node.skipped {
                    continue;
                }
                let Some(spec_node) = self.o.spec.nodes.iter().find(|s| s.name == node.name) else {
                    continue;
                };
                let mut ready = true;
                let mut skip: Option<String> = None;
                for dependency in &spec_node.depends_on {
                    match run.nodes.iter().find(|n| n.name == dependency.node) {
                        Some(dep) if dep.skipped => {
                            skip = Some(format!("skipped: {} was skipped", dep.name));
                        }
                        Some(NodeRun { state: Some(state), .. }) if state.is_final() => {
                            if *state != dependency.state {
                                skip = Some(format!(
                                    "skipped: {} ended {state:?}; this node waits for {:?}",
                                    dependency.node, dependency.state
                                ));
                            }
                        }
                        _ => ready = false,
                    }
                }
                if let Some(why) = skip {
                    let node = &mut run.nodes[index];
                    node.skipped = true;
                    node.message = Some(why);
                    changed = true;
                } else if ready && run.state == RunState::Running {
                    self.start_node(run, index);
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn start_node(&mut self, run: &mut WorkflowRun, index: usize) {
        let name = run.nodes[index].name.clone();
        let Some(spec_node) = self.o.spec.nodes.iter().find(|s| s.name == name) else {
            return;
        };
        let now = Time(self.o.now);
        let Some(target) = node_target(spec_node) else {
            return;
        };
        let resumes = run.resumes.unwrap_or(0);
        let request = request_id("w-", self.o.uid, &format!("{}/{name}/{resumes}", run.id));
        let node = &mut run.nodes[index];
        node.started_at = Some(now.clone());
        let Some(state) = self.o.targets.get(&target) else {
            node.state = Some(RunState::Error);
            node.completed_at = Some(now);
            node.message = Some(format!("{target} does not exist"));
            return;
        };
        node.state = Some(RunState::Starting);
        node.run_id = Some(run_id_on(&target, state, &request));
        node.message = None;
        // Crawls take no arguments; jobs get the run properties under the node's own arguments.
        let arguments = if spec_node.job.is_some() {
            let mut arguments = run.run_properties.clone();
            arguments.extend(spec_node.arguments.clone());
            arguments
        } else {
            BTreeMap::new()
        };
        let note = format!(
            "workflow run {}: node {name} started {target} run {}",
            run.id,
            run.nodes[index].run_id.as_deref().unwrap_or_default()
        );
        self.d.asks.push(Ask::Start {
            target,
            request_id: request,
            body: StartBody {
                arguments,
                started_by: StartedBy {
                    kind: StartedByKind::Workflow,
                    name: Some(self.o.name.to_string()),
                },
            },
        });
        self.note(false, "NodeStarted", note);
    }

    /// Ends a run that has nothing left to do.
    fn settle(&mut self, run: &mut WorkflowRun) {
        if run.nodes.iter().any(|n| active(n.state)) {
            return;
        }
        match run.state {
            RunState::Stopping => self.end(run, RunState::Stopped, Some("stopped on request".into())),
            RunState::Running => {
                let waiting = run.nodes.iter().any(|n| n.state.is_none() && !n.skipped);
                if waiting {
                    return;
                }
                let failures = unhandled(self.o.spec, run);
                if failures.is_empty() {
                    self.end(run, RunState::Succeeded, None);
                } else {
                    let message = failures
                        .iter()
                        .map(|(name, state, message)| {
                            format!(
                                "node {name} ended {state:?}{}",
                                message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.end(run, RunState::Failed, Some(message));
                }
            }
            _ => {}
        }
    }
}

/// Decides. Pure.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut decider = Decider {
        o: observed,
        d: Decision::default(),
    };
    let mut runs = observed.runs.clone();
    decider.starts(&mut runs);
    decider.stops(&mut runs);
    decider.resumes(&mut runs);

    // Active runs follow their nodes; then waiting runs start, oldest first, within the limit.
    for run in runs
        .iter_mut()
        .filter(|r| matches!(r.state, RunState::Running | RunState::Stopping))
    {
        decider.follow(run);
        decider.advance(run);
        decider.settle(run);
    }
    let limit = usize::try_from(observed.spec.max_concurrent_runs).unwrap_or(1).max(1);
    let mut running = runs
        .iter()
        .filter(|r| matches!(r.state, RunState::Running | RunState::Stopping))
        .count();
    for run in runs.iter_mut().rev().filter(|r| r.state == RunState::Waiting) {
        if let Some(blocked) = observed.blocked {
            decider.end(run, RunState::Error, Some(format!("not started: {blocked}")));
            continue;
        }
        if running >= limit {
            run.message = Some(format!(
                "waiting: {running} run(s) active, maxConcurrentRuns is {limit}"
            ));
            continue;
        }
        running += 1;
        run.state = RunState::Running;
        run.message = None;
        if run.nodes.is_empty() {
            run.nodes = observed.spec.nodes.iter().map(|n| fresh_node(&n.name)).collect();
        }
        let note = format!("workflow run {} started ({} nodes)", run.id, run.nodes.len());
        decider.note(false, "WorkflowRunStarted", note);
        decider.advance(run);
        decider.settle(run);
    }

    // History: the newest runs, never an active one.
    let limit = usize::try_from(observed.spec.run_history_limit).unwrap_or(10).max(1);
    let mut kept = 0;
    runs.retain(|r| {
        kept += 1;
        kept <= limit || !r.state.is_final()
    });
    decider.d.runs = runs;
    decider.d
}

#[cfg(test)]
#[path = "machine/tests.rs"]
mod tests;
