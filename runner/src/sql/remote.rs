//! `kglue sql --session NAME`: the prompt and one-shot statements sent to a Session's pod over the
//! PostgreSQL wire protocol (its own client, as psql would be), answers printed as `kglue sql`
//! prints its own. The session runs the statements, so its sandbox, catalog and counts apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::{Answer, SqlError};

/// How long connecting may take before the session is called unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a session.
pub struct RemoteSession {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl RemoteSession {
    /// Connects to `host:port` as `user` (SCRAM with `password`, no TLS: the session's port has
    /// none yet).
    pub async fn connect(host: &str, port: u16, user: &str, password: &str) -> Result<RemoteSession, SqlError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user(user)
            .password(password)
            .dbname("kglue")
            .application_name("kglue sql")
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            SqlError::Catalog(format!(
                "cannot connect to the session at {host}:{port}: {}",
                db_error(&e)
            ))
        })?;
        let connection = tokio::spawn(async move {
            // The connection ends when the client is dropped; an error then is the session going.
            let _ = connection.await;
        });
        Ok(RemoteSession { client, connection })
    }

    /// Runs the statements of `text` in one simple-protocol request: the session runs them in
    /// order and stops at the first that fails. Returns the answers of those that return rows,
    /// or the first error.
    pub async fn run_text(&self, text: &str) -> Result<Vec<Answer>, SqlError> {
        let started = Instant::now();
        let messages = self
            .client
            .simple_query(text)
            .await
            .map_err(|e| SqlError::Engine(db_error(&e)))?;
        let mut answers = Vec::new();
        let mut current: Option<(SchemaRef, Vec<Vec<Option<String>>>)> = None;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => {
                    let fields: Vec<Field> = columns
                        .iter()
                        .map(|c| Field::new(c.name(), DataType::Utf8, true))
                        .collect();
                    current = Some((Arc::new(Schema::new(fields)), Vec::new()));
                }
                SimpleQueryMessage::Row(row) => {
                    if let Some((_, rows)) = current.as_mut() {
                        rows.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
                    }
                }
                SimpleQueryMessage::CommandComplete(_) => {
                    if let Some((schema, rows)) = current.take() {
                        answers.push(text_answer(schema, &rows, started.elapsed())?);
                    }
                }
                _ => {}
            }
        }
        Ok(answers)
    }
}

/// The server's message (and SQLSTATE) rather than tokio-postgres's "db error" wrapper.
fn db_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn text_answer(schema: SchemaRef, rows: &[Vec<Option<String>>], elapsed: Duration) -> Result<Answer, SqlError> {
    let columns: Vec<ArrayRef> = (0..schema.fields().len())
        .map(|i| {
            Arc::new(StringArray::from_iter(
                rows.iter().map(|row| row.get(i).cloned().flatten()),
            )) as ArrayRef
        })
        .collect();
    let batches = if rows.is_empty() || columns.is_empty() {
        Vec::new()
    } else {
        vec![RecordBatch::try_new(schema.clone(), columns).map_err(|e| SqlError::Engine(e.to_string()))?]
    };
    Ok(Answer {
        schema,
        batches,
        reads: None,
        elapsed,
    })
}

/// `\d` sent to a session: every table of its schemas but the system ones.
pub const LIST_TABLES: &str = "SELECT table_schema AS database, table_name AS \"table\" FROM information_schema.tables \
     WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2";

/// `\d DB.TABLE` sent to a session: the table's columns.
pub fn describe_table(database: &str, table: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    format!(
        "SELECT column_name AS \"column\", data_type AS type FROM information_schema.columns \
         WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
        quote(database),
        quote(table)
    )
}
