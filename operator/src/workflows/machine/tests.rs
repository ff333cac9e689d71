use super::*;
use crate::starts::RunSummary;
use kglue_crds::Workflow;
use kglue_crds::protocol::requests::Requests;

fn at(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 time")
}

const PIPELINE: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Workflow
metadata: {name: daily, namespace: ns}
spec:
  defaultRunProperties: {day: "2030-01-01", zone: raw}
  nodes:
    - {name: crawl, crawler: landing}
    - {name: clean, job: clean, dependsOn: [{node: crawl}], arguments: {zone: curated}}
    - {name: publish, job: publish, dependsOn: [{node: clean}]}
    - {name: alert, job: alert, dependsOn: [{node: clean, state: Failed}]}
"#;

struct World {
    workflow: Workflow,
    runs: Vec<WorkflowRun>,
    targets: BTreeMap<Target, TargetState>,
    annotations: BTreeMap<String, String>,
    clock: i64,
}

impl World {
    fn new(yaml: &str) -> Self {
        let workflow: Workflow = serde_saphyr::from_str(yaml).expect("a Workflow");
        let targets = workflow
            .spec
            .nodes
            .iter()
            .filter_map(node_target)
            .map(|t| {
                let uid = format!("uid-{}", t.name);
                (
                    t,
                    TargetState {
                        uid,
                        ..TargetState::default()
                    },
                )
            })
            .collect();
        World {
            workflow,
            runs: Vec::new(),
            targets,
            annotations: BTreeMap::new(),
            clock: 0,
        }
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.annotations.insert(key.into(), value.into());
    }

    /// One reconcile: decide, then do what the I/O layer does (status write, annotations
    /// removed, start requests taken in by the targets as Starting runs).
    fn step(&mut self) -> Decision {
        self.clock += 1;
        let requests = Requests::from_annotations(&self.annotations);
        let workflow_requests = kglue_crds::protocol::requests::WorkflowRequests::from_annotations(&self.annotations);
        let decision = decide(&Observed {
            now: Timestamp::from_second(1_900_000_000 + self.clock).expect("a time"),
            name: "daily",
            uid: "uid-daily",
            spec: &self.workflow.spec,
            runs: self.runs.clone(),
            requests: &requests,
            workflow_requests: &workflow_requests,
            targets: &self.targets,
            blocked: None,
        });
        self.runs = decision.runs.clone();
        for key in &decision.handled {
            self.annotations.remove(key);
        }
        for ask in &decision.asks {
            match ask {
                Ask::Start {
                    target,
                    request_id,
                    body,
                } => {
                    let state = self.targets.get_mut(target).expect("a target");
                    if state.run_for_request(request_id).is_none() {
                        let id = run_id_on(target, state, request_id);
                        state.runs.insert(
                            0,
                            RunSummary {
                                id,
                                request_id: Some(request_id.clone()),
                                started_by: body.started_by.clone(),
                                state: RunState::Starting,
                                started_at: None,
                                completed_at: None,
                                message: None,
                                run_properties: BTreeMap::new(),
                            },
                        );
                    }
                }
                Ask::Stop { target, run_id } => {
                    let state = self.targets.get_mut(target).expect("a target");
                    if let Some(run) = state.runs.iter_mut().find(|r| &r.id == run_id) {
                        run.state = RunState::Stopped;
                    }
                }
            }
        }
        decision
    }

    /// Ends the newest run of a node's target.
    fn finish(&mut self, target: Target, state: RunState, message: Option<&str>) {
        let run = self
            .targets
            .get_mut(&target)
            .and_then(|t| t.runs.first_mut())
            .expect("a run");
        run.state = state;
        run.completed_at = Some(Time(at("2030-01-01T00:00:00Z")));
        run.message = message.map(str::to_string);
    }

    fn node(&self, name: &str) -> &NodeRun {
        self.runs[0].nodes.iter().find(|n| n.name == name).expect("a node")
    }

    fn runs_of(&self, target: &Target) -> usize {
        self.targets[target].runs.len()
    }
}

fn started(decision: &Decision) -> Vec<String> {
    decision
        .asks
        .iter()
        .filter_map(|ask| match ask {
            Ask::Start { target, .. } => Some(target.to_string()),
            Ask::Stop { .. } => None,
        })
        .collect()
}

