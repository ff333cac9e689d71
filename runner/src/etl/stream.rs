//! Streaming jobs (docs/streaming.md): a Kafka topic read in micro-batches, each batch a run of the
//! job's script whose sinks commit together with the offsets the batch consumed.
//!
//! The checkpoint is a folder of batch records, `<checkpoint>/batches/<batch>.json`, one per
//! committed batch and created only where none exists. A batch's record is its decision to commit
//! (what a RunResult with outcome Committing is to a batch run): the offsets it read up to, its
//! result, and what finishing its commit takes. A batch writes its files under its own run id
//! (`<job>-b<batch>`, so file names carry the batch), and nothing of it is visible before its
//! record exists. After any kill, a restarted stream finishes the newest recorded batch's commit
//! (idempotent) and reads on from that batch's offsets, and a batch that had not recorded its
//! decision is staged again from the same offsets under the same run id: no record reaches the
//! sinks twice, none is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{DataFormat, KafkaValueFormat, StorageSpec};
use kglue_crds::job::{
    JobBookmark, JobSpec, PartitionLag, PartitionOffset, SourceBookmark, StartingOffsets, StorageLocation,
    StreamProgress, StreamState,
};
use kglue_crds::run_result::CommitIntent;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rskafka::client::partition::OffsetAt;
use serde::{Deserialize, Serialize};

use super::kafka::{self, BadRecord, KafkaError, Topic, ValueDecoder};
use super::run::{self, Resources, RunOutcome, RunRequest, RunResult, StreamBatch};
use super::settle::{DecideError, Decider, finish_commit};
use super::types::fields_of;
use crate::catalog::Catalog;
use crate::storage::{Location, StoreResolver};

/// What a stream is asked to do.
pub struct StreamRequest {
    /// The Job's name.
    pub job_name: String,
    /// The Job's spec (with `streaming` set).
    pub spec: JobSpec,
    /// The run's arguments.
    pub arguments: BTreeMap<String, String>,
    /// What each batch may use.
    pub resources: Resources,
    /// Stop once the topic is read to the ends it had when the stream started (Spark's
    /// `Trigger.AvailableNow`): a backfill, or a test.
    pub until_caught_up: bool,
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// Set to `true` to stop after the batch in progress (`kglue stop`, SIGTERM).
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// One committed batch, as the stream reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    /// The batch's number, from 1.
    pub batch: u64,
    /// Its run id (output file names carry it).
    pub run_id: String,
    /// Records read.
    pub records: u64,
    /// Records that did not parse (sent to the dead-letter location).
    pub bad_records: u64,
    /// Bytes of the records' values.
    pub bytes: u64,
    /// Per partition, the next offset after the batch.
    pub offsets: BTreeMap<i32, i64>,
    /// Per partition, records left behind the batch.
    pub lag: BTreeMap<i32, i64>,
    /// Seconds from the batch's start to its commit.
    pub seconds: f64,
    /// The batch run's result (rows written per sink).
    pub result: RunResult,
}

/// How a stream ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSummary {
    /// Batches committed by this stream.
    pub batches: u64,
    /// Records read by them.
    pub records: u64,
    /// The checkpoint's offsets when the stream stopped.
    pub offsets: BTreeMap<i32, i64>,
}

/// Why a stream stopped without being asked.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The job is not a streaming job kglue can run.
    #[error("{0}")]
    Spec(String),
    /// Kafka could not be reached or read (retried with backoff before this).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The checkpoint or dead-letter location could not be read or written.
    #[error("{what} {url}: {message}")]
    Storage {
        /// `checkpoint` or `dead letter`.
        what: &'static str,
        /// The object or location.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A record did not parse and `failOnBadRecord` is set.
    #[error(
        "topic {} partition {} offset {}: the record does not parse ({}), and failOnBadRecord is set",
        .0.topic, .0.partition, .0.offset, .0.reason
    )]
    BadRecord(Box<BadRecord>),
    /// A batch failed (nothing of it was committed; the stream starts it again when restarted).
    #[error("batch {batch}: {message}")]
    Batch {
        /// The batch.
        batch: u64,
        /// The batch run's error.
        message: String,
    },
    /// Finishing a recorded batch's commit failed.
    #[error("batch {batch} decided to commit but could not finish: {message}")]
    Finish {
        /// The batch.
        batch: u64,
        /// What went wrong.
        message: String,
    },
}

