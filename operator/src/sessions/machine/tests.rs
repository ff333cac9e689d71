//! The Session state machine, step by step: each test plays the operator's part (the decision's
//! status written, the pod created or deleted) and the pod's (it serves, reports activity, dies).

use kglue_crds::session::SessionActivity;

use super::*;

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + minutes * 60).expect("valid")
}

fn text_at(minutes: i64) -> String {
    at(minutes).to_string()
}

/// A Session, its pod and Service, and the clock.
struct World {
    spec: SessionSpec,
    generation: i64,
    status: SessionStatus,
    pod: Option<PodView>,
    service: ServiceSeen,
    hash: String,
    blocked: Option<(&'static str, &'static str)>,
    now: Timestamp,
}

impl World {
    fn new() -> Self {
        World {
            spec: serde_json::from_value(json!({
                "idleTimeoutMinutes": 60,
                "maxDurationMinutes": 240,
                "auth": {"passwordSecretRef": {"name": "login"}}
            }))
            .expect("a spec"),
            generation: 1,
            status: SessionStatus::default(),
            pod: None,
            service: ServiceSeen::Absent,
            hash: "h1".into(),
            blocked: None,
            now: at(0),
        }
    }

    fn decide(&self) -> Decision {
        decide(&Observed {
            name: "adhoc",
            namespace: "lake",
            generation: Some(self.generation),
            spec: &self.spec,
            status: &self.status,
            desired_hash: &self.hash,
            pod: self.pod.as_ref(),
            service: self.service,
            blocked: self.blocked,
            now: self.now,
        })
    }

    /// Decides and carries the decision out as the operator does; the pod's activity stays.
    fn step(&mut self) -> Decision {
        let decision = self.decide();
        let written = status(&decision, Some(self.generation), &self.status, self.now);
        let activity = self.status.activity.take();
        self.status = serde_json::from_value(written).expect("the status reads as SessionStatus");
        self.status.activity = activity;
        if decision.create_pod {
            self.pod = Some(PodView {
                name: "adhoc-session".into(),
                owned: true,
                managed: true,
                phase: "Pending".into(),
                created: Some(self.now),
                spec_hash: Some(self.hash.clone()),
                deleting: false,
                detail: None,
            });
        }
        if decision.delete_pod {
            self.pod = None;
        }
        if decision.apply_service {
            self.service = ServiceSeen::Current;
        }
        if decision.delete_service {
            self.service = ServiceSeen::Absent;
        }
        decision
    }

    /// The pod runs and reports that it serves (as `kglue serve` does on start).
    fn serve(&mut self) {
        let pod = self.pod.as_mut().expect("a pod");
        pod.phase = "Running".into();
        self.status.activity = Some(SessionActivity {
            serving_since: Some(self.now.to_string()),
            pod: Some(pod.name.clone()),
            ..SessionActivity::default()
        });
    }

    fn query(&mut self) {
        let activity = self.status.activity.as_mut().expect("serving");
        activity.last_activity_time = Some(self.now.to_string());
        activity.queries += 1;
    }

    fn condition(&self, type_: &str) -> Option<(String, String)> {
        self.status
            .observed
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
    }

    fn ready(&self) -> (String, String) {
        self.condition("Ready").expect("a Ready condition")
    }

