//! Reading a database into Arrow: the SQL a read sends (a relation, the columns asked for, the
//! conditions pushed into the database, a limit), and the rows it returns as record batches of
//! the columns' Glue types. PostgreSQL reads run in one read-only repeatable-read transaction
//! through a cursor (`fetchSize` rows per round trip); MySQL streams rows over the binary
//! protocol. Sessions read in UTC, so timestamps and the conditions on them mean one instant.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use kglue_crds::connection::{JdbcEngine, JdbcTableName};
use kglue_crds::glue_type::GlueType;
use mysql_async::prelude::Queryable;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::{Kind, Type};

use crate::cells::{BatchBuilder, Cell, days_from_civil, parse_decimal};
use crate::{Endpoint, JdbcError, mysql, postgres, statement_failed};

/// What a read selects from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relation {
    /// A table or view.
    Table(JdbcTableName),
    /// A query of the job's own, read as a derived table.
    Query(String),
}

/// One read: what, which columns, under which conditions.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// The relation.
    pub relation: Relation,
    /// The columns, with the Glue types they are read as; empty to count rows only.
    pub columns: Vec<(String, GlueType)>,
    /// Conditions in the engine's SQL, all of which must hold.
    pub conditions: Vec<String>,
    /// `ORDER BY` terms in the engine's SQL (`"id" DESC`); empty for none.
    pub order_by: Vec<String>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

/// A name as the engine quotes it: `"name"` or `` `name` ``.
pub fn quote(engine: JdbcEngine, name: &str) -> String {
    match engine {
        JdbcEngine::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
        JdbcEngine::Mysql => format!("`{}`", name.replace('`', "``")),
    }
}

/// A string literal as the engine reads it (MySQL also treats backslashes as escapes).
pub fn string_literal(engine: JdbcEngine, text: &str) -> String {
    match engine {
        JdbcEngine::Postgres => format!("'{}'", text.replace('\'', "''")),
        JdbcEngine::Mysql => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''")),
    }
}

/// `value` (as [`Cell::to_text`] writes it) as a literal of the Glue type `glue`, checked so that
/// a bookmark edited by hand cannot carry SQL: whole numbers and decimals must parse, dates and
/// timestamps hold only digits and separators, text is quoted.
pub fn typed_literal(engine: JdbcEngine, glue: &GlueType, value: &str) -> Result<String, String> {
    let refuse = || format!("{value:?} is not a {glue} value");
    Ok(match glue {
        GlueType::TinyInt | GlueType::SmallInt | GlueType::Int | GlueType::BigInt => {
            value.parse::<i128>().map_err(|_| refuse())?.to_string()
        }
        GlueType::Decimal { scale, .. } => {
            parse_decimal(value, *scale).map_err(|_| refuse())?;
            value.trim().to_string()
        }
        GlueType::Float | GlueType::Double => value.parse::<f64>().map_err(|_| refuse())?.to_string(),
        GlueType::String | GlueType::Char(_) | GlueType::Varchar(_) => string_literal(engine, value),
        GlueType::Date | GlueType::Timestamp => {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit() || " -:.".contains(c)) {
                return Err(refuse());
            }
            let keyword = if *glue == GlueType::Date { "DATE" } else { "TIMESTAMP" };
            format!("{keyword} '{value}'")
        }
        other => return Err(format!("{other} is not a key type")),
    })
}

/// Whether a column of this Glue type can hold a key bookmark: it must have an order the
/// database and kglue agree on.
pub fn orderable_key(glue: &GlueType) -> bool {
    matches!(
        glue,
        GlueType::TinyInt
            | GlueType::SmallInt
            | GlueType::Int
            | GlueType::BigInt
            | GlueType::Decimal { .. }
            | GlueType::String
            | GlueType::Char(_)
            | GlueType::Varchar(_)
            | GlueType::Date
            | GlueType::Timestamp
    )
}

impl Relation {
    /// The relation as a FROM item.
    pub fn sql(&self, engine: JdbcEngine) -> String {
        match self {
            Relation::Table(name) => match &name.schema {
                Some(schema) => format!("{}.{}", quote(engine, schema), quote(engine, &name.table)),
                None => format!("{}.{}", quote(engine, &name.database), quote(engine, &name.table)),
            },
            Relation::Query(query) => format!(
                "({}) AS {}",
                query.trim().trim_end_matches(';'),
                quote(engine, "kglue_query")
            ),
        }
    }
}

