//! Database values into Arrow: each driver decodes a value into a [`Cell`] (what the database
//! sent, borrowed where it can be), and a [`BatchBuilder`] turns cells into the Arrow type of the
//! column's Glue type, checking ranges and scales, so a value that does not fit is an error that
//! names the column and row — never a wrapped, rounded or dropped value.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, RecordBatch, RecordBatchOptions, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, SchemaRef};
use kglue_crds::glue_type::GlueType;

/// One value as a driver decoded it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed whole number.
    Int(i64),
    /// An unsigned whole number (MySQL's unsigned columns).
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal: `value × 10^-scale`.
    Decimal {
        /// The unscaled value.
        value: i128,
        /// Digits after the point.
        scale: u8,
    },
    /// Text.
    Text(&'a str),
    /// Text the driver had to build.
    OwnedText(String),
    /// Bytes (MySQL sends text and decimals this way too).
    Bytes(&'a [u8]),
    /// A date, as days since 1970-01-01.
    Days(i32),
    /// A timestamp, as microseconds since 1970-01-01 00:00:00 UTC.
    Micros(i64),
    /// An array's elements.
    List(Vec<Cell<'a>>),
}

impl Cell<'_> {
    /// The value as text, for bookmark keys and messages: decimals with their scale, dates as
    /// `YYYY-MM-DD`, timestamps as `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Cell::Null | Cell::List(_) => return None,
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Decimal { value, scale } => decimal_text(*value, *scale),
            Cell::Text(text) => text.to_string(),
            Cell::OwnedText(text) => text.clone(),
            Cell::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Cell::Days(days) => date_text(*days),
            Cell::Micros(micros) => timestamp_text(*micros),
        })
    }
}

/// `12345` at scale 2 → `123.45`.
pub fn decimal_text(value: i128, scale: u8) -> String {
    if scale == 0 {
        return value.to_string();
    }
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    format!("{}{whole}.{fraction}", if value < 0 { "-" } else { "" })
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn date_text(days: i32) -> String {
    let (year, month, day) = civil(i64::from(days));
    format!("{year:04}-{month:02}-{day:02}")
}

fn timestamp_text(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (hour, minute) = (rest / 3_600_000_000, rest / 60_000_000 % 60);
    let (second, fraction) = (rest / 1_000_000 % 60, rest % 1_000_000);
    format!(
        "{} {hour:02}:{minute:02}:{second:02}.{fraction:06}",
        date_text(days as i32)
    )
}

/// Reads decimal text (`-12.5`, `3`, `1e3` is refused) as an unscaled value at `scale`; more
/// digits after the point than `scale` is an error unless they are zeros.
pub fn parse_decimal(text: &str, scale: u8) -> Result<i128, String> {
    let text = text.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(format!("{text:?} is not a decimal number"));
    }
    let kept = fraction.len().min(scale as usize);
    if fraction[kept..].chars().any(|c| c != '0') {
        return Err(format!("{text:?} has more than {scale} digits after the point"));
    }
    let mut value: i128 = 0;
    let padded = format!("{whole}{}{}", &fraction[..kept], "0".repeat(scale as usize - kept));
    for c in padded.chars() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(c as u8 - b'0')))
            .ok_or_else(|| format!("{text:?} is too large for a decimal"))?;
    }
    Ok(if negative { -value } else { value })
}

/// Builds the Arrow array of one column from cells.
enum Column {
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: u8,
    },
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    List {
        field: Arc<Field>,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        items: Box<Column>,
    },
}