#[test]
fn a_run_walks_the_dag_and_nodes_get_the_run_properties() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", r#"{"arguments": {"day": "2030-02-02"}}"#);
    let first = world.step();
    assert_eq!(started(&first), ["Crawler/landing"]);
    assert_eq!(world.runs[0].state, RunState::Running);
    assert_eq!(world.runs[0].run_properties["day"], "2030-02-02");
    assert!(world.annotations.is_empty());
    let Ask::Start { body, .. } = &first.asks[0] else {
        panic!("a start")
    };
    assert!(body.arguments.is_empty(), "crawls take no arguments");
    assert_eq!(body.started_by.kind, StartedByKind::Workflow);

    assert!(world.step().asks.is_empty(), "the crawl is running");
    world.finish(Target::crawler("landing"), RunState::Succeeded, None);
    let clean = world.step();
    assert_eq!(started(&clean), ["Job/clean"]);
    let Ask::Start { body, .. } = &clean.asks[0] else {
        panic!("a start")
    };
    assert_eq!(body.arguments["day"], "2030-02-02");
    assert_eq!(body.arguments["zone"], "curated", "the node's own arguments win");

    world.finish(Target::job("clean"), RunState::Succeeded, None);
    assert_eq!(started(&world.step()), ["Job/publish"]);
    assert!(world.node("alert").skipped, "alert waits for a failed clean");
    world.finish(Target::job("publish"), RunState::Succeeded, None);
    let done = world.step();
    assert_eq!(world.runs[0].state, RunState::Succeeded);
    assert_eq!(done.finished.len(), 1);
    assert!(done.events.iter().any(|e| e.reason == "WorkflowRunSucceeded"));
}

#[test]
fn a_failure_takes_the_failure_branch_and_resume_reruns_only_downstream() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    world.finish(Target::crawler("landing"), RunState::Succeeded, None);
    world.step();
    world.finish(Target::job("clean"), RunState::Failed, Some("bad row"));
    assert_eq!(started(&world.step()), ["Job/alert"], "the failure branch runs");
    assert!(world.node("publish").skipped);
    world.finish(Target::job("alert"), RunState::Succeeded, None);
    world.step();
    // clean's failure is handled by alert, so the run did what it was built to do.
    assert_eq!(world.runs[0].state, RunState::Succeeded);

    // Resume from clean by name: clean, publish and alert reset, the crawl is kept.
    let run_id = world.runs[0].id.clone();
    world.annotate(&format!("resume.kglue.dev/{run_id}"), r#"{"nodes": ["clean"]}"#);
    let resumed = world.step();
    assert_eq!(started(&resumed), ["Job/clean"]);
    assert_eq!(world.runs[0].resumes, Some(1));
    assert_eq!(world.node("crawl").state, Some(RunState::Succeeded));
    assert_eq!(
        world.runs_of(&Target::crawler("landing")),
        1,
        "the crawl is not run again"
    );
    assert_eq!(world.runs_of(&Target::job("clean")), 2, "a new run of clean");
    world.finish(Target::job("clean"), RunState::Succeeded, None);
    assert_eq!(started(&world.step()), ["Job/publish"]);
    world.finish(Target::job("publish"), RunState::Succeeded, None);
    world.step();
    assert_eq!(world.runs[0].state, RunState::Succeeded);
    assert!(world.node("alert").skipped);
}

#[test]
fn an_unhandled_failure_fails_the_run_and_resume_defaults_to_the_failed_nodes() {
    let mut world = World::new(&PIPELINE.replace(
        "    - {name: alert, job: alert, dependsOn: [{node: clean, state: Failed}]}\n",
        "",
    ));
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    world.finish(Target::crawler("landing"), RunState::Succeeded, None);
    world.step();
    world.finish(Target::job("clean"), RunState::Failed, Some("column x not found"));
    let failed = world.step();
    assert_eq!(world.runs[0].state, RunState::Failed);
    let message = world.runs[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("node clean ended Failed (column x not found)"),
        "{message}"
    );
    assert!(
        failed
            .events
            .iter()
            .any(|e| e.reason == "WorkflowRunFailed" && e.warning)
    );

    let run_id = world.runs[0].id.clone();
    world.annotate(&format!("resume.kglue.dev/{run_id}"), "");
    assert_eq!(started(&world.step()), ["Job/clean"]);
    world.finish(Target::job("clean"), RunState::Succeeded, None);
    world.step();
    world.finish(Target::job("publish"), RunState::Succeeded, None);
    world.step();
    assert_eq!(world.runs[0].state, RunState::Succeeded);
    assert_eq!(world.runs_of(&Target::crawler("landing")), 1);
}

