use super::*;
use crate::starts::RunSummary;
use kglue_crds::Trigger;
use kglue_crds::protocol::requests::Requests;

fn at(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 time")
}

fn trigger(yaml: &str) -> Trigger {
    serde_saphyr::from_str(yaml).expect("a Trigger")
}

fn run(id: &str, state: RunState, by_trigger: Option<&str>, ended: Option<&str>) -> RunSummary {
    RunSummary {
        id: id.into(),
        request_id: None,
        started_by: StartedBy {
            kind: if by_trigger.is_some() {
                StartedByKind::Trigger
            } else {
                StartedByKind::Manual
            },
            name: by_trigger.map(str::to_string),
        },
        state,
        started_at: None,
        completed_at: ended.map(|t| Time(at(t))),
        message: None,
        run_properties: BTreeMap::new(),
    }
}

fn state(uid: &str, runs: Vec<RunSummary>) -> TargetState {
    TargetState { uid: uid.into(), runs }
}

struct World {
    trigger: Trigger,
    status: TriggerStatus,
    targets: BTreeMap<Target, TargetState>,
    requests: Requests,
    created: Timestamp,
}

impl World {
    fn new(yaml: &str) -> Self {
        let trigger = trigger(yaml);
        let mut targets = BTreeMap::new();
        for target in super::targets(&trigger.spec) {
            let uid = format!("uid-{}", target.name);
            targets.insert(target, state(&uid, Vec::new()));
        }
        World {
            trigger,
            status: TriggerStatus::default(),
            targets,
            requests: Requests::default(),
            created: at("2030-01-01T00:00:00Z"),
        }
    }

    fn decide_at(&mut self, now: &str, listing: Option<Result<Vec<Listed>, String>>) -> Decision {
        let decision = decide(&Observed {
            now: at(now),
            name: "t",
            uid: "uid-t",
            created: self.created,
            spec: &self.trigger.spec,
            status: &self.status,
            requests: &self.requests,
            targets: &self.targets,
            listing,
            blocked: None,
        });
        // The status write lands.
        self.status = decision.status.clone();
        decision
    }

