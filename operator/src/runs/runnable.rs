//! The kinds whose objects run, Job and Crawler: what the run machinery needs to know of each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kglue_crds::common::{RunRecord, Schedule, WorkerSize};
use kglue_crds::job::{BookmarkOption, StreamProgress, WriteMode};
use kglue_crds::references::{NamedKind, References};
use kglue_crds::run_result::{RunOwnerKind, RunResult};
use kglue_crds::{Crawler, Job, Table};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::machine::{Bookmarks, Limits};
use crate::settings::RunnerSettings;

/// A kind whose objects run: Job and Crawler.
pub trait Runnable:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + crate::informers::Informed
    + References
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The figures of one run.
    type Metrics: Clone + PartialEq + Serialize + Send + Sync;
    /// Job or Crawler.
    const KIND: RunOwnerKind;
    /// `status.runs`.
    fn runs(&self) -> Vec<RunRecord<Self::Metrics>>;
    /// The limits of the spec.
    fn limits(&self, settings: &RunnerSettings) -> Limits;
    /// The bookmark state (Jobs).
    fn bookmarks(&self) -> Option<Bookmarks>;
    /// The pod's size and deadline in minutes.
    fn worker(&self) -> (WorkerSize, i32);
    /// The executor pods of a distributed run (a Job's `workers` above 1), `None` for one pod.
    fn executors(&self) -> Option<u32> {
        None
    }
    /// The names of the Connections a run reaches data through; `tables` are the namespace's.
    fn connections(&self, tables: &[&Table]) -> Vec<String> {
        let _ = tables;
        self.names_of(NamedKind::Connection)
            .into_iter()
            .map(|r| r.name.to_string())
            .collect()
    }
    /// Whether the run reads the namespace's Tables to find its Connections.
    const READS_TABLES: bool = false;
    /// The figures of a report.
    fn metrics(result: &RunResult) -> Option<Self::Metrics>;
    /// A streaming Job's window in seconds: its runs are streams.
    fn stream_window(&self) -> Option<u32> {
        None
    }
    /// What `status.streaming` shows now (streaming Jobs).
    fn stream_progress(&self) -> Option<&StreamProgress> {
        None
    }
    /// The object's own schedule (a Crawler's `spec.schedule`).
    fn schedule(&self) -> Option<&Schedule> {
        None
    }
    /// The status field showing the schedule's next tick, and its value as read.
    fn next_scheduled(&self) -> (&'static str, Option<Time>) {
        ("", None)
    }
}

impl Runnable for Job {
    type Metrics = kglue_crds::job::JobRunMetrics;
    const KIND: RunOwnerKind = RunOwnerKind::Job;
    const READS_TABLES: bool = true;

    fn runs(&self) -> Vec<RunRecord<Self::Metrics>> {
        self.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
    }

    fn limits(&self, settings: &RunnerSettings) -> Limits {
        Limits {
            max_concurrent: usize::try_from(self.spec.max_concurrent_runs).unwrap_or(1),
            max_retries: self.spec.max_retries,
            history: usize::try_from(self.spec.run_history_limit).unwrap_or(10),
            retry_backoff: settings.retry_backoff,
            timeout_minutes: self.spec.timeout_minutes,
            replaces_data: self.spec.sinks.iter().any(|s| s.write_mode != WriteMode::Append),
            stages_outputs: !self.spec.sinks.is_empty(),
            streaming: self.spec.streaming.is_some(),
        }
    }

    fn bookmarks(&self) -> Option<Bookmarks> {
        let status = self.status.clone().unwrap_or_default();
        Some(Bookmarks {
            serialize: self.spec.bookmark.option != BookmarkOption::Disable,
            current: status.bookmark,
            history: status.bookmark_history,
        })
    }

    fn worker(&self) -> (WorkerSize, i32) {
        (self.spec.worker_size, self.spec.timeout_minutes)
    }

    fn executors(&self) -> Option<u32> {
        self.spec.executors()
    }

    /// Its own Connections, and those of the catalog Tables it reads and writes.
    fn connections(&self, tables: &[&Table]) -> Vec<String> {
        let from_tables = self.catalog_tables().filter_map(|r| {
            tables
                .iter()
                .find(|t| t.spec.database_name == r.database && t.spec.table_name == r.table)
                .and_then(|t| t.spec.storage.connection.clone())
        });
        let direct = self
            .names_of(NamedKind::Connection)
            .into_iter()
            .map(|r| r.name.to_string());
        direct.chain(from_tables).collect()
    }

    fn metrics(result: &RunResult) -> Option<Self::Metrics> {
        result.spec.job.as_ref().map(|j| j.metrics.clone())
    }

    fn stream_window(&self) -> Option<u32> {
        self.spec.streaming.as_ref().map(|s| s.window_seconds)
    }

    fn stream_progress(&self) -> Option<&StreamProgress> {
        self.status.as_ref().and_then(|s| s.streaming.as_ref())
    }
}

impl Runnable for Crawler {
    type Metrics = kglue_crds::crawler::CrawlMetrics;
    const KIND: RunOwnerKind = RunOwnerKind::Crawler;

    fn runs(&self) -> Vec<RunRecord<Self::Metrics>> {
        self.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
    }

    fn limits(&self, settings: &RunnerSettings) -> Limits {
        // A crawler runs one crawl at a time and is not retried, as in Glue.
        Limits {
            max_concurrent: 1,
            max_retries: 0,
            history: usize::try_from(self.spec.run_history_limit).unwrap_or(10),
            retry_backoff: settings.retry_backoff,
            timeout_minutes: self.worker().1,
            replaces_data: false,
            stages_outputs: false,
            streaming: false,
        }
    }

    fn bookmarks(&self) -> Option<Bookmarks> {
        None
    }

    fn worker(&self) -> (WorkerSize, i32) {
        (self.spec.worker_size, self.spec.timeout_minutes.unwrap_or(2880))
    }

    fn metrics(result: &RunResult) -> Option<Self::Metrics> {
        result.spec.crawl.clone()
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.spec.schedule.as_ref()
    }

    fn next_scheduled(&self) -> (&'static str, Option<Time>) {
        (
            "nextScheduledCrawl",
            self.status.as_ref().and_then(|s| s.next_scheduled_crawl.clone()),
        )
    }
}
