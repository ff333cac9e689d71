//! A job's sinks into database tables (storage format `Jdbc`): the output is loaded into a
//! staging table, then applied to the target in one transaction that is opened before the run
//! decides to commit and committed after (`kglue_jdbc::write`). A row the target refuses (a
//! constraint, a type) fails the run before the decision, with the table as it was; a run that
//! stops after deciding is finished from the staging table, once.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use kglue_crds::common::StorageSpec;
use kglue_crds::connection::JdbcTableName;
use kglue_crds::job::{JobSink, WriteMode};
use kglue_crds::run_result::{CommitSink, DatabaseCommit};
use kglue_jdbc::Endpoint;
use kglue_jdbc::schema::describe_table;
use kglue_jdbc::write::{Apply, Session, SinkWrite, create_table_sql};

use crate::storage::StoreResolver;

/// A sink into a database table, planned.
pub struct DatabaseSink {
    /// The sink as the job declares it.
    pub spec: JobSink,
    endpoint: Endpoint,
    storage: StorageSpec,
    write: SinkWrite,
    plan: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    /// `CREATE TABLE IF NOT EXISTS …` when the table is missing and the sink creates it.
    create_table: Option<String>,
}

/// A staged sink whose applying transaction is open.
pub struct OpenWrite {
    session: Session,
    /// Rows written.
    pub rows: u64,
}

