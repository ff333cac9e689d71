//! When a Trigger fires, decided from what the operator observed: the schedule and the last tick
//! handled, the latest runs of the watched jobs and crawlers, a listing of the watched prefix, and
//! fire requests in annotations. Pure (the clock is an input), so every rule is unit-tested.
//!
//! Exactly once: each fire's request ids derive from what the Trigger's status held before the
//! fire (the tick, the runs that satisfied the predicate, the event cursor, the request id), so a
//! fire asked for again after an operator restart is the same request on every target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kglue_crds::common::{RunState, StartedBy, StartedByKind};
use kglue_crds::trigger::{
    ConcurrencyPolicy, EventSource, Logical, TriggerAction, TriggerFire, TriggerSpec, TriggerStatus, TriggerType,
};
use sha2::{Digest, Sha256};

use kglue_crds::protocol::requests::{Requests, StartBody};

use crate::schedule::{CronSchedule, ON_TIME};
use crate::starts::{Ask, Target, TargetState, request_id, run_id_on};
use crate::writes::Notice;

/// How many fires `status.fires` keeps.
pub const FIRE_HISTORY: usize = 20;
/// Objects modified up to this long before the newest one seen may still show up as new.
pub const EVENT_SAFETY_BAND: Duration = Duration::from_secs(60);
/// The most key hashes the event cursor keeps.
pub const MAX_RECENT_KEYS: usize = 20_000;
/// How often an Event trigger lists its prefix when `pollIntervalSeconds` is unset.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// An object found under an Event trigger's prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// Its key (or path).
    pub key: String,
    /// Its modification time.
    pub modified: Timestamp,
}

/// Everything a Trigger's decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The current time.
    pub now: Timestamp,
    /// The Trigger's name.
    pub name: &'a str,
    /// Its UID.
    pub uid: &'a str,
    /// Its creation time: runs and objects from before it do not fire it.
    pub created: Timestamp,
    /// Its spec.
    pub spec: &'a TriggerSpec,
    /// Its status as read.
    pub status: &'a TriggerStatus,
    /// Fire requests in its annotations.
    pub requests: &'a Requests,
    /// The actions' targets and the watched jobs and crawlers that exist.
    pub targets: &'a BTreeMap<Target, TargetState>,
    /// Event triggers: the objects under the prefix, or why they could not be listed.
    pub listing: Option<Result<Vec<Listed>, String>>,
    /// Why the Trigger cannot fire (it is Stalled), if so.
    pub blocked: Option<&'a str>,
}

/// What to do.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Start and stop requests to put on targets.
    pub asks: Vec<Ask>,
    /// The new status (the fields this module owns).
    pub status: TriggerStatus,
    /// Annotations (fire requests) to remove.
    pub handled: Vec<String>,
    /// Events to publish.
    pub events: Vec<Notice>,
    /// When to look again without a watch event.
    pub requeue_after: Option<Duration>,
    /// How many times the trigger fired in this decision.
    pub fired: usize,
}

/// How often an Event trigger lists its prefix.
pub fn poll_interval(source: &EventSource) -> Duration {
    source
        .poll_interval_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_POLL)
}

/// Whether an Event trigger's prefix is due to be listed at `now`: never listed, or listed a poll
/// interval ago (a second early is close enough: the requeue that brings this reconcile is timed
/// to the interval). Reconciles that other changes cause in between do not list.
pub fn listing_due(source: &EventSource, status: &TriggerStatus, now: Timestamp) -> bool {
    let listed_at = status.event_cursor.as_ref().and_then(|c| c.listed_at.as_ref());
    listed_at.is_none_or(|t| std_of(now.duration_since(t.0)) + Duration::from_secs(1) >= poll_interval(source))
}

/// The target an action names.
pub fn action_target(action: &TriggerAction) -> Option<Target> {
    match (&action.job, &action.crawler, &action.workflow) {
        (Some(job), None, None) => Some(Target::job(job)),
        (None, Some(crawler), None) => Some(Target::crawler(crawler)),
        (None, None, Some(workflow)) => Some(Target::workflow(workflow)),
        _ => None,
    }
}

/// Every object a Trigger starts or watches.
pub fn targets(spec: &TriggerSpec) -> Vec<Target> {
    let mut targets: Vec<Target> = spec.actions.iter().filter_map(action_target).collect();
    if let Some(predicate) = &spec.predicate {
        for condition in &predicate.conditions {
            match (&condition.job, &condition.crawler) {
                (Some(job), _) => targets.push(Target::job(job)),
                (None, Some(crawler)) => targets.push(Target::crawler(crawler)),
                (None, None) => {}
            }
        }
    }
    targets
}

