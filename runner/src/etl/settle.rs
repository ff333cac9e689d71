//! The decision to commit, and finishing a commit another attempt decided (docs/runs.md,
//! "Exactly once").
//!
//! A run commits in two halves. Before the decision nothing outside its staging folders has
//! changed, and a failure removes what it staged. The decision is one durable record — in the
//! cluster the attempt's RunResult with outcome Committing, on a laptop a file in the catalog
//! directory — holding the run's result (figures, bookmark) and its [`CommitIntent`]: the sinks
//! whose staged files move into place and the Tables to write. After the decision the run only
//! goes forward: moving files, applying write modes and writing Tables are idempotent, so
//! whoever finds the record ([`finish_commit`]: a settle attempt, `kglue run --run-id` again)
//! finishes the commit, and the run counts as succeeded with its bookmark.

use std::path::{Path, PathBuf};

use kglue_crds::Table;
use kglue_crds::common::{DataFormat, FormatSpec};
use kglue_crds::run_result::{CommitIntent, CommitSink};
use serde::{Deserialize, Serialize};

use super::run::RunResult;
use super::sink::{self, CleanOutcome, SinkError, SinkTarget};
use crate::catalog::Catalog;
use crate::storage::{Location, StoreResolver};

/// Where a run records its decision to commit.
#[async_trait::async_trait]
pub trait Decider: Send {
    /// Records that the run commits, with its result and what finishing takes. Returns once the
    /// record is durable; an error means the run must not commit anything.
    async fn decide(&mut self, result: &RunResult, intent: &CommitIntent) -> Result<(), DecideError>;
}

/// The decision to commit was not recorded, or it cannot be told whether it was.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecideError {
    /// What went wrong.
    pub message: String,
    /// The record may exist (the write's answer was lost): the run must neither go forward nor
    /// remove what it staged, and whoever settles it reads the record to know which way to go.
    pub maybe_recorded: bool,
}

impl DecideError {
    /// The record certainly does not exist.
    pub fn refused(message: impl ToString) -> Self {
        DecideError {
            message: message.to_string(),
            maybe_recorded: false,
        }
    }
}

/// Why a decided commit could not be finished, or leftovers not removed.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// A sink's location or store could not be opened.
    #[error("sink {sink}: {message}")]
    Store {
        /// The sink.
        sink: String,
        /// What went wrong.
        message: String,
    },
    /// Moving, deleting or aborting failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A Table of the intent is not a Table, or could not be written.
    #[error("table {table}: {message}")]
    Table {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
    },
}

/// The sink target of a commit's sink: enough to move, replace and clean (the format and file
/// size only matter when writing).
pub fn commit_target(commit: &CommitSink, resolver: &StoreResolver) -> Result<SinkTarget, SettleError> {
    let error = |message: String| SettleError::Store {
        sink: commit.name.clone(),
        message,
    };
    let location: Location = commit
        .location
        .parse()
        .map_err(|e: crate::storage::LocationError| error(e.to_string()))?;
    let connection = commit.connection.as_deref();
    let store = resolver
        .store(&location, connection)
        .map_err(|e| error(e.to_string()))?;
    let s3 = resolver
        .s3_requests(&location, connection)
        .map_err(|e| error(e.to_string()))?;
    Ok(SinkTarget {
        name: commit.name.clone(),
        store,
        location,
        format: FormatSpec {
            format: DataFormat::Parquet,
            compression: None,
            csv: None,
            json: None,
            grok: None,
            kafka: None,
        },
        partition_by: commit.partition_by.clone(),
        target_file_bytes: 1,
        write_mode: commit.write_mode,
        s3,
    })
}

/// What settling does to a database sink.
enum DatabaseStep {
    /// Apply its staging table unless its commit record says it was (the run decided).
    Finish,
    /// Drop its staging table (the run never decided).
    Clean,
}

/// Settles a database sink from what the decision recorded.
async fn database_step(
    commit: &CommitSink,
    database: &kglue_crds::run_result::DatabaseCommit,
    run_id: &str,
    resolver: &StoreResolver,
    step: DatabaseStep,
) -> Result<(), SettleError> {
    let error = |message: String| SettleError::Store {
        sink: commit.name.clone(),
        message,
    };
    let connection = commit
        .connection
        .as_deref()
        .ok_or_else(|| error("no connection".into()))?;
    let endpoint = resolver
        .database(connection, &format!("sink {}", commit.name))
        .map_err(|e| error(e.to_string()))?;
    let write = super::database_sink::recorded_write(commit, database, run_id, &endpoint).map_err(error)?;
    match step {
        DatabaseStep::Finish => kglue_jdbc::write::finish(&endpoint, &write).await,
        DatabaseStep::Clean => kglue_jdbc::write::clean(&endpoint, &write).await,
    }
    .map_err(|e| error(e.to_string()))
}

