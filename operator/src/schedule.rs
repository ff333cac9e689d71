//! Cron expressions as kglue accepts them: the 5-field form of Kubernetes CronJobs
//! (`0 3 * * *`, with `@daily`-style nicknames) and Glue's `cron(…)` form with 6 fields
//! (minutes, hours, day of month, month, day of week, year; `?` allowed; days of week 1–7 from
//! Sunday, as in Quartz), read in an IANA time zone. [`CronSchedule::plan`] decides which tick a
//! scheduled trigger fires now, from the last tick it handled and a starting deadline; it is pure
//! (the clock is an argument), so DST changes and missed ticks are unit-tested.
//!
//! Daylight saving time follows croner (Vixie cron's rules): a fixed-time tick that falls in the
//! spring-forward gap fires right after the gap, and one in the repeated autumn hour fires once.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    time_zone: chrono_tz::Tz,
}

/// The time zone used when a schedule names none.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// How late a tick may fire when no starting deadline says otherwise: an operator that was down
/// does not make up for ticks it missed by more.
pub const ON_TIME: std::time::Duration = std::time::Duration::from_secs(60);

impl CronSchedule {
    /// Parses `expression` in `time_zone` (default UTC). The error says what to fix.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, String> {
        let zone_name = time_zone.unwrap_or(DEFAULT_TIME_ZONE);
        let time_zone: chrono_tz::Tz = zone_name.parse().map_err(|_| {
            format!("time zone {zone_name:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Berlin\")")
        })?;
        let trimmed = expression.trim();
        let cron = match glue_body(trimmed) {
            Some(body) => {
                let fields = body.split_whitespace().count();
                if fields != 6 {
                    return Err(format!(
                        "cron expression {expression:?} has {fields} fields inside cron(…); Glue's form has 6: \
                         minutes hours day-of-month month day-of-week year, e.g. cron(0 3 * * ? *)"
                    ));
                }
                // croner reads a year only after a seconds field; Glue has none, so pin seconds to 0.
                CronParser::builder()
                    .seconds(Seconds::Required)
                    .year(Year::Required)
                    .alternative_weekdays(true)
                    .build()
                    .parse(&format!("0 {body}"))
            }
            None => {
                let fields = trimmed.split_whitespace().count();
                if fields != 5 && !trimmed.starts_with('@') {
                    return Err(format!(
                        "cron expression {expression:?} has {fields} fields; use 5 (minute hour day-of-month \
                         month day-of-week, e.g. \"0 3 * * *\") or Glue's form cron(0 3 * * ? *)"
                    ));
                }
                CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build()
                    .parse(trimmed)
            }
        }
        .map_err(|error| format!("cron expression {expression:?} does not parse: {error}"))?;
        let schedule = CronSchedule { cron, time_zone };
        // An expression bounded to past years parses but never fires; that is a mistake too.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!("cron expression {expression:?} never fires again"));
        }
        Ok(schedule)
    }

    /// What to do at `now` when every tick up to `handled` was fired or skipped: the latest tick
    /// since then fires if it is at most `late_allowed` old; older ticks are missed (the operator
    /// was down or the trigger suspended). Only one tick fires however many were missed, as with
    /// CronJobs.
    pub fn plan(&self, handled: DateTime<Utc>, now: DateTime<Utc>, late_allowed: chrono::Duration) -> TickPlan {
        let latest = self
            .cron
            .find_previous_occurrence(&now.with_timezone(&self.time_zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t > handled);
        let next = self.next_after(now);
        let Some(latest) = latest else {
            return TickPlan {
                fire: None,
                missed: 0,
                handled,
                next,
            };
        };
        let on_time = now - latest <= late_allowed;
        // Counting stops early: the figure is for a message, and a long outage of a per-minute
        // schedule would otherwise walk thousands of ticks.
        let mut missed = 0;
        let mut tick = handled;
        while missed < MISSED_COUNT_LIMIT {
            match self.next_after(tick) {
                Some(t) if t < latest => {
                    missed += 1;
                    tick = t;
                }
                _ => break,
            }
        }
        if !on_time {
            missed += 1;
        }
        TickPlan {
            fire: on_time.then_some(latest),
            missed,
            handled: latest,
            next,
        }
    }

    /// The first time strictly after `after` that the schedule fires, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

/// Missed ticks are counted up to this many.
pub const MISSED_COUNT_LIMIT: usize = 1000;

/// What a schedule does at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickPlan {
    /// The tick to fire now, if any.
    pub fire: Option<DateTime<Utc>>,
    /// Ticks since the last handled one that are too late to fire (at most
    /// [`MISSED_COUNT_LIMIT`]).
    pub missed: usize,
    /// The new "every tick up to here was handled" mark.
    pub handled: DateTime<Utc>,
    /// The next tick after now.
    pub next: Option<DateTime<Utc>>,
}

