//! Writing one output partition (stream) of the plan: its own writers, at most its share of the
//! sink's open files and buffered memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryReservation;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::file::{FileWriter, OutputFormat};
use super::partition::{PartitionKey, Partitioner};
use super::{SinkError, join_path, parse_path};
use crate::storage::Location;

/// What every stream of one sink shares.
pub(crate) struct SinkPlan {
    pub sink: String,
    pub store: Arc<dyn ObjectStore>,
    pub location: Location,
    /// `<prefix>/_kglue_staging/<run id>`, raw.
    pub staging: String,
    pub run_id: String,
    pub format: OutputFormat,
    pub extension: String,
    pub data_schema: SchemaRef,
    pub partition_columns: Vec<usize>,
    pub partition_names: Vec<String>,
    pub data_columns: Vec<usize>,
    pub target_file_bytes: u64,
    /// One permit per open file across the sink.
    pub open_files: Arc<Semaphore>,
    pub open_per_stream: usize,
    /// Files open now, and the most open at once (a figure to tune `max_open_writers` by).
    pub open_now: AtomicUsize,
    pub peak_open: AtomicUsize,
    pub buffer_per_stream: usize,
    pub upload_buffer_bytes: usize,
}

/// A file a stream finished.
pub(crate) struct WrittenFile {
    /// Its staging path.
    pub path: Path,
    /// The partition id within the stream's [`StreamOutput::partitions`].
    pub partition: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// What a stream wrote.
pub(crate) struct StreamOutput {
    pub files: Vec<WrittenFile>,
    /// Indexed by [`WrittenFile::partition`].
    pub partitions: Vec<PartitionKey>,
    /// Times a row group was written early to stay within the memory budget.
    pub early_flushes: u64,
}

struct OpenFile {
    file: FileWriter,
    path: Path,
    buffered: usize,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Slot {
    open: Option<OpenFile>,
    next_seq: u32,
    last_used: u64,
}

struct StreamWriter {
    plan: Arc<SinkPlan>,
    stream: usize,
    partitioner: Partitioner,
    slots: Vec<Slot>,
    /// Partition ids with an open file, so eviction and flushing look at open files only.
    open: Vec<usize>,
    clock: u64,
    buffered: usize,
    reservation: MemoryReservation,
    files: Vec<WrittenFile>,
    early_flushes: u64,
}

/// Writes every batch of `input` under the staging folder; on error, aborts the files it had open.
pub(crate) async fn write_stream(
    plan: Arc<SinkPlan>,
    stream: usize,
    mut input: SendableRecordBatchStream,
    reservation: MemoryReservation,
) -> Result<StreamOutput, SinkError> {
    let types = plan
        .partition_columns
        .iter()
        .map(|&c| input.schema().field(c).data_type().clone())
        .collect();
    let partitioner = Partitioner::new(
        plan.partition_columns.clone(),
        plan.partition_names.clone(),
        plan.data_columns.clone(),
        types,
    )
    .map_err(|e| SinkError::Write {
        sink: plan.sink.clone(),
        url: plan.location.to_string(),
        source: Box::new(e),
    })?;
    let mut writer = StreamWriter {
        plan,
        stream,
        partitioner,
        slots: Vec::new(),
        open: Vec::new(),
        clock: 0,
        buffered: 0,
        reservation,
        files: Vec::new(),
        early_flushes: 0,
    };
    let result = async {
        while let Some(batch) = input.next().await {
            let batch = batch.map_err(|e| SinkError::Execute {
                sink: writer.plan.sink.clone(),
                source: Box::new(e),
            })?;
            writer.write_batch(&batch).await?;
        }
        writer.close_all().await
    }
    .await;
    match result {
        Ok(()) => {
            writer.reservation.free();
            Ok(StreamOutput {
                files: writer.files,
                partitions: (0..writer.slots.len())
                    .map(|id| writer.partitioner.key(id).clone())
                    .collect(),
                early_flushes: writer.early_flushes,
            })
        }
        Err(error) => {
            writer.abort_all().await;
            Err(error)
        }
    }
}

impl StreamWriter {
    fn write_error(&self, path: &Path, source: super::file::FileError) -> SinkError {
        SinkError::Write {
            sink: self.plan.sink.clone(),
            url: self.plan.location.url_of(path),
            source,
        }
    }

    async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let pieces = self.partitioner.split(batch).map_err(|e| SinkError::Write {
            sink: self.plan.sink.clone(),
            url: self.plan.location.to_string(),
            source: Box::new(e),
        })?;
        for piece in pieces {
            self.write_piece(piece.id, &piece.batch).await?;
        }
        Ok(())
    }

    async fn write_piece(&mut self, id: usize, batch: &RecordBatch) -> Result<(), SinkError> {
        if self.slots.len() <= id {
            self.slots.resize_with(id + 1, Slot::default);
        }
        if self.slots[id].open.is_none() {
            self.open_file(id).await?;
        }
        self.clock += 1;
        let slot = &mut self.slots[id];
        slot.last_used = self.clock;
        let Some(open) = slot.open.as_mut() else {
            return Ok(());
        };
        if let Err(e) = open.file.write(batch).await {
            let path = open.path.clone();
            return Err(self.write_error(&path, e));
        }
        let now = open.file.buffered();
        self.buffered = self.buffered + now - open.buffered.min(self.buffered);
        open.buffered = now;
        if open.file.size() >= self.plan.target_file_bytes {
            self.close_file(id).await?;
        }
        self.keep_within_budget().await
    }