impl DatabaseSink {
    /// Plans the sink's write of `frame` into the table `storage` names; checks the table (its
    /// columns, its key) before anything is written.
    pub async fn prepare(
        job_sink: &JobSink,
        frame: DataFrame,
        storage: &StorageSpec,
        resolver: &StoreResolver,
        run_id: &str,
        index: usize,
    ) -> Result<DatabaseSink, String> {
        let connection = storage
            .connection
            .as_deref()
            .ok_or("a database table (format Jdbc) needs a connection")?;
        let endpoint = resolver
            .database(connection, &format!("spec.sinks[{index}].storage.connection"))
            .map_err(|e| e.to_string())?;
        let target = JdbcTableName::parse(&storage.location, &endpoint.url)?;
        if !job_sink.partition_by.is_empty() {
            return Err("a database table has no partition folders: remove partitionBy".into());
        }
        let options = job_sink.jdbc.clone().unwrap_or_default();
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let existing = describe_target(&endpoint, &target).await?;
        let keys = match (&existing, options.upsert_keys.is_empty()) {
            (_, false) => options.upsert_keys.clone(),
            (Some((_, primary_key)), true) => primary_key.clone(),
            (None, true) => Vec::new(),
        };
        let apply = match job_sink.write_mode {
            WriteMode::Append => Apply::Append,
            WriteMode::Overwrite => Apply::Overwrite,
            WriteMode::Upsert if keys.is_empty() => {
                return Err(format!(
                    "writeMode Upsert needs a key: {target} has no primary key, so set jdbc.upsertKeys"
                ));
            }
            WriteMode::Upsert => Apply::Upsert { keys: keys.clone() },
            WriteMode::OverwritePartitions => {
                return Err("a database table has no partitions to overwrite: use Overwrite or Upsert".into());
            }
        };
        if let Apply::Upsert { keys } = &apply
            && let Some(missing) = keys.iter().find(|k| !columns.contains(k))
        {
            return Err(format!(
                "the upsert key column {missing:?} is not in the output (its columns: {})",
                columns.join(", ")
            ));
        }
        let create_table = match &existing {
            Some((table_columns, _)) => {
                if let Some(missing) = columns.iter().find(|c| !table_columns.contains(c)) {
                    return Err(format!(
                        "the output's column {missing:?} is not a column of {target} (its columns: {})",
                        table_columns.join(", ")
                    ));
                }
                None
            }
            None if options.create_table => {
                let ddl = create_table_sql(endpoint.url.engine, &target, &schema, &keys)?;
                Some(ddl.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1))
            }
            None => {
                return Err(format!(
                    "table {target} does not exist (or the Connection's user cannot see it): create it, or set jdbc.createTable to create it from the output"
                ));
            }
        };
        let plan = frame.create_physical_plan().await.map_err(|e| e.to_string())?;
        Ok(DatabaseSink {
            spec: job_sink.clone(),
            endpoint,
            storage: storage.clone(),
            write: SinkWrite {
                target,
                columns,
                apply,
                run_id: run_id.to_string(),
                sink: job_sink.name.clone(),
                create_table: create_table.clone(),
            },
            plan,
            schema,
            create_table,
        })
    }

    /// What finishing the sink's commit takes, for the run's decision.
    pub fn commit_sink(&self) -> CommitSink {
        let mut commit = CommitSink::of(&self.spec, &self.storage);
        commit.database = Some(DatabaseCommit {
            columns: self.write.columns.clone(),
            upsert_keys: match &self.write.apply {
                Apply::Upsert { keys } => keys.clone(),
                _ => Vec::new(),
            },
            create_table: self.create_table.clone(),
        });
        commit
    }

    /// One line for `--explain`.
    pub fn describe(&self) -> String {
        let statements = self.write.apply_statements(self.endpoint.url.engine);
        format!(
            "\nsink {} → {} {} ({:?}, one transaction: {})\n",
            self.spec.name,
            self.endpoint.url.engine,
            self.write.target,
            self.spec.write_mode,
            statements.join("; ")
        )
    }

    /// The output's plan.
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }

    /// Runs the output into the staging table, then opens the applying transaction and applies
    /// it: the target's own checks run now, before the run decides.
    pub async fn stage(&self, task_ctx: Arc<TaskContext>) -> Result<OpenWrite, String> {
        let mut session = Session::open(&self.endpoint).await.map_err(|e| e.to_string())?;
        session
            .create_staging(&self.write, &self.schema)
            .await
            .map_err(|e| e.to_string())?;
        let batches = execute_stream(self.plan.clone(), task_ctx)
            .map_err(|e| e.to_string())?
            .map(|batch| batch.map_err(|e| e.to_string()));
        let rows = session
            .load(&self.write, &self.schema, batches)
            .await
            .map_err(|e| e.to_string())?;
        session.begin_apply(&self.write).await.map_err(|e| e.to_string())?;
        Ok(OpenWrite { session, rows })
    }

    /// Commits an open write; when the commit's outcome is unknown (the session broke),
    /// finishes from the staging table, which the commits table keeps from applying twice.
    pub async fn commit(&self, open: &mut OpenWrite) -> Result<(), String> {
        if open.session.commit().await.is_err() {
            kglue_jdbc::write::finish(&self.endpoint, &self.write)
                .await
                .map_err(|e| e.to_string())?;
        }
        // The rows are in: the staging table is only clutter now.
        let _ = open.session.drop_staging(&self.write).await;
        Ok(())
    }

    /// Undoes an open write (the run failed before deciding) and removes the staging table.
    pub async fn abandon(&self, open: Option<&mut OpenWrite>) {
        match open {
            Some(open) => {
                let _ = open.session.rollback().await;
                let _ = open.session.drop_staging(&self.write).await;
            }
            None => {
                let _ = kglue_jdbc::write::clean(&self.endpoint, &self.write).await;
            }
        }
    }
}

/// The write a decided commit's database sink finishes, from what the decision recorded.
pub fn recorded_write(
    commit: &CommitSink,
    database: &DatabaseCommit,
    run_id: &str,
    endpoint: &Endpoint,
) -> Result<SinkWrite, String> {
    Ok(SinkWrite {
        target: JdbcTableName::parse(&commit.location, &endpoint.url)?,
        columns: database.columns.clone(),
        apply: match commit.write_mode {
            WriteMode::Overwrite => Apply::Overwrite,
            WriteMode::Upsert => Apply::Upsert {
                keys: database.upsert_keys.clone(),
            },
            _ => Apply::Append,
        },
        run_id: run_id.to_string(),
        sink: commit.name.clone(),
        create_table: database.create_table.clone(),
    })
}

/// A target's columns and primary key, or `None` when it does not exist.
async fn describe_target(
    endpoint: &Endpoint,
    target: &JdbcTableName,
) -> Result<Option<(Vec<String>, Vec<String>)>, String> {
    Ok(describe_table(endpoint, target)
        .await?
        .map(|t| (t.columns.into_iter().map(|c| c.name).collect(), t.primary_key)))
}