/// A committed batch's record in the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    /// The batch.
    pub batch: u64,
    /// Its run id.
    pub run_id: String,
    /// Per partition, the next offset to read after it.
    pub offsets: Vec<PartitionOffset>,
    /// When the decision was recorded (microseconds: latency is measured from it).
    pub decided_at: MicroTime,
    /// The batch run's result.
    pub result: RunResult,
    /// What finishing its commit takes.
    pub intent: CommitIntent,
}

/// A stream's checkpoint folder.
struct Checkpoint {
    store: Arc<dyn ObjectStore>,
    location: Location,
}

impl Checkpoint {
    fn batches(&self) -> Path {
        self.location.prefix.clone().join("batches")
    }

    fn record_path(&self, batch: u64) -> Path {
        // Zero-padded, so the names sort as the batches do.
        self.batches().join(format!("{batch:020}.json"))
    }

    fn error(&self, path: &Path, message: impl ToString) -> StreamError {
        StreamError::Storage {
            what: "checkpoint",
            url: self.location.url_of(path),
            message: message.to_string(),
        }
    }

    /// The newest batch record, if any.
    async fn latest(&self) -> Result<Option<BatchRecord>, StreamError> {
        let folder = self.batches();
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| self.error(&folder, e))?;
        let newest = listed
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                let batch: u64 = name.strip_suffix(".json")?.parse().ok()?;
                Some((batch, meta.location.clone()))
            })
            .max_by_key(|(batch, _)| *batch);
        let Some((_, path)) = newest else {
            return Ok(None);
        };
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.error(&path, e))?
            .bytes()
            .await
            .map_err(|e| self.error(&path, e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.error(&path, format!("not a kglue batch record: {e}")))
    }
}

/// Records a batch's decision in the checkpoint: created only where no record of that batch
/// exists, so two streams of one job cannot both commit a batch.
struct CheckpointDecider<'a> {
    checkpoint: &'a Checkpoint,
    batch: u64,
    offsets: Vec<PartitionOffset>,
    recorded: Option<BatchRecord>,
}