    /// Started and serving since minute 0.
    fn serving() -> Self {
        let mut world = World::new();
        world.step();
        world.serve();
        let decision = world.step();
        assert_eq!(decision.state, SessionState::Ready);
        world
    }
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

#[test]
fn a_new_session_gets_its_pod_and_service_and_is_starting() {
    let mut world = World::new();
    let decision = world.step();
    assert!(decision.create_pod && decision.apply_service);
    assert!(!decision.delete_pod && !decision.delete_service);
    assert_eq!(world.status.state, Some(SessionState::Starting));
    assert_eq!(world.status.observed.observed_generation, Some(1));
    assert_eq!(world.ready(), pair("False", "Starting"));
    assert_eq!(world.condition("Reconciling"), Some(pair("True", "PodStarting")));
    assert_eq!(decision.notices[0].reason, "SessionStarting");
    // The pod is pending: nothing more to do until it changes.
    let again = world.step();
    assert!(!again.create_pod && !again.apply_service && !again.delete_pod);
    assert_eq!(world.status.state, Some(SessionState::Starting));
    assert!(world.status.endpoint.is_none());
}

#[test]
fn a_session_is_ready_once_its_own_pod_reports_serving() {
    let mut world = World::new();
    world.step();
    world.now = at(1);
    world.pod.as_mut().expect("a pod").phase = "Running".into();
    world.step();
    assert_eq!(
        world.status.state,
        Some(SessionState::Starting),
        "running is not serving yet"
    );

    // An activity report from another pod of the same name (the one this pod replaced) does not
    // count: it began serving before this pod was created.
    world.status.activity = Some(SessionActivity {
        serving_since: Some(text_at(-30)),
        pod: Some("adhoc-session".into()),
        ..SessionActivity::default()
    });
    world.step();
    assert_eq!(world.status.state, Some(SessionState::Starting));

    world.serve();
    let decision = world.step();
    assert_eq!(world.status.state, Some(SessionState::Ready));
    assert_eq!(world.ready(), pair("True", "Serving"));
    assert_eq!(world.condition("Reconciling"), None, "no longer reconciling");
    assert_eq!(world.status.started_at.as_deref(), Some(text_at(1).as_str()));
    assert_eq!(world.status.endpoint.as_deref(), Some("adhoc-session.lake.svc:5432"));
    assert_eq!(decision.notices[0].reason, "SessionReady");
    assert_eq!(
        decision.requeue_after,
        Some(Duration::from_secs(60 * 60 + 1)),
        "the idle deadline, an hour after the start"
    );
    assert!(world.step().notices.is_empty(), "SessionReady once");
}

#[test]
fn the_idle_timeout_counts_from_the_last_query_or_else_from_the_start() {
    // No query at all: an hour after the start.
    let mut quiet = World::serving();
    quiet.now = at(59);
    assert_eq!(quiet.step().state, SessionState::Ready);
    quiet.now = at(60);
    let decision = quiet.step();
    assert_eq!(decision.state, SessionState::IdleTimeout);
    assert!(decision.delete_pod && decision.delete_service);
    assert_eq!(quiet.ready(), pair("False", "IdleTimeout"));
    assert_eq!(quiet.condition("Stalled"), None, "an idle timeout is no fault");
    let message = quiet.status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("no query for 60 minutes (idleTimeoutMinutes); the pod was removed"),
        "{message}"
    );
    assert_eq!(quiet.status.ended_at.as_deref(), Some(text_at(60).as_str()));
    assert_eq!(quiet.status.started_at.as_deref(), Some(text_at(0).as_str()));
    assert!(quiet.status.endpoint.is_none(), "no endpoint once ended");
    assert_eq!(decision.notices[0].reason, "SessionEnded");

    // A query at minute 30: an hour after it.
    let mut busy = World::serving();
    busy.now = at(30);
    busy.query();
    busy.now = at(61);
    let decision = busy.step();
    assert_eq!(decision.state, SessionState::Ready);
    assert_eq!(decision.requeue_after, Some(Duration::from_secs(29 * 60 + 1)));
    busy.now = at(90);
    assert_eq!(busy.step().state, SessionState::IdleTimeout);

    // A last query older than the pod's start (an earlier pod's) counts from the start.
    let mut stale = World::serving();
    stale.status.activity.as_mut().expect("serving").last_activity_time = Some(text_at(-50));
    stale.now = at(30);
    assert_eq!(stale.step().state, SessionState::Ready);
    stale.now = at(60);
    assert_eq!(stale.step().state, SessionState::IdleTimeout);
}

#[test]
fn a_busy_session_ends_at_its_maximum_duration() {
    let mut world = World::serving();
    for minute in (30..240).step_by(30) {
        world.now = at(minute);
        world.query();
        assert_eq!(world.step().state, SessionState::Ready, "minute {minute}");
    }
    world.now = at(240);
    let decision = world.step();
    assert_eq!(decision.state, SessionState::MaxDuration);
    assert!(decision.delete_pod && decision.delete_service);
    assert_eq!(world.ready(), pair("False", "MaxDuration"));
    let message = world.status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("the session reached its maximum duration of 240 minutes (maxDurationMinutes)"),
        "{message}"
    );
    // Without a maximum, only the idle timeout ends it.
    let mut endless = World::serving();
    endless.spec.max_duration_minutes = None;
    for minute in (30..600).step_by(30) {
        endless.now = at(minute);
        endless.query();
        assert_eq!(endless.step().state, SessionState::Ready);
    }
}