impl Read {
    /// The statement, each column read through `casts[i]` when given (PostgreSQL types the
    /// reader decodes as text).
    pub fn sql(&self, engine: JdbcEngine, casts: &[Option<&str>]) -> String {
        let columns = if self.columns.is_empty() {
            "1".to_string()
        } else {
            self.columns
                .iter()
                .enumerate()
                .map(|(i, (name, _))| match casts.get(i).copied().flatten() {
                    Some(cast) => format!("CAST({0} AS {cast}) AS {0}", quote(engine, name)),
                    None => quote(engine, name),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!("SELECT {columns} FROM {}", self.relation.sql(engine));
        if !self.conditions.is_empty() {
            let conditions: Vec<String> = self.conditions.iter().map(|c| format!("({c})")).collect();
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if !self.order_by.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&self.order_by.join(", "));
        }
        if let Some(limit) = self.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }
}

/// A failure to turn a value into its column's type, naming the column and the row.
fn value_error(column: &str, row: u64, message: String) -> JdbcError {
    JdbcError::Value {
        column: column.to_string(),
        row,
        message,
    }
}

/// The rows of `read` as batches of `schema` (whose fields are `read.columns`, or none), at most
/// `batch_rows` rows each. Reading runs on its own task; dropping the stream ends it.
pub fn stream(
    endpoint: Endpoint,
    read: Read,
    schema: SchemaRef,
    batch_rows: usize,
) -> BoxStream<'static, Result<RecordBatch, JdbcError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let batch_rows = batch_rows.max(1);
        let outcome = match endpoint.url.engine {
            JdbcEngine::Postgres => read_postgres(&endpoint, &read, schema, batch_rows, &sender).await,
            JdbcEngine::Mysql => read_mysql(&endpoint, &read, schema, batch_rows, &sender).await,
        };
        if let Err(error) = outcome {
            let _ = sender.send(Err(error)).await;
        }
    });
    Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

type Sender = tokio::sync::mpsc::Sender<Result<RecordBatch, JdbcError>>;

/// Sends a batch; `false` when the reader is gone (a limit was reached, the run stopped).
async fn send(sender: &Sender, builder: &mut BatchBuilder) -> Result<bool, JdbcError> {
    let batch = builder.finish().map_err(JdbcError::Arrow)?;
    Ok(sender.send(Ok(batch)).await.is_ok())
}

/// PostgreSQL's binary COPY stream split into rows, whatever the chunks' boundaries: the
/// signature and header first, then per row a field count and length-prefixed values, then -1.
#[derive(Default)]
struct CopyParser {
    /// A row (or the header) begun in an earlier chunk.
    pending: BytesMut,
    header_read: bool,
}

/// The 11-byte signature of a binary COPY stream, then 4 bytes of flags and 4 of extension length.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl CopyParser {
    /// Calls `row` with each complete row of `chunk` (and of what was pending), from its field
    /// count on.
    fn rows(&mut self, chunk: Bytes, mut row: impl FnMut(&[u8]) -> Result<(), JdbcError>) -> Result<(), JdbcError> {
        let data: Bytes = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        let mut at = 0;
        if !self.header_read {
            let Some(end) = header_end(&data)? else {
                self.pending.extend_from_slice(&data);
                return Ok(());
            };
            self.header_read = true;
            at = end;
        }
        while at < data.len() {
            match row_end(&data[at..])? {
                Some(RowEnd::Row(length)) => {
                    row(&data[at..at + length])?;
                    at += length;
                }
                Some(RowEnd::Trailer) => return Ok(()),
                None => break,
            }
        }
        self.pending.extend_from_slice(&data[at..]);
        Ok(())
    }
}

fn copy_error(message: &str) -> JdbcError {
    JdbcError::Arrow(format!("the COPY stream is malformed: {message}"))
}

/// Where the header ends, if it is complete.
fn header_end(data: &[u8]) -> Result<Option<usize>, JdbcError> {
    if data.len() < COPY_SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if !data.starts_with(COPY_SIGNATURE) {
        return Err(copy_error("no binary COPY signature"));
    }
    let at = COPY_SIGNATURE.len() + 4;
    let extension = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
    let end = at + 4 + extension;
    Ok((data.len() >= end).then_some(end))
}

enum RowEnd {
    Row(usize),
    Trailer,
}