impl Column {
    fn new(glue: &GlueType) -> Result<Column, String> {
        Ok(match glue {
            GlueType::Boolean => Column::Boolean(BooleanBuilder::new()),
            GlueType::TinyInt => Column::Int8(Int8Builder::new()),
            GlueType::SmallInt => Column::Int16(Int16Builder::new()),
            GlueType::Int => Column::Int32(Int32Builder::new()),
            GlueType::BigInt => Column::Int64(Int64Builder::new()),
            GlueType::Float => Column::Float32(Float32Builder::new()),
            GlueType::Double => Column::Float64(Float64Builder::new()),
            GlueType::Decimal { precision, scale } => Column::Decimal {
                builder: Decimal128Builder::new()
                    .with_precision_and_scale(*precision, *scale as i8)
                    .map_err(|e| e.to_string())?,
                precision: *precision,
                scale: *scale,
            },
            GlueType::String | GlueType::Char(_) | GlueType::Varchar(_) => Column::Utf8(StringBuilder::new()),
            GlueType::Binary => Column::Binary(BinaryBuilder::new()),
            GlueType::Date => Column::Date(Date32Builder::new()),
            GlueType::Timestamp => Column::Timestamp(TimestampMicrosecondBuilder::new()),
            GlueType::Array(item) => {
                let items = Column::new(item)?;
                Column::List {
                    field: Arc::new(Field::new("item", items.data_type(), true)),
                    offsets: vec![0],
                    valid: Vec::new(),
                    items: Box::new(items),
                }
            }
            GlueType::Map(..) | GlueType::Struct(_) => {
                return Err(format!("{glue} is not read from databases (arrays of scalars are)"));
            }
        })
    }

    fn data_type(&self) -> DataType {
        match self {
            Column::Boolean(_) => DataType::Boolean,
            Column::Int8(_) => DataType::Int8,
            Column::Int16(_) => DataType::Int16,
            Column::Int32(_) => DataType::Int32,
            Column::Int64(_) => DataType::Int64,
            Column::Float32(_) => DataType::Float32,
            Column::Float64(_) => DataType::Float64,
            Column::Decimal { precision, scale, .. } => DataType::Decimal128(*precision, *scale as i8),
            Column::Utf8(_) => DataType::Utf8,
            Column::Binary(_) => DataType::Binary,
            Column::Date(_) => DataType::Date32,
            Column::Timestamp(_) => DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            Column::List { field, .. } => DataType::List(field.clone()),
        }
    }