#[test]
fn a_pod_that_fails_fails_the_session_and_stays_for_its_log() {
    let mut world = World::serving();
    world.now = at(5);
    let pod = world.pod.as_mut().expect("a pod");
    pod.phase = "Failed".into();
    pod.detail = Some("exit code 137 (OOMKilled)".into());
    let decision = world.step();
    assert_eq!(decision.state, SessionState::Failed);
    assert!(!decision.delete_pod, "a failed pod stays for kubectl logs");
    assert!(decision.delete_service);
    assert_eq!(world.ready(), pair("False", "Failed"));
    assert_eq!(world.condition("Stalled"), Some(pair("True", "Failed")));
    let message = world.status.message.clone().unwrap_or_default();
    assert!(message.contains("exit code 137 (OOMKilled)"), "{message}");
    assert!(decision.notices[0].warning);
    // And stays Failed, its pod kept.
    world.now = at(6);
    let again = world.step();
    assert_eq!(again.state, SessionState::Failed);
    assert!(!again.delete_pod && !again.create_pod);
    assert_eq!(world.status.ended_at.as_deref(), Some(text_at(5).as_str()));
}

#[test]
fn a_pod_deleted_by_someone_else_fails_the_session() {
    let mut ready = World::serving();
    ready.pod = None;
    let decision = ready.step();
    assert_eq!(decision.state, SessionState::Failed);
    assert!(!decision.create_pod);
    assert!(
        ready
            .status
            .message
            .clone()
            .unwrap_or_default()
            .contains("was deleted by something other than the operator")
    );

    let mut starting = World::new();
    starting.step();
    starting.pod.as_mut().expect("a pod").deleting = true;
    assert_eq!(starting.step().state, SessionState::Failed);

    let mut gone = World::new();
    gone.step();
    gone.pod = None;
    assert_eq!(gone.step().state, SessionState::Failed);
}

#[test]
fn an_ended_session_stays_ended_until_its_spec_changes() {
    let mut world = World::serving();
    world.now = at(60);
    world.step();
    assert_eq!(world.status.state, Some(SessionState::IdleTimeout));
    world.now = at(100);
    let again = world.step();
    assert_eq!(again.state, SessionState::IdleTimeout);
    assert!(!again.create_pod && !again.apply_service);
    assert_eq!(again.requeue_after, None);
    assert_eq!(world.status.ended_at.as_deref(), Some(text_at(60).as_str()));

    // A new generation: a new pod, the last run's times gone.
    world.generation = 2;
    let decision = world.step();
    assert!(decision.create_pod && decision.apply_service);
    assert_eq!(world.status.state, Some(SessionState::Starting));
    assert_eq!(world.status.observed.observed_generation, Some(2));
    assert!(world.status.started_at.is_none() && world.status.ended_at.is_none());
    world.now = at(101);
    world.serve();
    world.step();
    assert_eq!(world.status.state, Some(SessionState::Ready));
    assert_eq!(world.status.started_at.as_deref(), Some(text_at(101).as_str()));
}

#[test]
fn a_failed_session_restarts_after_its_kept_pod_is_removed() {
    let mut world = World::serving();
    world.pod.as_mut().expect("a pod").phase = "Failed".into();
    world.step();
    assert_eq!(world.status.state, Some(SessionState::Failed));
    world.generation = 2;
    let decision = world.step();
    assert!(decision.delete_pod && !decision.create_pod);
    assert_eq!(world.status.state, Some(SessionState::Starting));
    assert_eq!(world.condition("Reconciling"), Some(pair("True", "Replacing")));
    assert_eq!(world.condition("Stalled"), None);
    let decision = world.step();
    assert!(decision.create_pod, "the old pod gone, a new one");
    assert_eq!(world.condition("Reconciling"), Some(pair("True", "PodStarting")));
}