/// The length of the row at the start of `data`, if it is complete.
fn row_end(data: &[u8]) -> Result<Option<RowEnd>, JdbcError> {
    let Some(count) = data.get(..2) else {
        return Ok(None);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Some(RowEnd::Trailer));
    }
    if count < 0 {
        return Err(copy_error("a negative field count"));
    }
    let mut at = 2;
    for _ in 0..count {
        let Some(length) = data.get(at..at + 4) else {
            return Ok(None);
        };
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        at += 4 + usize::try_from(length).unwrap_or(0);
        if at > data.len() {
            return Ok(None);
        }
    }
    Ok(Some(RowEnd::Row(at)))
}

/// The values of one complete row, in order.
struct Fields<'a> {
    row: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    /// The next value's bytes, `None` for null.
    fn next(&mut self) -> Result<Option<&'a [u8]>, String> {
        let length = self
            .row
            .get(self.at..self.at + 4)
            .ok_or("the row has fewer values than columns")?;
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        self.at += 4;
        if length < 0 {
            return Ok(None);
        }
        let end = self.at + length as usize;
        let value = self.row.get(self.at..end).ok_or("a value past the row's end")?;
        self.at = end;
        Ok(Some(value))
    }
}

/// PostgreSQL's epoch (2000-01-01) in Unix days and microseconds.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Whether the reader decodes `ty`'s binary form itself; other types are read as text.
fn decodes_natively(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(element) => decodes_natively(element) && !matches!(element.kind(), Kind::Array(_)),
        _ => matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::BYTEA
                | Type::DATE
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
        ),
    }
}

fn be<const N: usize>(raw: &[u8], at: usize) -> Result<[u8; N], String> {
    raw.get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| "a value shorter than its type".to_string())
}

/// A value in PostgreSQL's binary format as a cell.
fn decode_postgres<'a>(ty: &Type, raw: &'a [u8]) -> Result<Cell<'a>, String> {
    if let Kind::Array(element) = ty.kind() {
        return decode_array(element, raw);
    }
    Ok(match *ty {
        Type::BOOL => Cell::Bool(raw.first().is_some_and(|b| *b != 0)),
        Type::INT2 => Cell::Int(i16::from_be_bytes(be(raw, 0)?).into()),
        Type::INT4 => Cell::Int(i32::from_be_bytes(be(raw, 0)?).into()),
        Type::INT8 => Cell::Int(i64::from_be_bytes(be(raw, 0)?)),
        Type::FLOAT4 => Cell::Float(f32::from_be_bytes(be(raw, 0)?).into()),
        Type::FLOAT8 => Cell::Float(f64::from_be_bytes(be(raw, 0)?)),
        Type::NUMERIC => decode_numeric(raw)?,
        Type::BYTEA => Cell::Bytes(raw),
        Type::DATE => match i32::from_be_bytes(be(raw, 0)?) {
            i32::MAX | i32::MIN => return Err("an infinite date has no Glue value".into()),
            days => Cell::Days(days.checked_add(PG_EPOCH_DAYS).ok_or("a date out of range")?),
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(be(raw, 0)?) {
            i64::MAX | i64::MIN => return Err("an infinite timestamp has no Glue value".into()),
            micros => Cell::Micros(micros.checked_add(PG_EPOCH_MICROS).ok_or("a timestamp out of range")?),
        },
        // Text, and every type read through CAST(… AS text).
        _ => Cell::Text(std::str::from_utf8(raw).map_err(|_| "text that is not valid UTF-8")?),
    })
}

/// A one-dimensional array: dimensions, a null flag, the element type, then length-prefixed
/// elements (length -1 for null).
fn decode_array<'a>(element: &Type, raw: &'a [u8]) -> Result<Cell<'a>, String> {
    let dimensions = i32::from_be_bytes(be(raw, 0)?);
    if dimensions == 0 {
        return Ok(Cell::List(Vec::new()));
    }
    if dimensions != 1 {
        return Err(format!(
            "an array of {dimensions} dimensions: Glue arrays have one (unnest it in a query source)"
        ));
    }
    let count = i32::from_be_bytes(be(raw, 12)?);
    let mut at = 20;
    let mut cells = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let length = i32::from_be_bytes(be(raw, at)?);
        at += 4;
        if length < 0 {
            cells.push(Cell::Null);
            continue;
        }
        let end = at + length as usize;
        let bytes = raw.get(at..end).ok_or("an array element past the value's end")?;
        cells.push(decode_postgres(element, bytes)?);
        at = end;
    }
    Ok(Cell::List(cells))
}