fn chrono_of(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).unwrap_or(0)).unwrap_or_default()
}

fn jiff_of(t: DateTime<Utc>) -> Timestamp {
    Timestamp::new(t.timestamp(), i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn std_of(d: SignedDuration) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64().max(0.0))
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A short hash of an object key for the event cursor.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Decider<'a> {
    observed: &'a Observed<'a>,
    decision: Decision,
}

impl Decider<'_> {
    fn note(&mut self, warning: bool, reason: &'static str, note: String) {
        self.decision.events.push(Notice { warning, reason, note });
    }

    fn requeue(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(100));
        self.decision.requeue_after = Some(self.decision.requeue_after.map_or(after, |d| d.min(after)));
    }

    /// Starts every action, with `extra` arguments on top of each action's own.
    fn fire(&mut self, key: &str, reason: String, extra: &BTreeMap<String, String>) {
        let o = self.observed;
        let mut started = Vec::new();
        for (index, action) in o.spec.actions.iter().enumerate() {
            let Some(target) = action_target(action) else {
                continue;
            };
            let request_id = request_id("t-", o.uid, &format!("{key}#{index}"));
            match o.targets.get(&target) {
                Some(state) => started.push(format!("{target}/{}", run_id_on(&target, state, &request_id))),
                None => started.push(target.to_string()),
            }
            let mut arguments = action.arguments.clone();
            arguments.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.decision.asks.push(Ask::Start {
                target,
                request_id,
                body: StartBody {
                    arguments,
                    started_by: StartedBy {
                        kind: StartedByKind::Trigger,
                        name: Some(o.name.to_string()),
                    },
                },
            });
        }
        let note = format!("fired ({reason}); started {}", started.join(", "));
        let status = &mut self.decision.status;
        status.fires.insert(
            0,
            TriggerFire {
                time: Time(o.now),
                reason,
                started,
            },
        );
        status.fires.truncate(FIRE_HISTORY);
        status.last_fired = Some(Time(o.now));
        self.decision.fired += 1;
        self.note(false, "TriggerFired", note);
    }

    /// Runs this trigger started that are still active, per target.
    fn active_runs(&self) -> Vec<(Target, String)> {
        let o = self.observed;
        let mut active = Vec::new();
        let targets: BTreeSet<Target> = o.spec.actions.iter().filter_map(action_target).collect();
        for target in targets {
            let Some(state) = o.targets.get(&target) else {
                continue;
            };
            for run in &state.runs {
                let ours =
                    run.started_by.kind == StartedByKind::Trigger && run.started_by.name.as_deref() == Some(o.name);
                if ours && !run.state.is_final() {
                    active.push((target.clone(), run.id.clone()));
                }
            }
        }
        active
    }

    fn requests(&mut self) {
        let o = self.observed;
        for request in &o.requests.starts {
            self.decision.handled.push(request.annotation.clone());
            let refused = match (&request.body, o.spec.suspend, o.blocked) {
                (Err(error), _, _) => Some(error.clone()),
                (_, true, _) => Some("the trigger is suspended".to_string()),
                (_, _, Some(blocked)) => Some(format!("the trigger cannot fire: {blocked}")),
                _ => None,
            };
            match (refused, &request.body) {
                (Some(why), _) => self.note(true, "FireRefused", format!("{}: not fired: {why}", request.annotation)),
                (None, Ok(body)) => {
                    // Already fired for this request (the annotation outlived a restart): the
                    // same request ids again, which the targets have taken in once.
                    let reason = format!("requested ({})", request.id);
                    self.fire(&format!("request/{}", request.id), reason, &body.arguments);
                }
                (None, Err(_)) => {}
            }
        }
    }

    fn scheduled(&mut self) {
        let o = self.observed;
        let Some(schedule) = &o.spec.schedule else {
            return;
        };
        let cron = match CronSchedule::parse(&schedule.schedule.cron, schedule.schedule.time_zone.as_deref()) {
            Ok(cron) => cron,
            // Reported as Stalled (InvalidSchedule) by the validation.
            Err(_) => return,
        };
        let now = chrono_of(o.now);
        if o.spec.suspend || o.blocked.is_some() {
            // Ticks are not handled while the trigger cannot fire: once it can again, the latest
            // one fires if it is within the starting deadline.
            self.decision.status.next_fire_time = None;
            return;
        }
        let handled = o
            .status
            .last_schedule_time
            .as_ref()
            .map(|t| chrono_of(t.0))
            .unwrap_or_else(|| chrono_of(o.created));
        let late_allowed = schedule
            .starting_deadline_seconds
            .map(chrono::Duration::seconds)
            .unwrap_or_else(|| chrono::Duration::from_std(ON_TIME).unwrap_or_default());
        let plan = cron.plan(handled, now, late_allowed);
        self.decision.status.last_schedule_time = Some(Time(jiff_of(plan.handled)));
        self.decision.status.next_fire_time = plan.next.map(|t| Time(jiff_of(t)));
        if let Some(next) = plan.next {
            self.requeue((next - now).to_std().unwrap_or_default());
        }
        if plan.missed > 0 {
            let count = if plan.missed >= crate::schedule::MISSED_COUNT_LIMIT {
                format!("{}+", plan.missed)
            } else {
                plan.missed.to_string()
            };
            let deadline = match schedule.starting_deadline_seconds {
                Some(seconds) => format!("startingDeadlineSeconds is {seconds}"),
                None => "startingDeadlineSeconds is unset: a tick fires at most a minute late".into(),
            };
            self.note(
                true,
                "TicksMissed",
                format!("{count} tick(s) passed without firing ({deadline})"),
            );
        }
        let Some(tick) = plan.fire else {
            return;
        };
        let tick_text = tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let active = self.active_runs();
        if !active.is_empty() {
            let list = active
                .iter()
                .map(|(t, run)| format!("{t}/{run}"))
                .collect::<Vec<_>>()
                .join(", ");
            match schedule.concurrency_policy {
                ConcurrencyPolicy::Allow => {}
                ConcurrencyPolicy::Forbid => {
                    self.note(
                        false,
                        "TickSkipped",
                        format!("tick {tick_text} skipped: concurrencyPolicy Forbid and runs are active: {list}"),
                    );
                    return;
                }
                ConcurrencyPolicy::Replace => {
                    for (target, run_id) in active {
                        self.decision.asks.push(Ask::Stop { target, run_id });
                    }
                    self.note(
                        false,
                        "RunsReplaced",
                        format!("tick {tick_text}: concurrencyPolicy Replace stops {list}"),
                    );
                }
            }
        }
        self.fire(
            &format!("schedule/{tick_text}"),
            format!("schedule tick {tick_text}"),
            &BTreeMap::new(),
        );
    }

    fn conditional(&mut self) {
        let o = self.observed;
        let Some(predicate) = &o.spec.predicate else {
            return;
        };
        let consumed: BTreeSet<&str> = o.status.last_satisfied_by.iter().map(String::as_str).collect();
        let mut holding: Vec<(String, RunState)> = Vec::new();
        let mut latest_keys: BTreeSet<String> = BTreeSet::new();
        let mut all_hold = true;
        for condition in &predicate.conditions {
            let target = match (&condition.job, &condition.crawler) {
                (Some(job), _) => Target::job(job),
                (None, Some(crawler)) => Target::crawler(crawler),
                (None, None) => continue,
            };
            let latest = o.targets.get(&target).and_then(TargetState::latest);
            let Some(run) = latest else {
                all_hold = false;
                continue;
            };
            let key = format!("{target}/{}", run.id);
            latest_keys.insert(key.clone());
            // A run that ended before the trigger existed is history, not an event.
            let ended_after_creation = run.completed_at.as_ref().is_some_and(|t| t.0 >= o.created);
            let holds = run.state.is_final()
                && run.state == condition.state
                && ended_after_creation
                && !consumed.contains(key.as_str());
            if holds {
                if !holding.iter().any(|(k, _)| *k == key) {
                    holding.push((key, run.state));
                }
            } else {
                all_hold = false;
            }
        }
        let satisfied = match predicate.logical {
            Logical::And => all_hold && !holding.is_empty(),
            Logical::Any => !holding.is_empty(),
        };
        if !satisfied {
            return;
        }
        // A run is used once: keep the used runs that are still the latest, add these.
        let mut used: BTreeSet<String> = o
            .status
            .last_satisfied_by
            .iter()
            .filter(|k| latest_keys.contains(*k))
            .cloned()
            .collect();
        used.extend(holding.iter().map(|(k, _)| k.clone()));
        self.decision.status.last_satisfied_by = used.into_iter().collect();
        let runs = holding
            .iter()
            .map(|(key, state)| format!("{key} {state:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        if o.spec.suspend || o.blocked.is_some() {
            self.note(
                false,
                "FireSkipped",
                format!("runs ended ({runs}) but the trigger is suspended or cannot fire; they will not fire it later"),
            );
            return;
        }
        let key = holding.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(",");
        self.fire(
            &format!("conditional/{key}"),
            format!("runs ended: {runs}"),
            &BTreeMap::new(),
        );
    }

    fn event(&mut self) {
        let o = self.observed;
        let Some(source) = &o.spec.event else {
            return;
        };
        let poll = poll_interval(source);
        let before = o.status.event_cursor.clone().unwrap_or_default();
        let pending_before = o.status.pending_objects.unwrap_or(0);
        let mut cursor = before.clone();
        let mut pending = i64::from(pending_before);
        match &o.listing {
            // Not listed this time (the poll interval has not passed): the window may still close.
            None => {}
            Some(Err(error)) => {
                if cursor.error.as_deref() != Some(error) {
                    self.note(
                        true,
                        "ListingFailed",
                        format!("listing {} failed: {error}", source.location),
                    );
                }
                cursor.error = Some(error.clone());
                cursor.listed_at = Some(Time(o.now));
            }
            Some(Ok(objects)) => {
                cursor.error = None;
                cursor.listed_at = Some(Time(o.now));
                let band = signed(EVENT_SAFETY_BAND);
                let watermark = before.modified_after.as_ref().map(|t| t.0).unwrap_or(o.created);
                let recent: BTreeSet<&str> = before.recent_keys.iter().map(String::as_str).collect();
                let mut new_watermark = watermark;
                let mut new_objects = 0usize;
                for object in objects {
                    let is_new = object.modified > watermark
                        || (object.modified > watermark - band && !recent.contains(key_hash(&object.key).as_str()));
                    if is_new {
                        new_objects += 1;
                        new_watermark = new_watermark.max(object.modified);
                    }
                }
                let mut recent_keys: Vec<(Timestamp, String)> = objects
                    .iter()
                    .filter(|object| object.modified > new_watermark - band)
                    .map(|object| (object.modified, key_hash(&object.key)))
                    .collect();
                recent_keys.sort();
                recent_keys.reverse();
                recent_keys.truncate(MAX_RECENT_KEYS);
                let mut hashes: Vec<String> = recent_keys.into_iter().map(|(_, h)| h).collect();
                hashes.sort();
                hashes.dedup();
                cursor.recent_keys = hashes;
                cursor.modified_after = Some(Time(new_watermark));
                if new_objects > 0 {
                    if o.spec.suspend {
                        self.note(
                            false,
                            "ObjectsPassedOver",
                            format!("{new_objects} new object(s) under {} while suspended", source.location),
                        );
                    } else {
                        pending += i64::try_from(new_objects).unwrap_or(i64::MAX);
                        cursor.pending_since.get_or_insert(Time(o.now));
                    }
                }
            }
        }
        let listed_ago = cursor
            .listed_at
            .as_ref()
            .map(|t| std_of(o.now.duration_since(t.0)))
            .unwrap_or_default();
        self.requeue(poll.saturating_sub(listed_ago));
        let batch_full = pending >= i64::from(source.batch_size);
        let window = Duration::from_secs(u64::try_from(source.batch_window_seconds).unwrap_or(900));
        let waited = cursor
            .pending_since
            .as_ref()
            .map(|since| std_of(o.now.duration_since(since.0)))
            .unwrap_or_default();
        let fire = pending > 0 && (batch_full || waited >= window) && o.blocked.is_none() && !o.spec.suspend;
        if fire {
            // The key is the cursor as status held it, so a fire repeated after a restart is the
            // same request even if more objects landed meanwhile.
            let key = format!(
                "event/{}/{}/{pending_before}",
                before.modified_after.map(|t| t.0.to_string()).unwrap_or_default(),
                before.pending_since.map(|t| t.0.to_string()).unwrap_or_default(),
            );
            let why = if batch_full {
                "batch size reached"
            } else {
                "batch window passed"
            };
            self.fire(
                &key,
                format!("{pending} new object(s) under {} ({why})", source.location),
                &BTreeMap::new(),
            );
            pending = 0;
            cursor.pending_since = None;
        } else if pending > 0 {
            self.requeue(window.saturating_sub(waited));
        }
        self.decision.status.pending_objects = Some(i32::try_from(pending).unwrap_or(i32::MAX));
        self.decision.status.event_cursor = Some(cursor);
    }
}

/// Decides. Pure.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut status = observed.status.clone();
    status.observed = Default::default();
    let mut decider = Decider {
        observed,
        decision: Decision {
            status,
            ..Decision::default()
        },
    };
    decider.requests();
    match observed.spec.type_ {
        TriggerType::Scheduled => decider.scheduled(),
        TriggerType::Conditional => decider.conditional(),
        TriggerType::Event => decider.event(),
        TriggerType::OnDemand => {}
    }
    decider.decision
}

#[cfg(test)]
#[path = "decide/tests.rs"]
mod tests;