#[test]
fn a_spec_change_that_shapes_the_pod_rolls_it_and_others_do_not() {
    let mut world = World::serving();
    // The idle timeout is not in the pod: the same pod serves on, to the new deadline.
    world.generation = 2;
    world.spec.idle_timeout_minutes = 120;
    world.now = at(70);
    let decision = world.step();
    assert_eq!(decision.state, SessionState::Ready);
    assert!(!decision.delete_pod);
    assert_eq!(world.status.observed.observed_generation, Some(2));

    // A new port changes the pod's hash: deleted, then a new one, not a failure.
    world.generation = 3;
    world.spec.port = 15432;
    world.hash = "h2".into();
    world.service = ServiceSeen::Outdated;
    let decision = world.step();
    assert!(decision.delete_pod && decision.apply_service);
    assert_eq!(decision.state, SessionState::Starting);
    assert_eq!(world.condition("Reconciling"), Some(pair("True", "Replacing")));
    assert!(world.status.started_at.is_none());
    let decision = world.step();
    assert!(decision.create_pod);
    assert_eq!(world.pod.as_ref().and_then(|p| p.spec_hash.as_deref()), Some("h2"));
    world.now = at(71);
    world.serve();
    world.step();
    assert_eq!(world.status.state, Some(SessionState::Ready));
    assert_eq!(world.status.endpoint.as_deref(), Some("adhoc-session.lake.svc:15432"));
}

#[test]
fn a_changed_or_missing_service_is_applied_again_and_anothers_never() {
    let mut world = World::serving();
    world.service = ServiceSeen::Outdated;
    assert!(world.step().apply_service);
    world.service = ServiceSeen::Absent;
    assert!(world.step().apply_service);
    assert!(!world.step().apply_service);
    world.service = ServiceSeen::Foreign;
    let decision = world.step();
    assert!(!decision.apply_service && !decision.delete_service);
    assert_eq!(world.condition("Stalled"), Some(pair("True", "ServiceNameTaken")));
    world.now = at(60);
    let decision = world.step();
    assert_eq!(decision.state, SessionState::IdleTimeout);
    assert!(!decision.delete_service, "not the Session's to delete");
}

#[test]
fn a_blocked_session_creates_nothing_and_says_why() {
    let mut world = World::new();
    world.blocked = Some(("ServiceAccountNotFound", "spec.serviceAccountName names ..."));
    let decision = world.step();
    assert!(!decision.create_pod);
    assert_eq!(world.status.state, Some(SessionState::Starting));
    assert_eq!(world.ready(), pair("False", "ServiceAccountNotFound"));
    assert_eq!(world.condition("Stalled"), Some(pair("True", "ServiceAccountNotFound")));
    world.blocked = None;
    let decision = world.step();
    assert!(decision.create_pod, "created once the ServiceAccount exists");
    assert_eq!(world.condition("Stalled"), None);
}

#[test]
fn a_pod_the_api_server_refuses_fails_the_session() {
    let world = World::new();
    let decision = world.decide().refused(
        "pods \"adhoc-session\" is forbidden: exceeded quota",
        at(0),
        ServiceSeen::Absent,
    );
    assert_eq!(decision.state, SessionState::Failed);
    assert!(decision.delete_service);
    assert!(decision.message.unwrap_or_default().contains("exceeded quota"));
}

#[test]
fn a_pod_of_another_owner_is_never_touched() {
    let mut world = World::new();
    world.pod = Some(PodView {
        name: "adhoc-session".into(),
        phase: "Running".into(),
        ..PodView::default()
    });
    let decision = world.step();
    assert!(!decision.delete_pod && !decision.create_pod);
    assert_eq!(world.condition("Stalled"), Some(pair("True", "PodNameTaken")));
}

#[test]
fn the_status_holds_only_what_the_operator_owns_and_keeps_transition_times() {
    let mut world = World::serving();
    let ready_since = world
        .status
        .observed
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.last_transition_time.clone());
    world.now = at(10);
    let decision = world.decide();
    let written = status(&decision, Some(1), &world.status, world.now);
    assert!(written.get("activity").is_none(), "the pod's field is never written");
    assert_eq!(
        written["conditions"][0]["lastTransitionTime"],
        json!(ready_since.expect("Ready"))
    );
    let current = serde_json::to_value(&world.status).expect("serialises");
    assert!(holds(Some(&current), &written), "nothing changed: no write");
    world.now = at(60);
    let ended = status(&world.decide(), Some(1), &world.status, world.now);
    assert!(ended.get("endpoint").is_none());
    assert!(!holds(Some(&current), &ended));
}
