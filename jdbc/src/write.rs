//! Writing a run's rows into a database table, exactly once.
//!
//! A sink's rows are first loaded into a staging table of its own (PostgreSQL binary `COPY`,
//! MySQL multi-row `INSERT`s), committed, so they survive the runner. Then one transaction applies
//! them to the target — append, replace every row, or upsert on a key — and records the run in
//! the `kglue_commits` table beside the target. That transaction is opened and applied before
//! the run decides to commit (so a constraint the rows break fails the run with the table as it
//! was), and committed after. If the runner stops in between, finishing the run applies the
//! staging table again, unless `kglue_commits` shows it applied: a retried or settled run never
//! writes a row twice.

use std::fmt::Write as _;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use kglue_crds::connection::{JdbcEngine, JdbcTableName};
use mysql_async::prelude::Queryable;
use pgpq::ArrowToPostgresBinaryEncoder;

use crate::read::{quote, string_literal};
use crate::{Endpoint, JdbcError, mysql, postgres, statement_failed};

/// The table that records which runs' sinks were applied, beside each target.
pub const COMMITS_TABLE: &str = "kglue_commits";

/// How a sink's rows meet the rows already in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Insert them.
    Append,
    /// Delete every row, then insert them (one transaction: readers see the old rows or the new).
    Overwrite,
    /// Update the rows whose key exists, insert the rest.
    Upsert {
        /// The key columns.
        keys: Vec<String>,
    },
}

/// One sink's write.
#[derive(Clone, Debug)]
pub struct SinkWrite {
    /// The target table.
    pub target: JdbcTableName,
    /// The columns written, in the output's order.
    pub columns: Vec<String>,
    /// How the rows are applied.
    pub apply: Apply,
    /// The run.
    pub run_id: String,
    /// The sink's name.
    pub sink: String,
    /// `CREATE TABLE IF NOT EXISTS` of the target, when the run creates it: inside the
    /// transaction on PostgreSQL (whose DDL is transactional), before it on MySQL.
    pub create_table: Option<String>,
}

impl SinkWrite {
    /// The staging table's name: one per run and sink, short enough for PostgreSQL's 63 bytes.
    pub fn staging_table(&self) -> String {
        // FNV-1a: stable across builds (std's hasher is not), and collisions only matter within
        // one schema's concurrent runs.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("{}/{}/{}", self.run_id, self.sink, self.target).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("kglue_stage_{hash:016x}")
    }

    fn in_schema(&self, engine: JdbcEngine, table: &str) -> String {
        match &self.target.schema {
            Some(schema) => format!("{}.{}", quote(engine, schema), quote(engine, table)),
            None => format!("{}.{}", quote(engine, &self.target.database), quote(engine, table)),
        }
    }

    fn target_sql(&self, engine: JdbcEngine) -> String {
        self.in_schema(engine, &self.target.table)
    }

    fn staging_sql(&self, engine: JdbcEngine) -> String {
        self.in_schema(engine, &self.staging_table())
    }

    fn commits_sql(&self, engine: JdbcEngine) -> String {
        self.in_schema(engine, COMMITS_TABLE)
    }