    fn append(&mut self, cell: &Cell<'_>) -> Result<(), String> {
        if *cell == Cell::Null {
            self.append_null();
            return Ok(());
        }
        let target = self.data_type();
        let mismatch = || format!("{} cannot be read as {target}", describe(cell));
        match self {
            Column::Boolean(b) => b.append_value(match cell {
                Cell::Bool(v) => *v,
                Cell::Int(0) | Cell::UInt(0) => false,
                Cell::Int(1) | Cell::UInt(1) => true,
                // MySQL's bit(1).
                Cell::Bytes([0]) => false,
                Cell::Bytes([1]) => true,
                _ => return Err(mismatch()),
            }),
            Column::Int8(b) => b.append_value(whole(cell).and_then(|v| i8::try_from(v).ok()).ok_or_else(mismatch)?),
            Column::Int16(b) => b.append_value(whole(cell).and_then(|v| i16::try_from(v).ok()).ok_or_else(mismatch)?),
            Column::Int32(b) => b.append_value(whole(cell).and_then(|v| i32::try_from(v).ok()).ok_or_else(mismatch)?),
            Column::Int64(b) => b.append_value(whole(cell).and_then(|v| i64::try_from(v).ok()).ok_or_else(mismatch)?),
            Column::Float32(b) => b.append_value(float(cell).ok_or_else(mismatch)? as f32),
            Column::Float64(b) => b.append_value(float(cell).ok_or_else(mismatch)?),
            Column::Decimal {
                builder,
                precision,
                scale,
            } => {
                let value = match cell {
                    Cell::Decimal { value, scale: from } => rescale(*value, *from, *scale)?,
                    Cell::Int(_) | Cell::UInt(_) => {
                        let whole = whole(cell).ok_or_else(mismatch)?;
                        whole.checked_mul(10i128.pow(u32::from(*scale))).ok_or_else(mismatch)?
                    }
                    Cell::Text(text) => parse_decimal(text, *scale)?,
                    Cell::OwnedText(text) => parse_decimal(text, *scale)?,
                    Cell::Bytes(bytes) => parse_decimal(std::str::from_utf8(bytes).map_err(|_| mismatch())?, *scale)?,
                    _ => return Err(mismatch()),
                };
                if value.unsigned_abs() >= 10u128.pow(u32::from(*precision)) {
                    return Err(format!(
                        "{} does not fit decimal({precision},{scale})",
                        decimal_text(value, *scale)
                    ));
                }
                builder.append_value(value);
            }
            Column::Utf8(b) => match cell {
                Cell::Text(text) => b.append_value(text),
                Cell::OwnedText(text) => b.append_value(text),
                Cell::Bytes(bytes) => {
                    b.append_value(std::str::from_utf8(bytes).map_err(|_| "the text is not valid UTF-8".to_string())?)
                }
                other => b.append_value(other.to_text().ok_or_else(mismatch)?),
            },
            Column::Binary(b) => match cell {
                Cell::Bytes(bytes) => b.append_value(bytes),
                Cell::Text(text) => b.append_value(text.as_bytes()),
                _ => return Err(mismatch()),
            },
            Column::Date(b) => b.append_value(match cell {
                Cell::Days(days) => *days,
                // MySQL sends dates as datetimes at midnight.
                Cell::Micros(micros) if micros % 86_400_000_000 == 0 => {
                    i32::try_from(micros / 86_400_000_000).map_err(|_| mismatch())?
                }
                _ => return Err(mismatch()),
            }),
            Column::Timestamp(b) => b.append_value(match cell {
                Cell::Micros(micros) => *micros,
                Cell::Days(days) => i64::from(*days) * 86_400_000_000,
                _ => return Err(mismatch()),
            }),
            Column::List {
                offsets, valid, items, ..
            } => {
                let Cell::List(elements) = cell else {
                    return Err(mismatch());
                };
                for element in elements {
                    items.append(element)?;
                }
                let last = offsets.last().copied().unwrap_or(0);
                let next = i32::try_from(elements.len())
                    .ok()
                    .and_then(|n| last.checked_add(n))
                    .ok_or("an array too large for one batch")?;
                offsets.push(next);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Column::Boolean(b) => b.append_null(),
            Column::Int8(b) => b.append_null(),
            Column::Int16(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Decimal { builder, .. } => builder.append_null(),
            Column::Utf8(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::List { offsets, valid, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                valid.push(false);
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Int8(b) => Arc::new(b.finish()),
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Decimal { builder, .. } => Arc::new(builder.finish()),
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::List {
                field,
                offsets,
                valid,
                items,
            } => {
                let values = items.finish()?;
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::try_new(field.clone(), offsets, values, Some(nulls)).map_err(|e| e.to_string())?)
            }
        })
    }
}

fn describe(cell: &Cell<'_>) -> String {
    match cell {
        Cell::Bytes(bytes) if bytes.len() > 40 => format!("a value of {} bytes", bytes.len()),
        other => match other.to_text() {
            Some(text) if text.chars().count() <= 40 => format!("value {text:?}"),
            Some(_) => "a long value".into(),
            None => "an array".into(),
        },
    }
}

fn whole(cell: &Cell<'_>) -> Option<i128> {
    match cell {
        Cell::Int(v) => Some(i128::from(*v)),
        Cell::UInt(v) => Some(i128::from(*v)),
        Cell::Bool(v) => Some(i128::from(*v)),
        Cell::Decimal { value, scale } => {
            let factor = 10i128.pow(u32::from(*scale));
            (value % factor == 0).then(|| value / factor)
        }
        Cell::Text(text) => text.trim().parse().ok(),
        Cell::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn float(cell: &Cell<'_>) -> Option<f64> {
    match cell {
        Cell::Float(v) => Some(*v),
        Cell::Int(v) => Some(*v as f64),
        Cell::UInt(v) => Some(*v as f64),
        Cell::Text(text) => text.trim().parse().ok(),
        Cell::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn rescale(value: i128, from: u8, to: u8) -> Result<i128, String> {
    if from <= to {
        return value
            .checked_mul(10i128.pow(u32::from(to - from)))
            .ok_or_else(|| format!("{} is too large", decimal_text(value, from)));
    }
    let factor = 10i128.pow(u32::from(from - to));
    if value % factor != 0 {
        return Err(format!(
            "{} has more than {to} digits after the point",
            decimal_text(value, from)
        ));
    }
    Ok(value / factor)
}

/// Collects rows of cells into record batches of a schema whose columns have the given Glue
/// types.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
}

impl BatchBuilder {
    /// A builder for `schema`, whose fields have the Glue types `types` in order.
    pub fn new(schema: SchemaRef, types: &[GlueType]) -> Result<BatchBuilder, String> {
        let columns = types.iter().map(Column::new).collect::<Result<_, _>>()?;
        Ok(BatchBuilder {
            schema,
            columns,
            rows: 0,
        })
    }

    /// Appends one value of column `index` (rows are appended column by column, left to right).
    pub fn append(&mut self, index: usize, cell: &Cell<'_>) -> Result<(), String> {
        match self.columns.get_mut(index) {
            Some(column) => column.append(cell),
            None => Err(format!("no column {index}")),
        }
    }

    /// Marks the end of a row.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// Rows appended since the last batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows appended so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        let arrays = self
            .columns
            .iter_mut()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    #[test]
    fn decimals_read_and_print_exactly() {
        assert_eq!(parse_decimal("123.45", 2), Ok(12345));
        assert_eq!(parse_decimal("-0.5", 3), Ok(-500));
        assert_eq!(parse_decimal("7", 2), Ok(700));
        assert_eq!(parse_decimal("1.250", 2), Ok(125));
        assert!(
            parse_decimal("1.255", 2)
                .expect_err("rounding")
                .contains("more than 2 digits")
        );
        assert!(parse_decimal("1e3", 0).is_err());
        assert!(parse_decimal("", 0).is_err());
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(12345, 2), "123.45");
    }

    #[test]
    fn dates_and_timestamps_print_as_databases_read_them() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(1600, 2, 29), days_from_civil(1600, 3, 1) - 1);
        assert_eq!(timestamp_text(1_704_067_200_000_001), "2024-01-01 00:00:00.000001");
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59.999999");
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_not_wrapped() {
        let mut column = Column::new(&GlueType::SmallInt).expect("a column");
        let error = column.append(&Cell::Int(70_000)).expect_err("too large");
        assert_eq!(error, "value \"70000\" cannot be read as Int16");
        let mut column = Column::new(&GlueType::Decimal { precision: 4, scale: 2 }).expect("a column");
        assert!(column.append(&Cell::Text("99.99")).is_ok());
        let error = column.append(&Cell::Text("100.00")).expect_err("too many digits");
        assert_eq!(error, "100.00 does not fit decimal(4,2)");
    }

    #[test]
    fn arrays_become_lists_with_nulls_kept() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]));
        let mut builder = BatchBuilder::new(schema, &[GlueType::Array(Box::new(GlueType::String))]).expect("a builder");
        for cell in [
            Cell::List(vec![Cell::Text("a"), Cell::Null]),
            Cell::Null,
            Cell::List(vec![]),
        ] {
            builder.append(0, &cell).expect("appends");
            builder.end_row();
        }
        let batch = builder.finish().expect("a batch");
        let list = batch.column(0).as_any().downcast_ref::<ListArray>().expect("a list");
        assert_eq!(list.len(), 3);
        assert!(list.is_null(1));
        assert_eq!(list.value(0).len(), 2);
        assert_eq!(list.value(2).len(), 0);
    }
}
