//! Job: runs (see `crate::runs`), and spec checks: every source Table exists and a sink without
//! `storage` names an existing Table (`TableNotFound`); every Connection exists
//! (`ConnectionNotFound`); no other Job writes a location this Job replaces, or replaces one it
//! writes (`SinkLocationShared`). The SQL check (`InvalidScript`) is not done yet: it needs the
//! runner's planner.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kglue_crds::common::CONDITION_STALLED;
use kglue_crds::job::WriteMode;
use kglue_crds::location::overlap;
use kglue_crds::references::{NamedKind, References};
use kglue_crds::{Job, Table};
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;

use super::pipeline::{Problem, Reason, Reconcile, controller_with_attempts};
use super::refs::{Changes, Found, ReadRefs, Rechecks, find_with_account};
use crate::context::{Act, Context, Error};

/// A sink as the shared-location check sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkWriter {
    /// The Job that writes it.
    pub job: String,
    /// When that Job was created: of two Jobs that may not share a location, the newer one is
    /// Stalled, so the one that was there first keeps running.
    pub created: Option<Time>,
    /// `spec.sinks[i]`.
    pub field: String,
    /// The location, ending in `/`.
    pub location: String,
    /// Its write mode.
    pub write_mode: WriteMode,
}

/// What a Job's checks read: the names it refers to, and every sink of the namespace's Jobs.
#[derive(Clone, Debug, Default)]
pub struct JobRefs {
    /// What the Job names that exists.
    pub found: Found,
    /// The sinks of every Job in the namespace, this one's included.
    pub writers: Vec<SinkWriter>,
}

/// The sinks of `job`, with their locations (a sink of a Table: the Table's location).
pub fn sink_writers(job: &Job, tables: &[&Table]) -> Vec<SinkWriter> {
    sink_writers_where(job, tables, |_| true)
}

/// The sinks of `job` whose location `keep` accepts (checked before anything is allocated).
fn sink_writers_where(job: &Job, tables: &[&Table], keep: impl Fn(&str) -> bool) -> Vec<SinkWriter> {
    job.spec
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(index, sink)| {
            let storage = sink.storage_in(|r| {
                tables
                    .iter()
                    .find(|t| t.spec.database_name == r.database && t.spec.table_name == r.table)
                    .map(|t| &t.spec.storage)
            })?;
            if !keep(&storage.location) {
                return None;
            }
            Some(SinkWriter {
                job: job.name_any(),
                created: job.metadata.creation_timestamp.clone(),
                field: format!("spec.sinks[{index}]"),
                location: format!("{}/", storage.location.trim_end_matches('/')),
                write_mode: sink.write_mode,
            })
        })
        .collect()
}

impl ReadRefs<Job> for JobRefs {
    async fn read(job: &Job, ctx: &Context, namespace: &str) -> Result<JobRefs, Error> {
        let found = find_with_account(ctx, namespace, job).await?;
        // The shared caches, not a LIST per reconcile (a namespace may hold thousands of Jobs and
        // Tables), and shared, not cloned.
        let cached = ctx.informers.jobs.in_namespace(namespace);
        let jobs = || cached.iter().filter_map(|guard| guard.0.as_ref().ok());
        let table_sinks = jobs().flat_map(|j| &j.spec.sinks).any(|s| s.storage.is_none());
        let cached_tables = if table_sinks {
            ctx.informers.tables.in_namespace(namespace)
        } else {
            Vec::new()
        };
        let tables: Vec<&Table> = cached_tables.iter().filter_map(|guard| guard.0.as_ref().ok()).collect();
        // This Job's sinks, and only those of others that overlap one of them.
        let own = sink_writers(job, &tables);
        let name = job.name_any();
        let writers = jobs()
            .filter(|j| j.name_any() != name)
            .flat_map(|j| {
                sink_writers_where(j, &tables, |location| {
                    own.iter().any(|w| overlap(&w.location, location))
                })
            })
            .chain(own.iter().cloned())
            .collect();
        Ok(JobRefs { found, writers })
    }
}