/// `numeric`: digit count, weight (of the first base-10000 digit), sign, display scale, digits.
fn decode_numeric(raw: &[u8]) -> Result<Cell<'static>, String> {
    let count = i16::from_be_bytes(be(raw, 0)?);
    let weight = i16::from_be_bytes(be(raw, 2)?);
    let sign = u16::from_be_bytes(be(raw, 4)?);
    let scale = u16::from_be_bytes(be(raw, 6)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN has no Glue decimal value".into()),
        _ => return Err("an infinite numeric has no Glue decimal value".into()),
    }
    let too_large = || "a numeric too large for a Glue decimal".to_string();
    let mut value: i128 = 0;
    for i in 0..count.max(0) as usize {
        let digit = i16::from_be_bytes(be(raw, 8 + 2 * i)?);
        value = value
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(i128::from(digit)))
            .ok_or_else(too_large)?;
    }
    // value × 10000^(weight − count + 1), written at `scale` digits after the point.
    let exponent = 4 * (i32::from(weight) - i32::from(count) + 1) + i32::from(scale);
    let value = if exponent >= 0 {
        10i128
            .checked_pow(exponent as u32)
            .and_then(|f| value.checked_mul(f))
            .ok_or_else(too_large)?
    } else {
        value / 10i128.checked_pow(exponent.unsigned_abs()).ok_or_else(too_large)?
    };
    let scale = u8::try_from(scale).map_err(|_| too_large())?;
    Ok(Cell::Decimal {
        value: if sign == 0x4000 { -value } else { value },
        scale,
    })
}

async fn read_postgres(
    endpoint: &Endpoint,
    read: &Read,
    schema: SchemaRef,
    batch_rows: usize,
    sender: &Sender,
) -> Result<(), JdbcError> {
    let engine = JdbcEngine::Postgres;
    let (mut client, closed) = postgres::connect_watched(endpoint).await?;
    let setup = "SET TIME ZONE 'UTC'";
    client
        .batch_execute(setup)
        .await
        .map_err(statement_failed(engine, setup))?;
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(statement_failed(engine, "BEGIN"))?;
    let plain = read.sql(engine, &[]);
    let mut statement = transaction
        .prepare(&plain)
        .await
        .map_err(statement_failed(engine, &plain))?;
    let casts: Vec<Option<&str>> = statement
        .columns()
        .iter()
        .map(|c| {
            let ty = c.type_();
            match (decodes_natively(ty), ty.kind()) {
                (true, _) => None,
                (false, Kind::Array(_)) => Some("text[]"),
                (false, _) => Some("text"),
            }
        })
        .collect();
    if casts.iter().any(Option::is_some) && !read.columns.is_empty() {
        let cast = read.sql(engine, &casts);
        statement = transaction
            .prepare(&cast)
            .await
            .map_err(statement_failed(engine, &cast))?;
    }
    let sql = read.sql(engine, if read.columns.is_empty() { &[] } else { &casts });
    let types: Vec<GlueType> = read.columns.iter().map(|(_, t)| t.clone()).collect();
    let mut builder = BatchBuilder::new(schema, &types).map_err(JdbcError::Arrow)?;
    let column_types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    // COPY in binary form: the rows stream as the server produces them (the channel's bound
    // holds it back), each value in the form `decode_postgres` reads, with no per-row message
    // of the extended protocol.
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let failed = |error: tokio_postgres::Error| {
        let closed = closed.clone();
        let copy = copy.clone();
        async move {
            JdbcError::Statement {
                engine,
                statement: copy,
                reason: closed.explain(&error).await,
            }
        }
    };
    let stream = match transaction.copy_out(copy.as_str()).await {
        Ok(stream) => stream,
        Err(error) => return Err(failed(error).await),
    };
    futures::pin_mut!(stream);
    let mut parser = CopyParser::default();
    let mut row_number: u64 = 0;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => return Err(failed(error).await),
        };
        let mut full = false;
        parser.rows(chunk, |row| {
            row_number += 1;
            let mut fields = Fields { row, at: 2 };
            for (i, (name, _)) in read.columns.iter().enumerate() {
                let cell = match fields.next().map_err(|m| value_error(name, row_number, m))? {
                    None => Cell::Null,
                    Some(bytes) => decode_postgres(&column_types[i], bytes)
                        .map_err(|message| value_error(name, row_number, message))?,
                };
                builder
                    .append(i, &cell)
                    .map_err(|message| value_error(name, row_number, message))?;
            }
            builder.end_row();
            full |= builder.rows() >= batch_rows;
            Ok(())
        })?;
        if full && !send(sender, &mut builder).await? {
            return Ok(());
        }
    }
    if builder.rows() > 0 && !send(sender, &mut builder).await? {
        return Ok(());
    }
    // Read-only: ending it changes nothing, and a failure here loses no row already sent.
    let _ = transaction.commit().await;
    Ok(())
}