/// The inside of Glue's `cron(…)`, if the expression has that form.
fn glue_body(expression: &str) -> Option<&str> {
    let lower = expression.get(..5)?;
    if !lower.eq_ignore_ascii_case("cron(") {
        return None;
    }
    expression[5..].strip_suffix(')')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("a valid time")
    }

    #[test]
    fn five_field_expressions_parse_and_fire() {
        let schedule = CronSchedule::parse("0 3 * * *", None).expect("parses");
        assert_eq!(schedule.next_after(at(2030, 1, 1, 2, 0)), Some(at(2030, 1, 1, 3, 0)));
        assert!(CronSchedule::parse("*/5 * * * 1-5", None).is_ok());
        assert!(CronSchedule::parse("@daily", None).is_ok());
    }

    #[test]
    fn glue_form_is_accepted_with_quartz_days_and_a_year() {
        let schedule = CronSchedule::parse("cron(0 3 * * ? *)", None).expect("parses");
        assert_eq!(schedule.next_after(at(2030, 1, 1, 4, 0)), Some(at(2030, 1, 2, 3, 0)));
        // 2-6 is Monday to Friday in Glue (1 is Sunday): 2030-01-05 is a Saturday.
        let weekdays = CronSchedule::parse("cron(0 10 ? * 2-6 *)", None).expect("parses");
        assert_eq!(weekdays.next_after(at(2030, 1, 5, 0, 0)), Some(at(2030, 1, 7, 10, 0)));
        assert!(CronSchedule::parse("CRON(15 12 * * ? 2030-2040)", None).is_ok());
    }

    #[test]
    fn the_time_zone_moves_the_firing_time() {
        let berlin = CronSchedule::parse("0 2 * * *", Some("Europe/Berlin")).expect("parses");
        // 02:00 in Berlin in January is 01:00 UTC.
        assert_eq!(berlin.next_after(at(2030, 1, 1, 0, 0)), Some(at(2030, 1, 1, 1, 0)));
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 time")
    }

    const MINUTE: chrono::Duration = chrono::Duration::minutes(1);

    #[test]
    fn a_tick_fires_once_when_due_and_never_again() {
        let hourly = CronSchedule::parse("0 * * * *", None).expect("parses");
        let handled = utc("2030-01-01T09:00:00Z");
        let before = hourly.plan(handled, utc("2030-01-01T09:59:59Z"), MINUTE);
        assert_eq!(before.fire, None);
        assert_eq!(before.next, Some(utc("2030-01-01T10:00:00Z")));
        assert_eq!(before.handled, handled, "nothing handled yet");
        let due = hourly.plan(handled, utc("2030-01-01T10:00:02Z"), MINUTE);
        assert_eq!(due.fire, Some(utc("2030-01-01T10:00:00Z")));
        assert_eq!(due.missed, 0);
        assert_eq!(due.next, Some(utc("2030-01-01T11:00:00Z")));
        let again = hourly.plan(due.handled, utc("2030-01-01T10:00:30Z"), MINUTE);
        assert_eq!(again.fire, None, "the same tick never fires twice");
    }

    #[test]
    fn missed_ticks_fire_once_within_the_starting_deadline_and_not_after() {
        let every_five = CronSchedule::parse("*/5 * * * *", None).expect("parses");
        let handled = utc("2030-01-01T10:00:00Z");
        // Down from 10:00 to 10:31: ticks 10:05 … 10:30 were missed.
        let now = utc("2030-01-01T10:31:00Z");
        let within = every_five.plan(handled, now, chrono::Duration::minutes(2));
        assert_eq!(within.fire, Some(utc("2030-01-01T10:30:00Z")), "only the latest tick");
        assert_eq!(within.missed, 5, "10:05 to 10:25");
        assert_eq!(within.handled, utc("2030-01-01T10:30:00Z"));
        let too_late = every_five.plan(handled, now, chrono::Duration::seconds(30));
        assert_eq!(too_late.fire, None);
        assert_eq!(too_late.missed, 6);
        assert_eq!(
            too_late.handled,
            utc("2030-01-01T10:30:00Z"),
            "skipped ticks are handled"
        );
        assert_eq!(too_late.next, Some(utc("2030-01-01T10:35:00Z")));
        // A year down with a per-minute schedule: the count stops, the plan is still quick.
        let minutely = CronSchedule::parse("* * * * *", None).expect("parses");
        let long = minutely.plan(handled, utc("2031-01-01T10:00:30Z"), MINUTE);
        assert_eq!(long.fire, Some(utc("2031-01-01T10:00:00Z")));
        assert_eq!(long.missed, MISSED_COUNT_LIMIT);
    }

    #[test]
    fn spring_forward_fires_a_tick_in_the_gap_right_after_it() {
        // Europe/Berlin skips 02:00–03:00 on 2030-03-31 (01:00 UTC).
        let berlin = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).expect("parses");
        let handled = utc("2030-03-30T01:30:00Z");
        let next = berlin.next_after(handled).expect("a next tick");
        assert_eq!(
            next,
            utc("2030-03-31T01:00:00Z"),
            "03:00 CEST, the first minute after the gap"
        );
        let plan = berlin.plan(handled, utc("2030-03-31T01:00:05Z"), MINUTE);
        assert_eq!(plan.fire, Some(next));
        // The day after, the usual 02:30 CEST (00:30 UTC).
        assert_eq!(berlin.next_after(next), Some(utc("2030-04-01T00:30:00Z")));
    }

    #[test]
    fn fall_back_fires_a_tick_in_the_repeated_hour_once() {
        // Europe/Berlin repeats 02:00–03:00 on 2030-10-27: 02:30 CEST is 00:30 UTC, 02:30 CET 01:30 UTC.
        let berlin = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).expect("parses");
        let handled = utc("2030-10-26T00:30:00Z");
        let first = berlin.plan(handled, utc("2030-10-27T00:30:10Z"), MINUTE);
        assert_eq!(first.fire, Some(utc("2030-10-27T00:30:00Z")));
        let repeated = berlin.plan(first.handled, utc("2030-10-27T01:30:10Z"), MINUTE);
        assert_eq!(repeated.fire, None, "the repeated 02:30 does not fire again");
        assert_eq!(repeated.next, Some(utc("2030-10-28T01:30:00Z")));
        // An interval schedule keeps its rhythm in absolute time through the repeated hour.
        let quarterly = CronSchedule::parse("*/15 * * * *", Some("Europe/Berlin")).expect("parses");
        let ticks: Vec<_> = std::iter::successors(Some(utc("2030-10-27T00:50:00Z")), |t| quarterly.next_after(*t))
            .skip(1)
            .take(5)
            .collect();
        assert_eq!(ticks.len(), 5);
        assert!(ticks.windows(2).all(|w| w[1] > w[0]), "{ticks:?}");
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let message = |expr: &str, tz: Option<&str>| CronSchedule::parse(expr, tz).err().unwrap_or_default();
        assert!(
            message("0 3 * *", None).contains("has 4 fields"),
            "{}",
            message("0 3 * *", None)
        );
        assert!(message("61 3 * * *", None).contains("does not parse"));
        assert!(message("cron(0 3 * * ?)", None).contains("Glue's form has 6"));
        assert!(message("0 3 * * *", Some("Mars/Olympus")).contains("not an IANA time zone"));
        assert!(message("cron(0 3 * * ? 2001)", None).contains("never fires"));
    }
}