/// The problems of `job`'s sinks sharing a location with a sink of an older Job (or another sink
/// of its own) where either replaces data: a replacing commit deletes what the other wrote.
/// Appending writers may share a location.
pub fn shared_locations(job: &Job, writers: &[SinkWriter]) -> Vec<Problem> {
    let name = job.name_any();
    let key = |w: &SinkWriter| (w.created.clone(), w.job.clone());
    let mine: Vec<&SinkWriter> = writers.iter().filter(|w| w.job == name).collect();
    let mut problems = Vec::new();
    for own in &mine {
        let other = writers.iter().find(|other| {
            let first = if other.job == name {
                // Two sinks of this Job: the later one in the list is the one reported.
                other.field < own.field
            } else {
                key(other) < key(own)
            };
            first
                && overlap(&own.location, &other.location)
                && (own.write_mode != WriteMode::Append || other.write_mode != WriteMode::Append)
        });
        if let Some(other) = other {
            let whose = if other.job == name {
                format!("this Job's {}", other.field)
            } else {
                format!("Job {:?} ({})", other.job, other.field)
            };
            problems.push(Problem::new(
                Reason::SinkLocationShared,
                format!(
                    "{} writes {} ({:?}), which overlaps {} at {} ({:?}): a replacing write deletes what the other wrote; give each a location of its own, or make both Append",
                    own.field, own.location, own.write_mode, whose, other.location, other.write_mode
                ),
            ));
        }
    }
    problems
}

/// Whether `job` is Stalled because a sink shares its location.
fn held_back(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        s.observed.conditions.iter().any(|c| {
            c.type_ == CONDITION_STALLED && c.status == "True" && c.reason == Reason::SinkLocationShared.as_str()
        })
    })
}

/// Whether two Jobs' sinks with their own `storage` overlap where either replaces data (sinks
/// of a Table are compared when each Job is reconciled, with the Tables read).
fn may_conflict(a: &Job, b: &Job) -> bool {
    // No allocation: this runs for every Job on every watch event of every other Job.
    a.spec.sinks.iter().any(|x| {
        b.spec.sinks.iter().any(|y| {
            let replaces = x.write_mode != WriteMode::Append || y.write_mode != WriteMode::Append;
            match (&x.storage, &y.storage) {
                (Some(xs), Some(ys)) => replaces && overlap(&xs.location, &ys.location),
                _ => false,
            }
        })
    })
}

impl Reconcile for Job {
    type Refs = JobRefs;
    const ACT: Option<Act> = Some(crate::runs::reconcile::<Job>);

    fn validate(&self, refs: &JobRefs) -> Vec<Problem> {
        let mut problems = refs.found.missing_tables(self);
        problems.extend(refs.found.missing(self, NamedKind::Connection));
        problems.extend(shared_locations(self, &refs.writers));
        problems.extend(refs.found.missing_service_account(self));
        problems
    }