#[test]
fn bad_resumes_are_refused_with_a_reason() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    let run_id = world.runs[0].id.clone();
    world.annotate(&format!("resume.kglue.dev/{run_id}"), "");
    let active = world.step();
    assert!(
        active
            .events
            .iter()
            .any(|e| e.reason == "ResumeRefused" && e.note.contains("still Running"))
    );
    world.finish(Target::crawler("landing"), RunState::Failed, None);
    world.step();
    world.annotate(&format!("resume.kglue.dev/{run_id}"), r#"{"nodes": ["nope"]}"#);
    let unknown = world.step();
    assert!(unknown.events.iter().any(|e| e.note.contains("no node named")));
    assert!(world.annotations.is_empty());
}

#[test]
fn stop_stops_active_nodes_and_starts_nothing_more() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    let run_id = world.runs[0].id.clone();
    world.annotate(&format!("stop.kglue.dev/{run_id}"), "");
    let stopping = world.step();
    assert!(matches!(&stopping.asks[..], [Ask::Stop { target, .. }] if *target == Target::crawler("landing")));
    // The stop reached the crawler (the test world stops at once); the run ends Stopped.
    world.step();
    assert_eq!(world.runs[0].state, RunState::Stopped);
    assert_eq!(world.runs_of(&Target::job("clean")), 0);
}

#[test]
fn runs_over_the_limit_wait_and_requests_are_taken_once() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.annotate("run.kglue.dev/r2", "");
    world.step();
    let states: Vec<RunState> = world.runs.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [RunState::Waiting, RunState::Running],
        "maxConcurrentRuns defaults to 1"
    );
    // The same request again (an annotation that outlived a restart) is not a new run.
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    assert_eq!(world.runs.len(), 2);
    world.finish(Target::crawler("landing"), RunState::Failed, None);
    let next = world.step();
    assert_eq!(world.runs[1].state, RunState::Failed);
    assert_eq!(world.runs[0].state, RunState::Running);
    assert_eq!(started(&next), ["Crawler/landing"]);
}

#[test]
fn properties_updates_reach_nodes_started_later() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    let run_id = world.runs[0].id.clone();
    world.annotate(&format!("properties.kglue.dev/{run_id}"), r#"{"day": "2030-03-03"}"#);
    world.step();
    world.finish(Target::crawler("landing"), RunState::Succeeded, None);
    let clean = world.step();
    let Ask::Start { body, .. } = &clean.asks[0] else {
        panic!("a start")
    };
    assert_eq!(body.arguments["day"], "2030-03-03");
}

#[test]
fn downstream_includes_every_dependent() {
    let world = World::new(PIPELINE);
    let nodes: Vec<String> = downstream(&world.workflow.spec, &["crawl".to_string()])
        .into_iter()
        .collect();
    assert_eq!(nodes, ["alert", "clean", "crawl", "publish"]);
}

#[test]
fn a_succeeded_job_nodes_run_properties_reach_the_nodes_after_it() {
    let mut world = World::new(PIPELINE);
    world.annotate("run.kglue.dev/r1", "");
    world.step();
    world.finish(Target::crawler("landing"), RunState::Succeeded, None);
    world.step();
    world.finish(Target::job("clean"), RunState::Succeeded, None);
    let clean = world.targets.get_mut(&Target::job("clean")).expect("clean");
    clean.runs[0].run_properties = [("orders_through".to_string(), "2030-01-05".to_string())].into();
    let publish = world.step();
    let Ask::Start { body, .. } = &publish.asks[0] else {
        panic!("a start")
    };
    assert_eq!(body.arguments["orders_through"], "2030-01-05");
    assert_eq!(world.runs[0].run_properties["orders_through"], "2030-01-05");
}