/// Finishes the commit `run_id` decided: every sink's staged files move into place and its write
/// mode applies ([`sink::settle`]), then the Tables are written. Idempotent.
pub async fn finish_commit<C: Catalog + ?Sized>(
    intent: &CommitIntent,
    run_id: &str,
    catalog: &mut C,
    resolver: &StoreResolver,
) -> Result<(), SettleError> {
    for commit in &intent.sinks {
        if let Some(database) = &commit.database {
            database_step(commit, database, run_id, resolver, DatabaseStep::Finish).await?;
            continue;
        }
        let target = commit_target(commit, resolver)?;
        sink::settle(&target, run_id).await?;
    }
    for value in &intent.tables {
        let table: Table = serde_json::from_value(value.clone()).map_err(|e| SettleError::Table {
            table: value["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            message: format!("not a Table: {e}"),
        })?;
        let existing = catalog
            .view()
            .table(&table.spec.database_name, &table.spec.table_name)
            .cloned();
        let name = format!("{}.{}", table.spec.database_name, table.spec.table_name);
        catalog
            .write_table(existing.as_ref(), table)
            .await
            .map_err(|e| SettleError::Table {
                table: name,
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Removes what an attempt of `run_id` that never decided left in the sinks' locations: staging
/// folders and incomplete uploads. Nothing else is touched.
pub async fn clean_up(
    sinks: &[CommitSink],
    run_id: &str,
    resolver: &StoreResolver,
) -> Result<CleanOutcome, SettleError> {
    let mut total = CleanOutcome::default();
    for commit in sinks {
        if let Some(database) = &commit.database {
            database_step(commit, database, run_id, resolver, DatabaseStep::Clean).await?;
            continue;
        }
        let target = commit_target(commit, resolver)?;
        let cleaned = sink::clean_attempt(&target, run_id).await?;
        total.staging_objects += cleaned.staging_objects;
        total.uploads_aborted += cleaned.uploads_aborted;
    }
    Ok(total)
}

/// What the local decision record holds: the run's result and what finishing takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    /// The result the run decided with (Succeeded, with figures and bookmark).
    pub result: RunResult,
    /// What finishing the commit takes.
    pub intent: CommitIntent,
}

/// The decision records of `kglue run`: `<catalog dir>/.kglue/commits/<run id>.json`, written
/// before anything moves and removed once the run's bookmark is saved.
pub struct DirLedger {
    dir: PathBuf,
}

impl DirLedger {
    /// The ledger of a catalog directory.
    pub fn new(catalog: &Path) -> Self {
        DirLedger {
            dir: catalog.join(".kglue").join("commits"),
        }
    }

    fn file(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }

    /// The decision `run_id` recorded, if it did and it was not finished.
    pub fn recorded(&self, run_id: &str) -> Result<Option<Recorded>, String> {
        let file = self.file(run_id);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", file.display())),
        }
    }

    /// Forgets a finished run's decision.
    pub fn remove(&self, run_id: &str) -> Result<(), String> {
        match std::fs::remove_file(self.file(run_id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.file(run_id).display())),
        }
    }
}

#[async_trait::async_trait]
impl Decider for DirLedger {
    async fn decide(&mut self, result: &RunResult, intent: &CommitIntent) -> Result<(), DecideError> {
        let record = Recorded {
            result: result.clone(),
            intent: intent.clone(),
        };
        let text = serde_json::to_vec_pretty(&record).map_err(DecideError::refused)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| DecideError::refused(format!("{}: {e}", self.dir.display())))?;
        let file = self.file(&result.run_id);
        let temporary = file.with_extension("json.tmp");
        // Written whole, synced, then renamed: the record exists entirely or not at all.
        let written = (|| {
            use std::io::Write as _;
            let mut handle = std::fs::File::create(&temporary)?;
            handle.write_all(&text)?;
            handle.sync_all()?;
            std::fs::rename(&temporary, &file)
        })();
        // A rename either happened or not: a failure leaves no record.
        written.map_err(|e| DecideError::refused(format!("{}: {e}", file.display())))
    }
}