    /// The Job controller; its attempts' Kubernetes Jobs, and Table and Connection changes,
    /// re-check the Jobs they belong to or that use them; a Job's change re-checks the Jobs whose
    /// sinks may share its locations.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller_with_attempts::<Job>(ctx)
            .recheck::<Table>(ctx, Changes::Spec, |job, _, table| {
                table.is_some_and(|t| {
                    job.table_refs()
                        .iter()
                        .any(|(r, _)| r.database == t.spec.database_name && r.table == t.spec.table_name)
                })
            })
            .recheck::<Job>(ctx, Changes::Spec, |job, changed, other| {
                // Cheap and in memory, since every status write of every Job comes through here:
                // Jobs held back by a shared location (the change may free them), and Jobs whose
                // sinks overlap the changed Job's (it may now hold them back).
                job.name_any() != changed && (held_back(job) || other.is_some_and(|o| may_conflict(job, o)))
            })
            .recheck_references(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pipeline::Reason;

    const JOB: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {name: clean, namespace: ns}
spec:
  sources:
    - name: orders
      table: {database: raw, table: orders}
    - name: extra
      storage: {location: "s3://b/extra/", format: Json, connection: lake}
  sql: "CREATE VIEW out AS SELECT * FROM orders"
  sinks:
    - name: out
      table: {database: curated, table: out}
    - name: report
      storage: {location: "s3://b/report/", format: Csv, connection: reports}
"#;

    fn job() -> Job {
        serde_saphyr::from_str(JOB).expect("a Job")
    }

    fn refs(tables: &[(&str, &str)], connections: &[&str]) -> JobRefs {
        JobRefs {
            found: found(tables, connections),
            writers: Vec::new(),
        }
    }

    fn found(tables: &[(&str, &str)], connections: &[&str]) -> Found {
        Found {
            tables: tables.iter().map(|(d, t)| (d.to_string(), t.to_string())).collect(),
            named: [(
                NamedKind::Connection,
                connections.iter().map(|c| c.to_string()).collect(),
            )]
            .into(),
            ..Found::default()
        }
    }

    #[test]
    fn a_job_whose_tables_and_connections_exist_is_valid() {
        let refs = refs(&[("raw", "orders"), ("curated", "out")], &["lake", "reports"]);
        assert_eq!(job().validate(&refs), vec![]);
    }

    #[test]
    fn missing_tables_and_connections_are_named_by_field() {
        let problems = job().validate(&refs(&[("raw", "orders")], &["lake"]));
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].reason, Reason::TableNotFound);
        assert!(problems[0].message.starts_with("spec.sinks[0].table names curated.out"));
        assert_eq!(problems[1].reason, Reason::ConnectionNotFound);
        assert!(problems[1].message.contains("spec.sinks[1].storage.connection"));
    }

    #[test]
    fn a_job_naming_a_missing_service_account_is_stalled_until_it_exists() {
        let mut job = job();
        job.spec.service_account_name = Some("orders-pipeline".into());
        let mut refs = refs(&[("raw", "orders"), ("curated", "out")], &["lake", "reports"]);
        let problems = job.validate(&refs);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::ServiceAccountNotFound);
        assert!(
            problems[0]
                .message
                .starts_with("spec.serviceAccountName names ServiceAccount \"orders-pipeline\""),
            "{}",
            problems[0].message
        );
        refs.found.service_accounts.insert("orders-pipeline".into());
        assert_eq!(job.validate(&refs), vec![]);
    }

    #[test]
    fn a_streaming_job_with_its_references_found_is_ready_to_run() {
        let mut job = job();
        job.spec.streaming = Some(serde_json::from_value(serde_json::json!({"windowSeconds": 10})).expect("streaming"));
        let problems = job.validate(&refs(&[("raw", "orders"), ("curated", "out")], &["lake", "reports"]));
        assert_eq!(problems, vec![]);
    }

    fn writer_job(name: &str, created: i64, sinks: &[(&str, &str)]) -> Job {
        let sinks: Vec<String> = sinks
            .iter()
            .enumerate()
            .map(|(i, (location, mode))| {
                format!(
                    "    - {{name: s{i}, storage: {{location: \"{location}\", format: Parquet}}, writeMode: {mode}}}\n"
                )
            })
            .collect();
        let yaml = format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  sources: []\n  sql: \"SELECT 1\"\n  sinks:\n{}",
            sinks.concat()
        );
        let mut job: Job = serde_saphyr::from_str(&yaml).expect("a Job");
        job.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + created).expect("valid"),
        ));
        job
    }

    fn check(jobs: &[&Job], which: &Job) -> Vec<Problem> {
        let writers: Vec<SinkWriter> = jobs.iter().flat_map(|j| sink_writers(j, &[])).collect();
        shared_locations(which, &writers)
    }

    #[test]
    fn a_newer_job_that_would_replace_or_be_replaced_at_a_shared_location_is_stalled() {
        let older = writer_job("older", 0, &[("s3://b/curated/orders", "Overwrite")]);
        let newer = writer_job("newer", 10, &[("s3://b/curated/orders/eu/", "Append")]);
        let jobs = [&older, &newer];
        assert_eq!(
            check(&jobs, &older),
            vec![],
            "the Job that was there first keeps running"
        );
        let problems = check(&jobs, &newer);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::SinkLocationShared);
        assert!(
            problems[0].message.starts_with("spec.sinks[0] writes s3://b/curated/orders/eu/ (Append), which overlaps Job \"older\" (spec.sinks[0]) at s3://b/curated/orders/ (Overwrite)"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn appending_jobs_share_locations_and_prefixes_that_only_look_alike_do_not_overlap() {
        let one = writer_job("one", 0, &[("s3://b/events/", "Append")]);
        let two = writer_job("two", 1, &[("s3://b/events/", "Append")]);
        let three = writer_job("three", 2, &[("s3://b/events-archive/", "Overwrite")]);
        let jobs = [&one, &two, &three];
        for job in jobs {
            assert_eq!(check(&jobs, job), vec![], "{}", job.name_any());
        }
    }

    #[test]
    fn two_sinks_of_one_job_that_replace_each_other_are_a_problem() {
        let job = writer_job(
            "both",
            0,
            &[("s3://b/out/", "Overwrite"), ("s3://b/out/summary/", "Append")],
        );
        let problems = check(&[&job], &job);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("this Job's spec.sinks[0]"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn only_held_back_or_overlapping_jobs_are_rechecked_when_a_job_changes() {
        let older = writer_job("older", 0, &[("s3://b/curated/orders", "Overwrite")]);
        let below = writer_job("below", 10, &[("s3://b/curated/orders/eu/", "Append")]);
        let elsewhere = writer_job("elsewhere", 20, &[("s3://b/other/", "Overwrite")]);
        assert!(may_conflict(&below, &older));
        assert!(!may_conflict(&elsewhere, &older));
        assert!(!held_back(&elsewhere));
    }
}