    fn column_list(&self, engine: JdbcEngine) -> String {
        self.columns
            .iter()
            .map(|c| quote(engine, c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statements of the applying transaction, in order (after `BEGIN`).
    pub fn apply_statements(&self, engine: JdbcEngine) -> Vec<String> {
        let target = self.target_sql(engine);
        let columns = self.column_list(engine);
        let insert = format!(
            "INSERT INTO {target} ({columns}) SELECT {columns} FROM {}",
            self.staging_sql(engine)
        );
        let mut statements = Vec::new();
        if let (JdbcEngine::Postgres, Some(create)) = (engine, &self.create_table) {
            statements.push(create.clone());
        }
        match &self.apply {
            Apply::Append => statements.push(insert),
            Apply::Overwrite => {
                statements.push(format!("DELETE FROM {target}"));
                statements.push(insert);
            }
            Apply::Upsert { keys } => {
                let updates: Vec<&String> = self.columns.iter().filter(|c| !keys.contains(c)).collect();
                statements.push(match engine {
                    JdbcEngine::Postgres => {
                        let keys = keys.iter().map(|k| quote(engine, k)).collect::<Vec<_>>().join(", ");
                        let action = if updates.is_empty() {
                            "DO NOTHING".to_string()
                        } else {
                            format!(
                                "DO UPDATE SET {}",
                                updates
                                    .iter()
                                    .map(|c| format!("{0} = EXCLUDED.{0}", quote(engine, c)))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        format!("{insert} ON CONFLICT ({keys}) {action}")
                    }
                    JdbcEngine::Mysql => {
                        // Without a column to update, a no-op assignment of the first key.
                        let assignments: Vec<String> = if updates.is_empty() {
                            keys.iter()
                                .take(1)
                                .map(|k| format!("{0} = {0}", quote(engine, k)))
                                .collect()
                        } else {
                            updates
                                .iter()
                                .map(|c| format!("{0} = VALUES({0})", quote(engine, c)))
                                .collect()
                        };
                        format!("{insert} ON DUPLICATE KEY UPDATE {}", assignments.join(", "))
                    }
                });
            }
        }
        statements.push(format!(
            "INSERT INTO {} (run_id, sink, target) VALUES ({}, {}, {})",
            self.commits_sql(engine),
            string_literal(engine, &self.run_id),
            string_literal(engine, &self.sink),
            string_literal(engine, &self.target.to_string())
        ));
        statements
    }

    fn commits_ddl(&self, engine: JdbcEngine) -> String {
        let timestamp = match engine {
            JdbcEngine::Postgres => "timestamp with time zone NOT NULL DEFAULT now()",
            JdbcEngine::Mysql => "timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id varchar(128) NOT NULL, sink varchar(128) NOT NULL, target varchar(255) NOT NULL, committed_at {timestamp}, PRIMARY KEY (run_id, sink, target))",
            self.commits_sql(engine)
        )
    }

    fn applied_sql(&self, engine: JdbcEngine) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE run_id = {} AND sink = {} AND target = {}",
            self.commits_sql(engine),
            string_literal(engine, &self.run_id),
            string_literal(engine, &self.sink),
            string_literal(engine, &self.target.to_string())
        )
    }
}

/// The database type a column of an output's Arrow type is created with.
pub fn column_type(engine: JdbcEngine, data_type: &DataType, key: bool) -> Result<String, String> {
    let pg = engine == JdbcEngine::Postgres;
    Ok(match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 => if pg { "integer" } else { "int" }.into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => if pg { "real" } else { "float" }.into(),
        DataType::Float64 => if pg { "double precision" } else { "double" }.into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match (pg, key) {
            (true, _) => "text".into(),
            // A MySQL key column needs a bounded length.
            (false, true) => "varchar(255)".into(),
            (false, false) => "longtext".into(),
        },
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => if pg { "bytea" } else { "longblob" }.into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => if pg { "timestamp" } else { "datetime(6)" }.into(),
        other => return Err(format!("{other} cannot be written to a database column")),
    })
}

/// `CREATE TABLE target (…)` for an output, with the key as its primary key.
pub fn create_table_sql(
    engine: JdbcEngine,
    target: &JdbcTableName,
    schema: &SchemaRef,
    keys: &[String],
) -> Result<String, String> {
    let write = SinkWrite {
        target: target.clone(),
        columns: Vec::new(),
        apply: Apply::Append,
        run_id: String::new(),
        sink: String::new(),
        create_table: None,
    };
    table_ddl(engine, &write.target_sql(engine), schema, keys, "")
}

fn table_ddl(
    engine: JdbcEngine,
    name: &str,
    schema: &SchemaRef,
    keys: &[String],
    if_not: &str,
) -> Result<String, String> {
    let mut columns = Vec::new();
    for field in schema.fields() {
        let key = keys.contains(field.name());
        let type_ = column_type(engine, field.data_type(), key).map_err(|e| format!("column {}: {e}", field.name()))?;
        columns.push(format!(
            "{} {type_}{}",
            quote(engine, field.name()),
            if key { " NOT NULL" } else { "" }
        ));
    }
    if !keys.is_empty() {
        columns.push(format!(
            "PRIMARY KEY ({})",
            keys.iter().map(|k| quote(engine, k)).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(format!("CREATE TABLE {if_not}{name} ({})", columns.join(", ")))
}

/// A session of a sink's write, from loading the staging table to committing.
pub enum Session {
    /// PostgreSQL.
    Postgres(tokio_postgres::Client),
    /// MySQL.
    Mysql(mysql_async::Conn),
}

impl Session {
    /// Opens a session on `endpoint`, in UTC.
    pub async fn open(endpoint: &Endpoint) -> Result<Session, JdbcError> {
        let mut session = match endpoint.url.engine {
            JdbcEngine::Postgres => Session::Postgres(postgres::connect(endpoint).await?),
            JdbcEngine::Mysql => Session::Mysql(mysql::connect(endpoint).await?),
        };
        let utc = match &session {
            Session::Postgres(_) => "SET TIME ZONE 'UTC'",
            Session::Mysql(_) => "SET time_zone = '+00:00'",
        };
        session.execute(utc).await?;
        Ok(session)
    }

    fn engine(&self) -> JdbcEngine {
        match self {
            Session::Postgres(_) => JdbcEngine::Postgres,
            Session::Mysql(_) => JdbcEngine::Mysql,
        }
    }

    /// Runs one statement.
    pub async fn execute(&mut self, sql: &str) -> Result<(), JdbcError> {
        let engine = self.engine();
        match self {
            Session::Postgres(client) => client.batch_execute(sql).await.map_err(statement_failed(engine, sql)),
            Session::Mysql(conn) => conn.query_drop(sql).await.map_err(statement_failed(engine, sql)),
        }
    }

    async fn count(&mut self, sql: &str) -> Result<i64, JdbcError> {
        let engine = self.engine();
        match self {
            Session::Postgres(client) => {
                let row = client
                    .query_one(sql, &[])
                    .await
                    .map_err(statement_failed(engine, sql))?;
                row.try_get(0).map_err(statement_failed(engine, sql))
            }
            Session::Mysql(conn) => {
                let count: Option<i64> = conn.query_first(sql).await.map_err(statement_failed(engine, sql))?;
                Ok(count.unwrap_or(0))
            }
        }
    }

    /// Creates the staging table for `write` with the output's `schema` (replacing one an earlier
    /// attempt of the same run left), and the commits table if it is missing.
    pub async fn create_staging(&mut self, write: &SinkWrite, schema: &SchemaRef) -> Result<(), JdbcError> {
        let engine = self.engine();
        self.execute(&write.commits_ddl(engine)).await?;
        self.execute(&format!("DROP TABLE IF EXISTS {}", write.staging_sql(engine)))
            .await?;
        let ddl = table_ddl(engine, &write.staging_sql(engine), schema, &[], "").map_err(JdbcError::Arrow)?;
        self.execute(&ddl).await
    }

    /// Loads every batch of `batches`, of the output's `schema`, into the staging table; returns
    /// the rows loaded. On PostgreSQL one binary `COPY` takes the whole output, so the server
    /// stores rows while the next batch is encoded; a failure of the output itself is
    /// `Err(Err(message))`.
    pub async fn load<S>(&mut self, write: &SinkWrite, schema: &SchemaRef, mut batches: S) -> Result<u64, LoadError>
    where
        S: futures::Stream<Item = Result<RecordBatch, String>> + Unpin,
    {
        let engine = self.engine();
        let staging = write.staging_sql(engine);
        let columns = write.column_list(engine);
        let mut rows = 0u64;
        match self {
            Session::Postgres(client) => {
                let mut encoder = BinaryCopy::new(schema).map_err(|e| LoadError::Database(JdbcError::Arrow(e)))?;
                let statement = format!("COPY {staging} ({columns}) FROM STDIN (FORMAT binary)");
                let failed = statement_failed(engine, &statement);
                let sink = client
                    .copy_in::<_, Bytes>(statement.as_str())
                    .await
                    .map_err(|e| LoadError::Database(failed(e)))?;
                futures::pin_mut!(sink);
                let encoded =
                    |bytes: Result<Bytes, String>| bytes.map_err(|e| LoadError::Database(JdbcError::Arrow(e)));
                sink.send(encoded(encoder.header())?)
                    .await
                    .map_err(|e| LoadError::Database(failed(e)))?;
                while let Some(batch) = futures::StreamExt::next(&mut batches).await {
                    let batch = batch.map_err(LoadError::Output)?;
                    rows += batch.num_rows() as u64;
                    sink.send(encoded(encoder.batch(&batch))?)
                        .await
                        .map_err(|e| LoadError::Database(failed(e)))?;
                }
                sink.send(encoded(encoder.footer())?)
                    .await
                    .map_err(|e| LoadError::Database(failed(e)))?;
                sink.as_mut()
                    .finish()
                    .await
                    .map_err(|e| LoadError::Database(failed(e)))?;
            }
            Session::Mysql(conn) => {
                while let Some(batch) = futures::StreamExt::next(&mut batches).await {
                    let batch = batch.map_err(LoadError::Output)?;
                    rows += batch.num_rows() as u64;
                    let statements = insert_statements(&staging, &columns, &batch)
                        .map_err(|e| LoadError::Database(JdbcError::Arrow(e)))?;
                    for statement in statements {
                        conn.query_drop(&statement).await.map_err(|e| {
                            LoadError::Database(statement_failed(engine, "INSERT INTO the staging table")(e))
                        })?;
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Whether `write` was applied already (its run is in the commits table).
    pub async fn applied(&mut self, write: &SinkWrite) -> Result<bool, JdbcError> {
        let engine = self.engine();
        Ok(self.count(&write.applied_sql(engine)).await? > 0)
    }

    /// Begins the applying transaction and applies `write` in it; nothing is visible to others
    /// until [`Session::commit`].
    pub async fn begin_apply(&mut self, write: &SinkWrite) -> Result<(), JdbcError> {
        if self.applied(write).await? {
            return Err(JdbcError::AlreadyApplied {
                run_id: write.run_id.clone(),
                sink: write.sink.clone(),
                target: write.target.to_string(),
            });
        }
        let begin = match (self.engine(), &write.create_table) {
            (JdbcEngine::Postgres, _) => "BEGIN",
            (JdbcEngine::Mysql, create) => {
                if let Some(create) = create {
                    self.execute(create).await?;
                }
                "START TRANSACTION"
            }
        };
        self.execute(begin).await?;
        for statement in write.apply_statements(self.engine()) {
            if let Err(error) = self.execute(&statement).await {
                let _ = self.execute("ROLLBACK").await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Commits the applying transaction.
    pub async fn commit(&mut self) -> Result<(), JdbcError> {
        self.execute("COMMIT").await
    }

    /// Rolls the applying transaction back.
    pub async fn rollback(&mut self) -> Result<(), JdbcError> {
        self.execute("ROLLBACK").await
    }

    /// Drops the staging table.
    pub async fn drop_staging(&mut self, write: &SinkWrite) -> Result<(), JdbcError> {
        let engine = self.engine();
        self.execute(&format!("DROP TABLE IF EXISTS {}", write.staging_sql(engine)))
            .await
    }

    /// The rows of the staging table.
    pub async fn staged_rows(&mut self, write: &SinkWrite) -> Result<i64, JdbcError> {
        let engine = self.engine();
        self.count(&format!("SELECT count(*) FROM {}", write.staging_sql(engine)))
            .await
    }
}

/// Why loading a staging table stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Computing the output failed (the engine's message).
    #[error("{0}")]
    Output(String),
    /// The database refused the rows.
    #[error(transparent)]
    Database(#[from] JdbcError),
}

/// Finishes a write whose run decided to commit: applies the staging table unless the commits
/// table shows it applied, then drops it. Idempotent.
pub async fn finish(endpoint: &Endpoint, write: &SinkWrite) -> Result<(), JdbcError> {
    let mut session = Session::open(endpoint).await?;
    if !session.applied(write).await? {
        session.begin_apply(write).await?;
        session.commit().await?;
    }
    session.drop_staging(write).await
}

/// Removes what an attempt that never decided left: its staging table.
pub async fn clean(endpoint: &Endpoint, write: &SinkWrite) -> Result<(), JdbcError> {
    Session::open(endpoint).await?.drop_staging(write).await
}

fn formatter(array: &ArrayRef) -> Result<ArrayFormatter<'_>, String> {
    let options = FormatOptions::new()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.6f"))
        .with_date_format(Some("%Y-%m-%d"));
    ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())
}

/// An output's batches in PostgreSQL's binary `COPY` format, for a staging table made by
/// [`table_ddl`] from the same schema. The few Arrow types pgpq does not send are cast to ones
/// of the same column type first: nanoseconds to microseconds (PostgreSQL's precision), `Date64`
/// to days, views to plain arrays.
struct BinaryCopy {
    encoder: ArrowToPostgresBinaryEncoder,
    wire: SchemaRef,
}

impl BinaryCopy {
    fn new(schema: &SchemaRef) -> Result<BinaryCopy, String> {
        let wire: SchemaRef = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|field| Field::new(field.name(), wire_type(field.data_type()), field.is_nullable()))
                .collect::<Vec<_>>(),
        ));
        let encoder = ArrowToPostgresBinaryEncoder::try_new(&wire).map_err(|e| e.to_string())?;
        Ok(BinaryCopy { encoder, wire })
    }

    fn header(&mut self) -> Result<Bytes, String> {
        let mut buffer = BytesMut::new();
        self.encoder.write_header(&mut buffer).map_err(|e| e.to_string())?;
        Ok(buffer.freeze())
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, String> {
        let columns = batch
            .columns()
            .iter()
            .zip(self.wire.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type()).map_err(|e| format!("column {}: {e}", field.name()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.wire.clone(), columns).map_err(|e| e.to_string())?;
        let mut buffer = BytesMut::new();
        self.encoder
            .write_batch(&batch, &mut buffer)
            .map_err(|e| e.to_string())?;
        Ok(buffer.freeze())
    }

    fn footer(&mut self) -> Result<Bytes, String> {
        let mut buffer = BytesMut::new();
        self.encoder.write_footer(&mut buffer).map_err(|e| e.to_string())?;
        Ok(buffer.freeze())
    }
}

/// The Arrow type a column is sent to PostgreSQL as (see [`BinaryCopy`]).
fn wire_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Date64 => DataType::Date32,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

/// The most bytes one MySQL `INSERT` carries (MariaDB's max_allowed_packet defaults to 16 MiB).
const MYSQL_STATEMENT_BYTES: usize = 4 << 20;

/// A batch as multi-row `INSERT`s of at most [`MYSQL_STATEMENT_BYTES`] each.
fn insert_statements(table: &str, columns: &str, batch: &RecordBatch) -> Result<Vec<String>, String> {
    let formatters = batch.columns().iter().map(formatter).collect::<Result<Vec<_>, _>>()?;
    let head = format!("INSERT INTO {table} ({columns}) VALUES ");
    let mut statements = Vec::new();
    let mut statement = head.clone();
    for row in 0..batch.num_rows() {
        let mut values = String::from("(");
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                values.push_str(", ");
            }
            if column.is_null(row) {
                values.push_str("NULL");
                continue;
            }
            match column.data_type() {
                DataType::Utf8 => {
                    values.push_str(&string_literal(JdbcEngine::Mysql, column.as_string::<i32>().value(row)))
                }
                DataType::LargeUtf8 => {
                    values.push_str(&string_literal(JdbcEngine::Mysql, column.as_string::<i64>().value(row)))
                }
                DataType::Binary => {
                    values.push_str("X'");
                    for byte in column.as_binary::<i32>().value(row) {
                        let _ = write!(values, "{byte:02x}");
                    }
                    values.push('\'');
                }
                DataType::Boolean => values.push_str(if column.as_boolean().value(row) {
                    "TRUE"
                } else {
                    "FALSE"
                }),
                DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(TimeUnit::Microsecond, _)
                | DataType::Timestamp(..) => {
                    let _ = write!(values, "'{}'", formatters[i].value(row));
                }
                _ => {
                    let _ = write!(values, "{}", formatters[i].value(row));
                }
            }
        }
        values.push(')');
        if statement.len() > head.len() && statement.len() + values.len() > MYSQL_STATEMENT_BYTES {
            statements.push(std::mem::replace(&mut statement, head.clone()));
        }
        if statement.len() > head.len() {
            statement.push_str(", ");
        }
        statement.push_str(&values);
    }
    if statement.len() > head.len() {
        statements.push(statement);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryViewArray, Date64Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn write(apply: Apply) -> SinkWrite {
        SinkWrite {
            target: JdbcTableName {
                database: "sales".into(),
                schema: Some("public".into()),
                table: "daily".into(),
            },
            columns: vec!["day".into(), "revenue".into()],
            apply,
            run_id: "r1".into(),
            sink: "daily".into(),
            create_table: None,
        }
    }

    #[test]
    fn each_mode_is_one_transaction_that_records_the_run() {
        let upsert = write(Apply::Upsert {
            keys: vec!["day".into()],
        });
        let staging = upsert.staging_table();
        assert!(staging.len() <= 63 && staging.starts_with("kglue_stage_"));
        assert_eq!(
            upsert.apply_statements(JdbcEngine::Postgres),
            [
                format!("INSERT INTO \"public\".\"daily\" (\"day\", \"revenue\") SELECT \"day\", \"revenue\" FROM \"public\".\"{staging}\" ON CONFLICT (\"day\") DO UPDATE SET \"revenue\" = EXCLUDED.\"revenue\""),
                "INSERT INTO \"public\".\"kglue_commits\" (run_id, sink, target) VALUES ('r1', 'daily', 'sales.public.daily')".to_string(),
            ]
        );
        let mysql = SinkWrite {
            target: JdbcTableName {
                database: "shop".into(),
                schema: None,
                table: "daily".into(),
            },
            ..upsert
        };
        assert!(
            mysql.apply_statements(JdbcEngine::Mysql)[0]
                .ends_with("ON DUPLICATE KEY UPDATE `revenue` = VALUES(`revenue`)")
        );
        let overwrite = write(Apply::Overwrite).apply_statements(JdbcEngine::Postgres);
        assert_eq!(overwrite[0], "DELETE FROM \"public\".\"daily\"");
        assert_eq!(overwrite.len(), 3);
    }

    #[test]
    fn mysql_rows_are_encoded_with_every_special_character_kept() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), Some("it's")])),
            ],
        )
        .expect("a batch");
        assert_eq!(
            insert_statements("`t`", "`id`, `note`", &batch).expect("inserts"),
            ["INSERT INTO `t` (`id`, `note`) VALUES (1, 'a\tb\\\\c\nd'), (NULL, 'it''s')"]
        );
    }

    #[test]
    fn postgres_rows_are_sent_in_binary_with_the_types_postgres_lacks_cast_first() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("day", DataType::Date64, true),
            Field::new("raw", DataType::BinaryView, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![7])),
                // 2000-01-01 00:00:01.000001999: PostgreSQL's epoch plus 1,000,001 µs.
                Arc::new(TimestampNanosecondArray::from(vec![Some(946_684_801_000_001_999)])),
                Arc::new(Date64Array::from(vec![None])),
                Arc::new(BinaryViewArray::from(vec![Some(b"ab".as_slice())])),
            ],
        )
        .expect("a batch");
        let mut copy = BinaryCopy::new(&schema).expect("every type has a wire type");
        let header = copy.header().expect("header");
        assert!(header.starts_with(b"PGCOPY\n\xff\r\n\0"));
        let row = copy.batch(&batch).expect("encodes");
        let mut expected = vec![0, 4];
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1_000_001i64.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        assert_eq!(row.as_ref(), expected.as_slice());
        assert_eq!(copy.footer().expect("footer").as_ref(), [0xff, 0xff]);
        let unwritable = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(
                        vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Utf8, true),
                        ]
                        .into(),
                    ),
                    false,
                )),
                false,
            ),
            true,
        )]));
        let error = BinaryCopy::new(&unwritable)
            .err()
            .expect("a map has no PostgreSQL type");
        assert!(error.contains("tags"), "{error}");
    }
}