/// A MySQL value as a cell. Dates and datetimes are instants in the session's UTC.
fn decode_mysql(value: &mysql_async::Value) -> Result<Cell<'_>, String> {
    use mysql_async::Value;
    Ok(match value {
        Value::NULL => Cell::Null,
        Value::Int(v) => Cell::Int(*v),
        Value::UInt(v) => Cell::UInt(*v),
        Value::Float(v) => Cell::Float((*v).into()),
        Value::Double(v) => Cell::Float(*v),
        Value::Bytes(bytes) => Cell::Bytes(bytes),
        Value::Date(0, 0, 0, ..) => return Err("a zero date (0000-00-00) has no Glue value".into()),
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let days = days_from_civil(i64::from(*year), u32::from(*month), u32::from(*day));
            Cell::Micros(
                days * 86_400_000_000
                    + i64::from(*hour) * 3_600_000_000
                    + i64::from(*minute) * 60_000_000
                    + i64::from(*second) * 1_000_000
                    + i64::from(*micros),
            )
        }
        Value::Time(..) => return Err("a time of day has no Glue value".into()),
    })
}

async fn read_mysql(
    endpoint: &Endpoint,
    read: &Read,
    schema: SchemaRef,
    batch_rows: usize,
    sender: &Sender,
) -> Result<(), JdbcError> {
    let engine = JdbcEngine::Mysql;
    let mut conn = mysql::connect(endpoint).await?;
    let setup = "SET time_zone = '+00:00'";
    conn.query_drop(setup).await.map_err(statement_failed(engine, setup))?;
    let sql = read.sql(engine, &[]);
    let types: Vec<GlueType> = read.columns.iter().map(|(_, t)| t.clone()).collect();
    let mut builder = BatchBuilder::new(schema, &types).map_err(JdbcError::Arrow)?;
    let mut result = conn
        .exec_iter(sql.as_str(), ())
        .await
        .map_err(statement_failed(engine, &sql))?;
    let mut row_number: u64 = 0;
    while let Some(row) = result.next().await.map_err(statement_failed(engine, &sql))? {
        row_number += 1;
        for (i, (name, _)) in read.columns.iter().enumerate() {
            let cell = match row.as_ref(i) {
                Some(value) => decode_mysql(value).map_err(|message| value_error(name, row_number, message))?,
                None => return Err(value_error(name, row_number, "the server sent no value".into())),
            };
            builder
                .append(i, &cell)
                .map_err(|message| value_error(name, row_number, message))?;
        }
        builder.end_row();
        if builder.rows() >= batch_rows && !send(sender, &mut builder).await? {
            return Ok(());
        }
    }
    drop(result);
    if builder.rows() > 0 {
        send(sender, &mut builder).await?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// The first row of `read` as text per column (`None` for null), or `None` without rows: a
/// key's greatest value, a column's bounds.
pub async fn first_row(endpoint: &Endpoint, read: Read) -> Result<Option<Vec<Option<String>>>, JdbcError> {
    let fields: Vec<arrow::datatypes::Field> = read
        .columns
        .iter()
        .map(|(name, _)| arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Utf8, true))
        .collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    // Read as text, each value exactly as the database writes it in its Glue type's form.
    let text_read = Read {
        columns: read
            .columns
            .iter()
            .map(|(name, _)| (name.clone(), GlueType::String))
            .collect(),
        limit: Some(1),
        ..read
    };
    let mut rows = stream(endpoint.clone(), text_read, schema, 1);
    let Some(batch) = futures::StreamExt::next(&mut rows).await.transpose()? else {
        return Ok(None);
    };
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    let values = batch
        .columns()
        .iter()
        .map(|column| {
            let strings = column.as_any().downcast_ref::<arrow::array::StringArray>();
            strings.and_then(|s| (!s.is_null(0)).then(|| s.value(0).to_string()))
        })
        .collect();
    Ok(Some(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Relation {
        Relation::Table(JdbcTableName {
            database: "sales".into(),
            schema: Some("public".into()),
            table: "orders".into(),
        })
    }

    #[test]
    fn a_read_is_one_select_with_its_conditions_and_limit() {
        let read = Read {
            relation: orders(),
            columns: vec![("id".into(), GlueType::BigInt), ("Note".into(), GlueType::String)],
            conditions: vec!["\"id\" > 5".into(), "\"id\" < 9 OR \"id\" IS NULL".into()],
            order_by: vec![],
            limit: Some(10),
        };
        assert_eq!(
            read.sql(JdbcEngine::Postgres, &[None, Some("text")]),
            "SELECT \"id\", CAST(\"Note\" AS text) AS \"Note\" FROM \"public\".\"orders\" WHERE (\"id\" > 5) AND (\"id\" < 9 OR \"id\" IS NULL) LIMIT 10"
        );
        let count = Read {
            columns: vec![],
            conditions: vec![],
            order_by: vec![],
            limit: None,
            relation: Relation::Query("select * from t;".into()),
        };
        assert_eq!(
            count.sql(JdbcEngine::Mysql, &[]),
            "SELECT 1 FROM (select * from t) AS `kglue_query`"
        );
    }

    #[test]
    fn key_literals_are_checked_and_quoted() {
        let pg = JdbcEngine::Postgres;
        assert_eq!(typed_literal(pg, &GlueType::BigInt, "42"), Ok("42".into()));
        assert!(typed_literal(pg, &GlueType::BigInt, "42; drop table x").is_err());
        assert_eq!(typed_literal(pg, &GlueType::String, "it's"), Ok("'it''s'".into()));
        assert_eq!(
            typed_literal(JdbcEngine::Mysql, &GlueType::String, "a\\'"),
            Ok("'a\\\\'''".into())
        );
        assert_eq!(
            typed_literal(pg, &GlueType::Timestamp, "2024-01-01 10:00:00.000001"),
            Ok("TIMESTAMP '2024-01-01 10:00:00.000001'".into())
        );
        assert!(typed_literal(pg, &GlueType::Date, "2024-01-01' or '1").is_err());
        assert!(typed_literal(pg, &GlueType::Binary, "00").is_err());
        assert!(!orderable_key(&GlueType::Boolean));
        assert!(orderable_key(&GlueType::Timestamp));
    }

    #[test]
    fn a_copy_stream_splits_into_rows_whatever_its_chunks() {
        let mut stream = Vec::new();
        stream.extend_from_slice(COPY_SIGNATURE);
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0xaa, 0xbb]);
        // Two rows of (int4, text): (7, "ab") and (null, "").
        stream.extend_from_slice(&[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 2, b'a', b'b']);
        stream.extend_from_slice(&[0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        stream.extend_from_slice(&[0xff, 0xff]);
        for size in [1, 3, 7, stream.len()] {
            let mut parser = CopyParser::default();
            let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            for chunk in stream.chunks(size) {
                parser
                    .rows(Bytes::copy_from_slice(chunk), |row| {
                        let mut fields = Fields { row, at: 2 };
                        let values = (0..2)
                            .map(|_| fields.next().map(|v| v.map(<[u8]>::to_vec)))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(JdbcError::Arrow)?;
                        rows.push(values);
                        Ok(())
                    })
                    .expect("parses");
            }
            assert_eq!(
                rows,
                [
                    vec![Some(vec![0, 0, 0, 7]), Some(b"ab".to_vec())],
                    vec![None, Some(Vec::new())]
                ],
                "chunks of {size} bytes"
            );
        }
    }

    #[test]
    fn numerics_decode_exactly_from_postgres_binary_form() {
        // 12345.67: digits [1, 2345, 6700], weight 1, scale 2.
        let raw = [0, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c];
        assert_eq!(
            decode_numeric(&raw),
            Ok(Cell::Decimal {
                value: 1_234_567,
                scale: 2
            })
        );
        // -0.05: digits [500], weight -1, scale 2.
        let raw = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(decode_numeric(&raw), Ok(Cell::Decimal { value: -5, scale: 2 }));
        // 0: no digits.
        assert_eq!(
            decode_numeric(&[0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(Cell::Decimal { value: 0, scale: 0 })
        );
        // 20000: digits [2], weight 1, scale 0.
        assert_eq!(
            decode_numeric(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 2]),
            Ok(Cell::Decimal {
                value: 20_000,
                scale: 0
            })
        );
        assert!(decode_numeric(&[0, 0, 0, 0, 0xC0, 0, 0, 0]).is_err(), "NaN");
    }
}
