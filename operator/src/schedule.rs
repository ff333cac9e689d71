//! Cron expressions as kglue accepts them: the 5-field form of Kubernetes CronJobs
//! (`0 3 * * *`, with `@daily`-style nicknames) and Glue's `cron(…)` form with 6 fields
//! (minutes, hours, day of month, month, day of week, year; `?` allowed; days of week 1–7 from
//! Sunday, as in Quartz), read in an IANA time zone. Today the operator only validates; the
//! scheduler will use [`CronSchedule::next_after`].

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

    /// The first time strictly after `after` that the schedule fires, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
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