#[async_trait::async_trait]
impl Decider for CheckpointDecider<'_> {
    async fn decide(&mut self, result: &RunResult, intent: &CommitIntent) -> Result<(), DecideError> {
        let record = BatchRecord {
            batch: self.batch,
            run_id: result.run_id.clone(),
            offsets: self.offsets.clone(),
            decided_at: MicroTime(Timestamp::now()),
            result: result.clone(),
            intent: intent.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(DecideError::refused)?;
        let path = self.checkpoint.record_path(self.batch);
        let url = self.checkpoint.location.url_of(&path);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .checkpoint
            .store
            .put_opts(&path, PutPayload::from(Bytes::from(bytes)), options)
            .await
        {
            Ok(_) => {
                self.recorded = Some(record);
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => Err(DecideError::refused(format!(
                "checkpoint {url} already records batch {}: another stream of this job committed it (only one may run at a time)",
                self.batch
            ))),
            // The answer was lost: the record may exist, and the next start reads it.
            Err(error) => Err(DecideError {
                message: format!("checkpoint {url}: {error}"),
                maybe_recorded: true,
            }),
        }
    }
}

/// The streaming source of a job: its name and Table's storage, with the Table's columns.
struct StreamSource {
    name: String,
    storage: StorageSpec,
    decoder: ValueDecoder,
}

fn stream_source(spec: &JobSpec, catalog: &crate::catalog::DirCatalog) -> Result<StreamSource, StreamError> {
    let mut found = Vec::new();
    for source in &spec.sources {
        let table = match &source.table {
            Some(reference) => catalog.table(&reference.database, &reference.table),
            None => None,
        };
        let storage = match (table, &source.storage) {
            (Some(table), _) => Some((table.spec.storage.clone(), table.spec.columns.clone())),
            (None, Some(storage)) => Some((storage.clone(), Vec::new())),
            _ => None,
        };
        if let Some((storage, columns)) = storage
            && storage.format.format == DataFormat::Kafka
        {
            found.push((source.name.clone(), storage, columns));
        }
    }
    let (name, storage, columns) = match found.len() {
        1 => found.remove(0),
        0 => {
            return Err(StreamError::Spec(
                "a streaming job needs one source whose Table has format Kafka; it has none".into(),
            ));
        }
        n => {
            return Err(StreamError::Spec(format!(
                "a streaming job reads one Kafka topic; sources {} are {n}",
                found.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    if columns.is_empty() {
        return Err(StreamError::Spec(format!(
            "source {name}: its Table declares no columns; declare the columns of the topic's values"
        )));
    }
    let fields = fields_of(&columns).map_err(|e| StreamError::Spec(format!("source {name}: {e}")))?;
    if let Some(clash) = fields
        .iter()
        .find(|f| kafka::METADATA_COLUMNS.contains(&f.name().as_str()))
    {
        return Err(StreamError::Spec(format!(
            "source {name}: column {} has the name of a Kafka metadata column ({}); rename it",
            clash.name(),
            kafka::METADATA_COLUMNS.join(", ")
        )));
    }
    let value_format = storage
        .format
        .kafka
        .as_ref()
        .map_or(KafkaValueFormat::Json, |k| k.value_format);
    let decoder = ValueDecoder::new(fields, value_format, storage.format.csv.clone());
    Ok(StreamSource { name, storage, decoder })
}

/// The first sink's object-store location (where the checkpoint and dead letters default to).
fn first_sink_location(spec: &JobSpec, catalog: &crate::catalog::DirCatalog) -> Option<StorageLocation> {
    spec.sinks.iter().find_map(|sink| {
        let storage = match (&sink.storage, &sink.table) {
            (Some(storage), _) => Some(storage.clone()),
            (None, Some(reference)) => catalog
                .table(&reference.database, &reference.table)
                .map(|t| t.spec.storage.clone()),
            _ => None,
        }?;
        (storage.format.format != DataFormat::Jdbc).then_some(StorageLocation {
            location: storage.location,
            connection: storage.connection,
        })
    })
}

fn open_location(
    resolver: &StoreResolver,
    what: &'static str,
    location: &StorageLocation,
) -> Result<(Arc<dyn ObjectStore>, Location), StreamError> {
    let error = |message: String| StreamError::Storage {
        what,
        url: location.location.clone(),
        message,
    };
    let parsed: Location = location.location.parse().map_err(|e| error(format!("{e}")))?;
    let store = resolver
        .store(&parsed, location.connection.as_deref())
        .map_err(|e| error(e.to_string()))?;
    Ok((store, parsed))
}

/// `<first sink>/<folder>/<job>/` unless `given`.
fn place(
    given: Option<&StorageLocation>,
    first_sink: Option<&StorageLocation>,
    folder: &str,
    job: &str,
) -> Result<StorageLocation, StreamError> {
    if let Some(given) = given {
        return Ok(given.clone());
    }
    let Some(sink) = first_sink else {
        return Err(StreamError::Spec(format!(
            "spec.streaming needs {} when no sink writes to object storage",
            if folder.contains("checkpoint") {
                "checkpoint"
            } else {
                "deadLetter"
            }
        )));
    };
    Ok(StorageLocation {
        location: format!("{}/{folder}/{job}/", sink.location.trim_end_matches('/')),
        connection: sink.connection.clone(),
    })
}

/// The waits between tries when Kafka cannot be reached: a broker outage is waited out, with
/// the error reported each time, never turned into lost or repeated records.
fn kafka_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(5))
}

/// Runs a streaming job until it is stopped, caught up (`until_caught_up`) or `max_batches`
/// are done, or it fails. `on_batch` hears of each committed batch; `on_problem` of each Kafka
/// outage while it is waited out (`Some`), and of Kafka answering again after one (`None`).
/// outage while it is waited out.
pub async fn run_stream<C: Catalog + ?Sized>(
    request: StreamRequest,
    catalog: &mut C,
    resolver: &StoreResolver,
    mut on_batch: impl FnMut(&BatchReport),
    mut on_problem: impl FnMut(Option<&str>),
) -> Result<StreamSummary, StreamError> {
    let Some(streaming) = request.spec.streaming.clone() else {
        return Err(StreamError::Spec("the job has no spec.streaming".into()));
    };
    let source = stream_source(&request.spec, catalog.view())?;
    let first_sink = first_sink_location(&request.spec, catalog.view());
    let checkpoint_at = place(
        streaming.checkpoint.as_ref(),
        first_sink.as_ref(),
        "_kglue_checkpoint",
        &request.job_name,
    )?;
    let dead_letter_at = place(
        streaming.dead_letter.as_ref(),
        first_sink.as_ref(),
        "_kglue_dead_letter",
        &request.job_name,
    )?;
    let (store, location) = open_location(resolver, "checkpoint", &checkpoint_at)?;
    let checkpoint = Checkpoint { store, location };
    let (dead_store, dead_location) = open_location(resolver, "dead letter", &dead_letter_at)?;

    // Finish the newest recorded batch (a kill may have cut its commit short).
    let mut latest = checkpoint.latest().await?;
    if let Some(record) = &latest {
        finish_commit(&record.intent, &record.run_id, catalog, resolver)
            .await
            .map_err(|e| StreamError::Finish {
                batch: record.batch,
                message: e.to_string(),
            })?;
    }

    let connection = source
        .storage
        .connection
        .clone()
        .ok_or_else(|| StreamError::Spec(format!("source {}: its Table names no kafka Connection", source.name)))?;
    let endpoint = resolver
        .kafka(&connection, &format!("source {}", source.name))
        .map_err(|e| StreamError::Spec(e.to_string()))?;
    let topic_name = source.storage.location.clone();
    let mut topic = open_topic(&endpoint, &topic_name, &request.stop, &mut on_problem).await?;
    let start = match streaming.starting_offsets {
        StartingOffsets::Earliest => topic.offsets(OffsetAt::Earliest).await?,
        StartingOffsets::Latest => topic.offsets(OffsetAt::Latest).await?,
    };
    // `--until-caught-up`: the ends the topic has now are where the stream stops (records
    // produced later wait for the next start), as Spark's Trigger.AvailableNow.
    let until = if request.until_caught_up {
        Some(topic.offsets(OffsetAt::Latest).await?)
    } else {
        None
    };

    let mut summary = StreamSummary {
        batches: 0,
        records: 0,
        offsets: latest
            .as_ref()
            .map(|r| kafka::offsets_of(&r.offsets))
            .unwrap_or_default(),
    };
    let window = Duration::from_secs(u64::from(streaming.window_seconds));
    let mut kafka_attempt = 0;
    // Whether Kafka failed since the last fetch that worked: the next one says it answers again.
    let mut troubled = false;
    loop {
        if stopped(&request.stop) || request.max_batches.is_some_and(|max| summary.batches >= max) {
            return Ok(summary);
        }
        let began = Instant::now();
        let from = latest
            .as_ref()
            .map(|r| kafka::offsets_of(&r.offsets))
            .unwrap_or_default();
        // A broker that stops answering (no reply, not a closed connection) must not hang the
        // stream: past the window and a margin, the fetch is given up and the topic reopened.
        let patience = window + FETCH_PATIENCE;
        let fetch = topic.fetch(
            &request.stop,
            &from,
            &start,
            began + window,
            streaming.max_records_per_batch,
            until.as_ref(),
        );
        let outcome = match tokio::time::timeout(patience, fetch).await {
            Ok(outcome) => outcome,
            Err(_) => Err(KafkaError::NoAnswer {
                topic: topic.name.clone(),
                servers: topic.servers().to_string(),
                seconds: patience.as_secs(),
            }),
        };
        let fetched = match outcome {
            Ok(fetched) => {
                if kafka_attempt > 0 || troubled {
                    on_problem(None);
                }
                kafka_attempt = 0;
                troubled = false;
                fetched
            }
            // Waiting would not bring lost records back.
            Err(error @ KafkaError::Lost { .. }) => return Err(error.into()),
            Err(error) => {
                on_problem(Some(&error.to_string()));
                troubled = true;
                if stopped(&request.stop) {
                    return Ok(summary);
                }
                tokio::time::sleep(kafka_backoff(kafka_attempt)).await;
                kafka_attempt += 1;
                topic = open_topic(&endpoint, &topic_name, &request.stop, &mut on_problem).await?;
                continue;
            }
        };
        if fetched.records.is_empty() {
            if let Some(until) = &until
                && until
                    .iter()
                    .all(|(p, end)| fetched.next.get(p).is_some_and(|next| next >= end))
            {
                return Ok(summary);
            }
            continue;
        }
        let batch = latest.as_ref().map_or(1, |r| r.batch + 1);
        let run_id = format!("{}-b{batch}", request.job_name);
        let (rows, bad) = source.decoder.decode(&topic.name, &fetched.records);
        if streaming.fail_on_bad_record
            && let Some(first) = bad.first()
        {
            return Err(StreamError::BadRecord(Box::new(first.clone())));
        }
        if !bad.is_empty() {
            // Named by the batch: a batch staged again writes the same file again, and only a
            // recorded batch's dead letters are ever read as committed.
            write_dead_letters(&dead_store, &dead_location, &run_id, &bad).await?;
        }
        let bytes: u64 = fetched
            .records
            .iter()
            .map(|(_, r)| r.record.value.as_ref().map_or(0, Vec::len) as u64)
            .sum();
        let offsets = kafka::bookmark_offsets(&fetched.next);
        let run = RunRequest {
            job_name: request.job_name.clone(),
            spec: request.spec.clone(),
            run_id: run_id.clone(),
            attempt: 0,
            arguments: request.arguments.clone(),
            bookmark: Some(JobBookmark {
                run_id: latest.as_ref().map(|r| r.run_id.clone()),
                committed_at: None,
                sources: BTreeMap::from([(
                    source.name.clone(),
                    SourceBookmark {
                        offsets: kafka::bookmark_offsets(&fetched.begin),
                        ..SourceBookmark::default()
                    },
                )]),
            }),
            resources: request.resources.clone(),
            stream: Some(StreamBatch {
                source: source.name.clone(),
                rows,
                bytes,
                next: offsets.clone(),
            }),
        };
        let mut decider = CheckpointDecider {
            checkpoint: &checkpoint,
            batch,
            offsets,
            recorded: None,
        };
        let result = run::run(run, catalog, resolver, &mut decider).await;
        if result.outcome != RunOutcome::Succeeded {
            return Err(StreamError::Batch {
                batch,
                message: result.error.unwrap_or_else(|| format!("{:?}", result.outcome)),
            });
        }
        let Some(recorded) = decider.recorded.take() else {
            return Err(StreamError::Batch {
                batch,
                message: "the batch succeeded without recording its decision".into(),
            });
        };
        let report = BatchReport {
            batch,
            run_id,
            records: fetched.records.len() as u64,
            bad_records: bad.len() as u64,
            bytes,
            offsets: fetched.next.clone(),
            lag: fetched.lag.clone(),
            seconds: began.elapsed().as_secs_f64(),
            result,
        };
        summary.batches += 1;
        summary.records += report.records;
        summary.offsets = fetched.next.clone();
        on_batch(&report);
        latest = Some(recorded);
        if let Some(until) = &until
            && until
                .iter()
                .all(|(p, end)| fetched.next.get(p).is_some_and(|next| next >= end))
        {
            return Ok(summary);
        }
    }
}

/// A stream's progress for people (`status.streaming`), kept up to date from what
/// [`run_stream`] reports: each committed batch, each Kafka outage and its end.
#[derive(Debug, Clone)]
pub struct Progress {
    progress: StreamProgress,
    /// When the previous batch committed (or the stream started): rates are over the span to the
    /// next commit, the window and any wait included, as a dashboard would count them.
    previous_commit: Instant,
}

impl Progress {
    /// A stream of run `run_id`, attempt `attempt`, starting now.
    pub fn new(run_id: &str, attempt: i32) -> Self {
        Progress {
            progress: StreamProgress {
                run_id: Some(run_id.to_string()),
                attempt,
                state: StreamState::Starting,
                since: Some(MicroTime(Timestamp::now())),
                ..StreamProgress::default()
            },
            previous_commit: Instant::now(),
        }
    }

    /// The progress as it stands.
    pub fn current(&self) -> &StreamProgress {
        &self.progress
    }

    fn enter(&mut self, state: StreamState, message: Option<String>) {
        if self.progress.state != state {
            self.progress.since = Some(MicroTime(Timestamp::now()));
        }
        self.progress.state = state;
        self.progress.message = message.map(|m| cut_message(&m));
    }

    /// A batch committed.
    pub fn batch(&mut self, report: &BatchReport) {
        let now = Instant::now();
        let span = now.duration_since(self.previous_commit).as_secs_f64().max(1e-3);
        self.previous_commit = now;
        let p = &mut self.progress;
        p.last_batch = i64::try_from(report.batch).ok();
        p.last_batch_at = Some(MicroTime(Timestamp::now()));
        p.last_batch_records = i64::try_from(report.records).ok();
        p.last_batch_seconds = Some((report.seconds * 1000.0).round() / 1000.0);
        p.batches += 1;
        p.records += report.records as i64;
        p.bad_records += report.bad_records as i64;
        p.records_per_second = Some((report.records as f64 / span * 10.0).round() / 10.0);
        p.bytes_per_second = Some((report.bytes as f64 / span).round());
        p.partitions = report
            .offsets
            .iter()
            .map(|(partition, offset)| PartitionLag {
                partition: *partition,
                offset: *offset,
                lag: report.lag.get(partition).copied().unwrap_or(0),
            })
            .collect();
        p.lag = Some(p.partitions.iter().map(|l| l.lag).sum());
        self.enter(StreamState::Running, None);
    }

    /// Kafka failed (`Some`, an outage being waited out) or answers again (`None`).
    pub fn problem(&mut self, problem: Option<&str>) {
        match problem {
            Some(problem) => self.enter(StreamState::Outage, Some(problem.to_string())),
            None => self.enter(StreamState::Running, None),
        }
    }

    /// Ending after the batch in progress.
    pub fn stopping(&mut self) {
        self.enter(StreamState::Stopping, None);
    }

    /// Ended: stopped on request (`Ok`), or failed with the error.
    pub fn ended(&mut self, outcome: Result<(), &str>) {
        match outcome {
            Ok(()) => self.enter(StreamState::Stopped, None),
            Err(error) => self.enter(StreamState::Failed, Some(error.to_string())),
        }
    }
}

/// A message cut to what `status.streaming.message` accepts.
fn cut_message(message: &str) -> String {
    const MAX: usize = 4000;
    match message.char_indices().nth(MAX) {
        Some((at, _)) => format!("{} …", &message[..at]),
        None => message.to_string(),
    }
}

/// How much longer than its window a batch's fetch may take before Kafka counts as not answering.
const FETCH_PATIENCE: Duration = Duration::from_secs(20);

/// Connects and opens the topic, waiting out an outage (each failure reported through
/// `on_problem`); a missing topic, unusable settings or a refused login fail at once.
async fn open_topic(
    endpoint: &kafka::KafkaEndpoint,
    name: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
    on_problem: &mut impl FnMut(Option<&str>),
) -> Result<Topic, StreamError> {
    let mut attempt = 0;
    loop {
        let opened = async {
            let client = endpoint.connect().await?;
            Topic::open(endpoint, &client, name).await
        };
        // Longer than the client's own retries (the connect timeout): a refused login comes out
        // of them as Refused, which must not be mistaken for a broker that does not answer.
        let patience = endpoint.connect_timeout() * 2 + FETCH_PATIENCE;
        let outcome = match tokio::time::timeout(patience, opened).await {
            Ok(outcome) => outcome,
            Err(_) => Err(KafkaError::NoAnswer {
                topic: name.to_string(),
                servers: endpoint.servers.join(","),
                seconds: patience.as_secs(),
            }),
        };
        match outcome {
            Ok(topic) => {
                if attempt > 0 {
                    on_problem(None);
                }
                return Ok(topic);
            }
            Err(error @ (KafkaError::NoTopic { .. } | KafkaError::Settings { .. } | KafkaError::Refused { .. })) => {
                return Err(error.into());
            }
            Err(error) => {
                on_problem(Some(&error.to_string()));
                if stopped(stop) {
                    return Err(error.into());
                }
                tokio::time::sleep(kafka_backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

fn stopped(stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Writes a batch's bad records as JSON lines, one object per record.
async fn write_dead_letters(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
    run_id: &str,
    bad: &[BadRecord],
) -> Result<(), StreamError> {
    let mut text = Vec::new();
    for record in bad {
        // Serializing plain strings and numbers cannot fail.
        if let Ok(line) = serde_json::to_vec(record) {
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
    }
    let path = location.prefix.clone().join(format!("{run_id}.jsonl"));
    store
        .put(&path, PutPayload::from(Bytes::from(text)))
        .await
        .map(|_| ())
        .map_err(|e| StreamError::Storage {
            what: "dead letter",
            url: location.url_of(&path),
            message: e.to_string(),
        })
}

/// Resolves on SIGTERM (the pod being deleted or its Job suspended) or Ctrl-C.
pub async fn terminated() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
