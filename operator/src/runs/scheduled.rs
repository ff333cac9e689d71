//! A Crawler's own schedule: each due tick is one more start request, its id derived from the
//! tick, so a tick starts one run however often it is decided. Pure (the clock is an argument).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{RunRecord, Schedule, StartedBy, StartedByKind};
use kglue_crds::protocol::ids::{schedule_request_id, schedule_tick};
use kglue_crds::protocol::requests::{StartBody, StartRequest};

use crate::schedule::{CronSchedule, ON_TIME};

/// For an object with its own schedule: the start request of the tick due now, if any, and the
/// next tick. The last tick handled is the newest scheduled run in the history (its request id
/// holds the tick), else the object's creation; a tick fires at most a minute late, so an operator
/// that was down does not make up for missed ticks.
pub fn scheduled_start<M>(
    schedule: &Schedule,
    runs: &[RunRecord<M>],
    created: Timestamp,
    now: Timestamp,
) -> (Option<StartRequest>, Option<Timestamp>) {
    let Ok(cron) = CronSchedule::parse(&schedule.cron, schedule.time_zone.as_deref()) else {
        return (None, None);
    };
    let to_chrono = |t: Timestamp| chrono::DateTime::from_timestamp(t.as_second(), 0).unwrap_or_default();
    let handled = runs
        .iter()
        .filter(|r| r.started_by.kind == StartedByKind::Schedule)
        .filter_map(|r| schedule_tick(r.request_id.as_deref()?))
        .max()
        .and_then(|seconds| Timestamp::from_second(seconds).ok())
        .unwrap_or(created);
    let late_allowed = chrono::Duration::from_std(ON_TIME).unwrap_or_default();
    let plan = cron.plan(to_chrono(handled), to_chrono(now), late_allowed);
    let next = plan.next.and_then(|t| Timestamp::from_second(t.timestamp()).ok());
    let due = plan
        .fire
        .and_then(|tick| Timestamp::from_second(tick.timestamp()).ok())
        .map(|tick| StartRequest {
            annotation: String::new(),
            id: schedule_request_id(tick.as_second()),
            body: Ok(StartBody {
                arguments: BTreeMap::new(),
                started_by: StartedBy {
                    kind: StartedByKind::Schedule,
                    name: None,
                },
            }),
        });
    (due, next)
}

#[cfg(test)]
mod tests {
    use kglue_crds::common::RunState;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("an RFC 3339 time")
    }

    fn scheduled_run(tick: &str) -> RunRecord<()> {
        RunRecord {
            id: "cr-1".into(),
            attempt: 0,
            request_id: Some(schedule_request_id(at(tick).as_second())),
            started_by: StartedBy {
                kind: StartedByKind::Schedule,
                name: None,
            },
            arguments: BTreeMap::new(),
            state: RunState::Succeeded,
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
        }
    }

    #[test]
    fn a_crawlers_schedule_starts_one_run_per_tick() {
        let hourly = Schedule {
            cron: "0 * * * *".into(),
            time_zone: None,
        };
        let created = at("2030-01-01T00:30:00Z");
        let (due, next) = scheduled_start::<()>(&hourly, &[], created, at("2030-01-01T00:59:00Z"));
        assert!(due.is_none());
        assert_eq!(next, Some(at("2030-01-01T01:00:00Z")));

        let (due, _) = scheduled_start::<()>(&hourly, &[], created, at("2030-01-01T01:00:03Z"));
        let due = due.expect("the 01:00 tick is due");
        assert_eq!(due.id, "schedule-1893459600");
        assert!(due.annotation.is_empty(), "no annotation to remove");
        assert_eq!(due.body.expect("a body").started_by.kind, StartedByKind::Schedule);

        // Recorded: the same tick does not start again.
        let runs = [scheduled_run("2030-01-01T01:00:00Z")];
        let (again, next) = scheduled_start(&hourly, &runs, created, at("2030-01-01T01:00:30Z"));
        assert!(again.is_none());
        assert_eq!(next, Some(at("2030-01-01T02:00:00Z")));

        // Down from 01:00 to 03:20: 02:00 and 03:00 are too late.
        let (late, _) = scheduled_start(&hourly, &runs, created, at("2030-01-01T03:20:00Z"));
        assert!(late.is_none());
    }
}