    fn set_runs(&mut self, target: Target, runs: Vec<RunSummary>) {
        self.targets.get_mut(&target).expect("a target").runs = runs;
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

fn stopped(decision: &Decision) -> Vec<String> {
    decision
        .asks
        .iter()
        .filter_map(|ask| match ask {
            Ask::Stop { target, run_id } => Some(format!("{target}/{run_id}")),
            Ask::Start { .. } => None,
        })
        .collect()
}

const HOURLY: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  type: Scheduled
  schedule: {cron: "0 * * * *", concurrencyPolicy: POLICY}
  actions:
    - job: clean
      arguments: {mode: full}
    - workflow: pipeline
"#;

#[test]
fn a_schedule_fires_each_tick_once_with_the_actions_arguments() {
    let mut world = World::new(&HOURLY.replace("POLICY", "Allow"));
    let quiet = world.decide_at("2030-01-01T00:59:00Z", None);
    assert!(quiet.asks.is_empty());
    assert_eq!(quiet.status.next_fire_time, Some(Time(at("2030-01-01T01:00:00Z"))));
    assert_eq!(quiet.requeue_after, Some(Duration::from_secs(60)));

    let tick = world.decide_at("2030-01-01T01:00:01Z", None);
    assert_eq!(started(&tick), ["Job/clean", "Workflow/pipeline"]);
    let Ask::Start { body, request_id, .. } = &tick.asks[0] else {
        panic!("a start")
    };
    assert_eq!(body.arguments["mode"], "full");
    assert_eq!(body.started_by.name.as_deref(), Some("t"));
    assert!(request_id.starts_with("t-"));
    assert_eq!(tick.status.fires.len(), 1);
    assert!(
        tick.status.fires[0].started[0].starts_with("Job/clean/jr-"),
        "{:?}",
        tick.status.fires
    );
    assert_eq!(tick.status.next_fire_time, Some(Time(at("2030-01-01T02:00:00Z"))));

    assert!(
        world.decide_at("2030-01-01T01:00:40Z", None).asks.is_empty(),
        "same tick"
    );
}

#[test]
fn a_fire_repeated_after_a_lost_status_write_asks_the_same_requests() {
    let mut world = World::new(&HOURLY.replace("POLICY", "Allow"));
    world.decide_at("2030-01-01T00:59:00Z", None);
    let saved = world.status.clone();
    let first = world.decide_at("2030-01-01T01:00:01Z", None);
    world.status = saved; // the operator died before its status write
    let again = world.decide_at("2030-01-01T01:00:20Z", None);
    assert_eq!(first.asks, again.asks);
}

#[test]
fn forbid_skips_a_tick_while_the_triggers_runs_are_active() {
    let mut world = World::new(&HOURLY.replace("POLICY", "Forbid"));
    world.decide_at("2030-01-01T00:59:00Z", None);
    world.set_runs(
        Target::job("clean"),
        vec![run("jr-1", RunState::Running, Some("t"), None)],
    );
    let skipped = world.decide_at("2030-01-01T01:00:01Z", None);
    assert!(skipped.asks.is_empty());
    assert!(skipped.events.iter().any(|e| e.reason == "TickSkipped"));
    // Runs someone else started do not count.
    world.set_runs(Target::job("clean"), vec![run("jr-2", RunState::Running, None, None)]);
    let fired = world.decide_at("2030-01-01T02:00:01Z", None);
    assert_eq!(started(&fired).len(), 2);
}

#[test]
fn replace_stops_the_triggers_active_runs_then_starts() {
    let mut world = World::new(&HOURLY.replace("POLICY", "Replace"));
    world.decide_at("2030-01-01T00:59:00Z", None);
    world.set_runs(
        Target::job("clean"),
        vec![
            run("jr-1", RunState::Running, Some("t"), None),
            run("jr-0", RunState::Succeeded, Some("t"), Some("2030-01-01T00:10:00Z")),
        ],
    );
    let decision = world.decide_at("2030-01-01T01:00:01Z", None);
    assert_eq!(stopped(&decision), ["Job/clean/jr-1"]);
    assert_eq!(started(&decision).len(), 2);
}

#[test]
fn allow_starts_alongside_active_runs() {
    let mut world = World::new(&HOURLY.replace("POLICY", "Allow"));
    world.decide_at("2030-01-01T00:59:00Z", None);
    world.set_runs(
        Target::job("clean"),
        vec![run("jr-1", RunState::Running, Some("t"), None)],
    );
    let decision = world.decide_at("2030-01-01T01:00:01Z", None);
    assert!(stopped(&decision).is_empty());
    assert_eq!(started(&decision).len(), 2);
}

#[test]
fn missed_ticks_fire_once_within_the_deadline_and_are_reported() {
    let yaml = HOURLY.replace("POLICY", "Allow").replace(
        "concurrencyPolicy: Allow",
        "concurrencyPolicy: Allow, startingDeadlineSeconds: 600",
    );
    let mut world = World::new(&yaml);
    world.decide_at("2030-01-01T00:59:00Z", None);
    // The operator was down from 00:59 to 03:05: 01:00 and 02:00 were missed, 03:00 is in time.
    let decision = world.decide_at("2030-01-01T03:05:00Z", None);
    assert_eq!(started(&decision).len(), 2, "one fire, for 03:00");
    assert_eq!(decision.status.fires[0].reason, "schedule tick 2030-01-01T03:00:00Z");
    assert!(
        decision
            .events
            .iter()
            .any(|e| e.reason == "TicksMissed" && e.note.starts_with("2 tick"))
    );
    // Down past the deadline: nothing fires, the ticks are handled.
    let late = world.decide_at("2030-01-01T04:20:00Z", None);
    assert!(late.asks.is_empty());
    assert_eq!(late.status.last_schedule_time, Some(Time(at("2030-01-01T04:00:00Z"))));
}

#[test]
fn a_suspended_schedule_catches_up_only_within_the_deadline() {
    let yaml = HOURLY.replace("POLICY", "Allow").replace(
        "concurrencyPolicy: Allow",
        "concurrencyPolicy: Allow, startingDeadlineSeconds: 600",
    );
    let mut world = World::new(&yaml);
    world.decide_at("2030-01-01T00:59:00Z", None);
    world.trigger.spec.suspend = true;
    let suspended = world.decide_at("2030-01-01T01:00:01Z", None);
    assert!(suspended.asks.is_empty());
    assert_eq!(suspended.status.next_fire_time, None);
    world.trigger.spec.suspend = false;
    let resumed = world.decide_at("2030-01-01T01:05:00Z", None);
    assert_eq!(started(&resumed).len(), 2, "01:00 is five minutes late, within 600 s");
}

const CONDITIONAL: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  type: Conditional
  predicate:
    logical: LOGICAL
    conditions:
      - {job: a, state: Succeeded}
      - {job: b, state: Succeeded}
  actions:
    - job: c
"#;

#[test]
fn and_fires_once_per_set_of_runs_and_never_reuses_a_run() {
    let mut world = World::new(&CONDITIONAL.replace("LOGICAL", "And"));
    let done = Some("2030-01-01T01:00:00Z");
    world.set_runs(Target::job("a"), vec![run("jr-a1", RunState::Succeeded, None, done)]);
    assert!(
        world.decide_at("2030-01-01T01:00:01Z", None).asks.is_empty(),
        "b has not run"
    );
    world.set_runs(Target::job("b"), vec![run("jr-b1", RunState::Running, None, None)]);
    assert!(
        world.decide_at("2030-01-01T01:00:02Z", None).asks.is_empty(),
        "b is running"
    );
    world.set_runs(Target::job("b"), vec![run("jr-b1", RunState::Succeeded, None, done)]);
    let fired = world.decide_at("2030-01-01T01:00:03Z", None);
    assert_eq!(started(&fired), ["Job/c"]);
    assert_eq!(fired.status.last_satisfied_by, ["Job/a/jr-a1", "Job/b/jr-b1"]);
    assert!(
        world.decide_at("2030-01-01T01:00:04Z", None).asks.is_empty(),
        "same runs"
    );

    // a runs again: b's run was used already, so the trigger waits for b's next run.
    world.set_runs(Target::job("a"), vec![run("jr-a2", RunState::Succeeded, None, done)]);
    assert!(world.decide_at("2030-01-01T01:00:05Z", None).asks.is_empty());
    world.set_runs(Target::job("b"), vec![run("jr-b2", RunState::Succeeded, None, done)]);
    let second = world.decide_at("2030-01-01T01:00:06Z", None);
    assert_eq!(started(&second), ["Job/c"]);
    assert_ne!(second.asks, fired.asks, "a new request for new runs");
}

#[test]
fn any_fires_for_each_new_run_that_holds() {
    let mut world = World::new(&CONDITIONAL.replace("LOGICAL", "Any").replace("Succeeded", "Failed"));
    let done = Some("2030-01-01T01:00:00Z");
    world.set_runs(Target::job("a"), vec![run("jr-a1", RunState::Failed, None, done)]);
    assert_eq!(started(&world.decide_at("2030-01-01T01:00:01Z", None)), ["Job/c"]);
    world.set_runs(Target::job("b"), vec![run("jr-b1", RunState::Failed, None, done)]);
    assert_eq!(started(&world.decide_at("2030-01-01T01:00:02Z", None)), ["Job/c"]);
    assert!(
        world.decide_at("2030-01-01T01:00:03Z", None).asks.is_empty(),
        "a1 is not used twice"
    );
    world.set_runs(Target::job("a"), vec![run("jr-a2", RunState::Succeeded, None, done)]);
    assert!(
        world.decide_at("2030-01-01T01:00:04Z", None).asks.is_empty(),
        "wrong state"
    );
}

#[test]
fn runs_that_ended_before_the_trigger_existed_do_not_fire_it() {
    let mut world = World::new(&CONDITIONAL.replace("LOGICAL", "Any"));
    world.set_runs(
        Target::job("a"),
        vec![run("jr-a0", RunState::Succeeded, None, Some("2029-12-31T23:00:00Z"))],
    );
    assert!(world.decide_at("2030-01-01T01:00:00Z", None).asks.is_empty());
}

const EVENT: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  type: Event
  event: {location: "s3://landing/orders/", batchSize: 3, batchWindowSeconds: 60}
  actions:
    - workflow: pipeline
"#;

fn objects(list: &[(&str, &str)]) -> Option<Result<Vec<Listed>, String>> {
    Some(Ok(list
        .iter()
        .map(|(key, modified)| Listed {
            key: key.to_string(),
            modified: at(modified),
        })
        .collect()))
}

#[test]
fn events_fire_when_the_batch_is_full() {
    let mut world = World::new(EVENT);
    let old = ("orders/old.csv", "2029-12-31T00:00:00Z");
    let first = world.decide_at("2030-01-01T01:00:00Z", objects(&[old]));
    assert!(first.asks.is_empty(), "objects from before the trigger do not count");
    assert_eq!(first.status.pending_objects, Some(0));
    let two = [
        old,
        ("orders/1.csv", "2030-01-01T01:00:10Z"),
        ("orders/2.csv", "2030-01-01T01:00:11Z"),
    ];
    let waiting = world.decide_at("2030-01-01T01:00:12Z", objects(&two));
    assert!(waiting.asks.is_empty());
    assert_eq!(waiting.status.pending_objects, Some(2));
    assert_eq!(
        waiting.requeue_after,
        Some(Duration::from_secs(30)),
        "the poll comes before the window"
    );
    // The same listing again counts nothing twice.
    assert_eq!(
        world
            .decide_at("2030-01-01T01:00:13Z", objects(&two))
            .status
            .pending_objects,
        Some(2)
    );
    let three = [two[0], two[1], two[2], ("orders/3.csv", "2030-01-01T01:00:20Z")];
    let fired = world.decide_at("2030-01-01T01:00:21Z", objects(&three));
    assert_eq!(started(&fired), ["Workflow/pipeline"]);
    assert!(
        fired.status.fires[0].reason.contains("3 new object(s)"),
        "{}",
        fired.status.fires[0].reason
    );
    assert_eq!(fired.status.pending_objects, Some(0));
    assert!(world.decide_at("2030-01-01T01:00:22Z", objects(&three)).asks.is_empty());
}

#[test]
fn events_fire_when_the_window_passes_and_late_listed_objects_count() {
    let mut world = World::new(EVENT);
    let one = [("orders/1.csv", "2030-01-01T01:00:10Z")];
    assert!(world.decide_at("2030-01-01T01:00:11Z", objects(&one)).asks.is_empty());
    // An object modified before the newest one seen, listed only now (within the safety band).
    let late = [one[0], ("orders/0.csv", "2030-01-01T01:00:05Z")];
    let decision = world.decide_at("2030-01-01T01:00:30Z", objects(&late));
    assert_eq!(decision.status.pending_objects, Some(2));
    assert_eq!(decision.requeue_after, Some(Duration::from_secs(30)));
    let window = world.decide_at("2030-01-01T01:01:12Z", objects(&late));
    assert_eq!(started(&window), ["Workflow/pipeline"]);
    assert!(window.status.fires[0].reason.contains("batch window passed"));
}

#[test]
fn a_listing_error_is_reported_once_and_kept_in_status() {
    let mut world = World::new(EVENT);
    let failed = world.decide_at("2030-01-01T01:00:00Z", Some(Err("connection refused".into())));
    assert_eq!(failed.events.len(), 1);
    assert_eq!(
        failed.status.event_cursor.and_then(|c| c.error).as_deref(),
        Some("connection refused")
    );
    let again = world.decide_at("2030-01-01T01:00:30Z", Some(Err("connection refused".into())));
    assert!(again.events.is_empty());
}

#[test]
fn a_fire_request_fires_any_trigger_with_its_arguments_unless_suspended() {
    let mut world = World::new(
        r#"
apiVersion: kglue.dev/v1alpha1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  type: OnDemand
  actions:
    - job: clean
      arguments: {mode: full, day: "1"}
"#,
    );
    world.requests = Requests::from_annotations(
        &[(
            "run.kglue.dev/cli-1".to_string(),
            r#"{"arguments": {"day": "2"}}"#.to_string(),
        )]
        .into(),
    );
    let fired = world.decide_at("2030-01-01T01:00:00Z", None);
    assert_eq!(fired.handled, ["run.kglue.dev/cli-1"]);
    let Ask::Start { body, .. } = &fired.asks[0] else {
        panic!("a start")
    };
    assert_eq!(body.arguments["day"], "2", "the request's arguments win");
    assert_eq!(body.arguments["mode"], "full");

    world.trigger.spec.suspend = true;
    let refused = world.decide_at("2030-01-01T01:00:01Z", None);
    assert!(refused.asks.is_empty());
    assert_eq!(refused.handled, ["run.kglue.dev/cli-1"]);
    assert!(refused.events.iter().any(|e| e.reason == "FireRefused" && e.warning));
}

#[test]
fn the_window_closes_between_listings_and_listings_wait_for_the_poll_interval() {
    let mut world = World::new(EVENT);
    let one = [("orders/1.csv", "2030-01-01T01:00:10Z")];
    world.decide_at("2030-01-01T01:00:11Z", objects(&one));
    let source = world.trigger.spec.event.clone().expect("an event source");
    assert!(
        !listing_due(&source, &world.status, at("2030-01-01T01:00:20Z")),
        "listed 9 s ago"
    );
    assert!(listing_due(&source, &world.status, at("2030-01-01T01:00:41Z")));
    // A reconcile without a listing (another object changed) still sees the window close.
    let closed = world.decide_at("2030-01-01T01:01:12Z", None);
    assert_eq!(started(&closed), ["Workflow/pipeline"]);
    assert_eq!(closed.status.pending_objects, Some(0));
}