    /// Opens the next file of partition `id`, closing the least recently used one first when the
    /// stream is at its share of open files or the sink is at its bound.
    async fn open_file(&mut self, id: usize) -> Result<(), SinkError> {
        let permit = loop {
            if self.open.len() < self.plan.open_per_stream
                && let Ok(permit) = Arc::clone(&self.plan.open_files).try_acquire_owned()
            {
                break permit;
            }
            if let Some(lru) = self.open.iter().copied().min_by_key(|&p| self.slots[p].last_used) {
                self.close_file(lru).await?;
                continue;
            }
            // Other streams hold every permit (the bound is below the number of streams); wait
            // for one of them to close a file or finish.
            match Arc::clone(&self.plan.open_files).acquire_owned().await {
                Ok(permit) => break permit,
                Err(_) => {
                    return Err(SinkError::Task {
                        sink: self.plan.sink.clone(),
                        message: "the open-file limiter was closed".to_string(),
                    });
                }
            }
        };
        let seq = self.slots[id].next_seq;
        self.slots[id].next_seq += 1;
        let name = format!(
            "part-{}-{:05}-{:05}.{}",
            self.plan.run_id, self.stream, seq, self.plan.extension
        );
        let rel = &self.partitioner.key(id).rel;
        let raw = if rel.is_empty() {
            join_path(&self.plan.staging, &name)
        } else {
            join_path(&join_path(&self.plan.staging, rel), &name)
        };
        let path = parse_path(&self.plan.sink, &raw)?;
        let file = FileWriter::open(
            Arc::clone(&self.plan.store),
            path.clone(),
            &self.plan.format,
            Arc::clone(&self.plan.data_schema),
            self.plan.upload_buffer_bytes,
        )
        .map_err(|e| self.write_error(&path, e))?;
        let now = self.plan.open_now.fetch_add(1, Ordering::Relaxed) + 1;
        self.plan.peak_open.fetch_max(now, Ordering::Relaxed);
        self.slots[id].open = Some(OpenFile {
            file,
            path,
            buffered: 0,
            _permit: permit,
        });
        self.open.push(id);
        Ok(())
    }

    async fn close_file(&mut self, id: usize) -> Result<(), SinkError> {
        let Some(open) = self.slots[id].open.take() else {
            return Ok(());
        };
        if let Some(at) = self.open.iter().position(|&p| p == id) {
            self.open.swap_remove(at);
        }
        self.plan.open_now.fetch_sub(1, Ordering::Relaxed);
        self.buffered -= open.buffered.min(self.buffered);
        let rows = open.file.rows();
        let path = open.path;
        let bytes = match open.file.close().await {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.write_error(&path, e)),
        };
        self.files.push(WrittenFile {
            path,
            partition: id,
            rows,
            bytes,
        });
        self.reservation
            .shrink(self.reservation.size().saturating_sub(self.buffered));
        Ok(())
    }

    /// Keeps the row groups held in memory within the stream's budget and the memory pool: when
    /// either is exceeded, the largest row group is written out early (smaller row groups beat a
    /// failed run).
    async fn keep_within_budget(&mut self) -> Result<(), SinkError> {
        loop {
            let over_budget = self.buffered > self.plan.buffer_per_stream;
            if !over_budget && self.reservation.try_resize(self.buffered).is_ok() {
                return Ok(());
            }
            let largest = self
                .open
                .iter()
                .copied()
                .filter_map(|p| self.slots[p].open.as_ref().map(|o| (p, o.buffered)))
                .filter(|&(_, b)| b > 0)
                .max_by_key(|&(_, b)| b);
            let Some((id, _)) = largest else {
                // Nothing left to flush: what is held is below what the writers need to work.
                self.reservation.resize(self.buffered.min(self.reservation.size()));
                return Ok(());
            };
            let Some(open) = self.slots[id].open.as_mut() else {
                return Ok(());
            };
            if let Err(e) = open.file.flush().await {
                let path = open.path.clone();
                return Err(self.write_error(&path, e));
            }
            self.early_flushes += 1;
            let before = open.buffered;
            let now = open.file.buffered();
            self.buffered = self.buffered - before.min(self.buffered) + now;
            open.buffered = now;
            self.reservation
                .shrink(self.reservation.size().saturating_sub(self.buffered));
            if now >= before {
                // The writer cannot shed more; stop rather than flush it again and again.
                return Ok(());
            }
        }
    }

    async fn close_all(&mut self) -> Result<(), SinkError> {
        while let Some(&id) = self.open.last() {
            self.close_file(id).await?;
        }
        Ok(())
    }

    async fn abort_all(&mut self) {
        for id in std::mem::take(&mut self.open) {
            if let Some(open) = self.slots[id].open.take() {
                self.plan.open_now.fetch_sub(1, Ordering::Relaxed);
                open.file.abort().await;
            }
        }
        self.reservation.free();
    }
}
