//! Schema inference: Glue types from the engine's Arrow types (Parquet, Avro), from JSON values,
//! and from delimited text, with Glue's header rule and widening across rows.

use arrow_schema::{DataType, Field};
use kglue_crds::classifier::HeaderPolicy;
use kglue_crds::glue_type::{GlueType, StructField};

use super::text_type::infer_text;

use super::json::Value;

/// An inferred column: a name and a Glue type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredColumn {
    /// The column name.
    pub name: String,
    /// Its type.
    pub type_: GlueType,
}

impl InferredColumn {
    /// The column as a Table lists it.
    pub fn to_column(&self) -> kglue_crds::common::Column {
        kglue_crds::common::Column {
            name: self.name.clone(),
            type_: self.type_.to_string(),
            comment: None,
        }
    }
}

/// The Glue type of an Arrow type. Types Glue has no name for (times of day, durations,
/// intervals) become strings, as Glue's crawler reports them; unsigned integers take the next
/// wider signed type so no value is lost.
pub fn from_arrow(data_type: &DataType) -> GlueType {
    match data_type {
        DataType::Boolean => GlueType::Boolean,
        DataType::Int8 => GlueType::TinyInt,
        DataType::Int16 | DataType::UInt8 => GlueType::SmallInt,
        DataType::Int32 | DataType::UInt16 => GlueType::Int,
        DataType::Int64 | DataType::UInt32 => GlueType::BigInt,
        DataType::UInt64 => GlueType::Decimal {
            precision: 20,
            scale: 0,
        },
        DataType::Float16 | DataType::Float32 => GlueType::Float,
        DataType::Float64 => GlueType::Double,
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => decimal(*p, *s),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => GlueType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            GlueType::Binary
        }
        DataType::Date32 | DataType::Date64 => GlueType::Date,
        DataType::Timestamp(_, _) => GlueType::Timestamp,
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item)
        | DataType::FixedSizeList(item, _) => GlueType::Array(Box::new(from_arrow(item.data_type()))),
        DataType::Struct(fields) => GlueType::Struct(fields.iter().map(|f| struct_field(f)).collect()),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => GlueType::Map(
                Box::new(from_arrow(kv[0].data_type())),
                Box::new(from_arrow(kv[1].data_type())),
            ),
            _ => GlueType::String,
        },
        DataType::Dictionary(_, values) => from_arrow(values),
        DataType::RunEndEncoded(_, values) => from_arrow(values.data_type()),
        _ => GlueType::String,
    }
}

fn struct_field(field: &Field) -> StructField {
    StructField {
        name: field.name().clone(),
        type_: from_arrow(field.data_type()),
    }
}

/// Glue decimals hold at most 38 digits; wider ones keep their integer digits and lose scale.
fn decimal(precision: u8, scale: i8) -> GlueType {
    let scale = scale.max(0) as u8;
    if precision <= 38 {
        GlueType::Decimal {
            precision: precision.max(1),
            scale: scale.min(precision),
        }
    } else {
        let integer_digits = precision.saturating_sub(scale).min(38);
        GlueType::Decimal {
            precision: 38,
            scale: 38 - integer_digits,
        }
    }
}

/// Columns of an Arrow schema.
pub fn columns_from_arrow(fields: &[impl AsRef<Field>]) -> Vec<InferredColumn> {
    fields
        .iter()
        .map(|f| InferredColumn {
            name: f.as_ref().name().clone(),
            type_: from_arrow(f.as_ref().data_type()),
        })
        .collect()
}

/// The Glue type of a JSON value; `None` for null (no information). JSON strings stay strings,
/// as Glue's JSON classifier keeps them, whatever they look like.
pub fn from_json(value: &Value) -> Option<GlueType> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(GlueType::Boolean),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) if i32::try_from(i).is_ok() => GlueType::Int,
            (Some(_), _) => GlueType::BigInt,
            (None, Some(_)) => GlueType::Decimal {
                precision: 20,
                scale: 0,
            },
            (None, None) => GlueType::Double,
        }),
        Value::String(_) => Some(GlueType::String),
        // An array of nulls (or an empty one) says nothing about its elements: strings, as Glue.
        Value::Array(items) => Some(GlueType::Array(Box::new(
            widen_all(items.iter().filter_map(from_json)).unwrap_or(GlueType::String),
        ))),
        Value::Object(fields) => {
            if fields.is_empty() {
                return Some(GlueType::String);
            }
            let fields = fields
                .iter()
                .map(|(name, value)| StructField {
                    name: name.clone(),
                    type_: from_json(value).unwrap_or(GlueType::String),
                })
                .collect();
            Some(GlueType::Struct(fields))
        }
    }
}

fn widen_all(types: impl Iterator<Item = GlueType>) -> Option<GlueType> {
    types.reduce(|a, b| a.widen(&b))
}

/// Columns of JSON records: the union of their fields in order of first appearance, each widened
/// over every record. A field that is null everywhere is a string.
pub fn columns_from_json(records: &[Value]) -> Vec<InferredColumn> {
    let mut columns: Vec<(String, Option<GlueType>)> = Vec::new();
    for record in records {
        let Value::Object(fields) = record else {
            continue;
        };
        for (name, value) in fields {
            let inferred = from_json(value);
            match columns
                .iter_mut()
                .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
            {
                Some((_, type_)) => {
                    *type_ = match (type_.take(), inferred) {
                        (Some(a), Some(b)) => Some(a.widen(&b)),
                        (a, b) => a.or(b),
                    }
                }
                None => columns.push((name.clone(), inferred)),
            }
        }
    }
    columns
        .into_iter()
        .map(|(name, type_)| InferredColumn {
            name,
            type_: type_.unwrap_or(GlueType::String),
        })
        .collect()
}

/// How delimited rows were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelimitedSchema {
    /// Whether the first row is a header.
    pub header: bool,
    /// The columns.
    pub columns: Vec<InferredColumn>,
}

/// Infers the columns of delimited rows (all of one width). With [`HeaderPolicy::Detect`], the
/// first row is a header as Glue decides it: every value in it is a non-empty string, and at
/// least one column holds something other than strings below it (when every column is text, a
/// header cannot be told from data, so there is none). Columns without a header are named from
/// `column_names`, else `col0`, `col1`, ….
pub fn columns_from_delimited(rows: &[Vec<String>], policy: HeaderPolicy, column_names: &[String]) -> DelimitedSchema {
    let width = rows.first().map(Vec::len).unwrap_or_default();
    let types_of = |rows: &[Vec<String>]| -> Vec<Option<GlueType>> {
        (0..width)
            .map(|i| widen_all(rows.iter().filter_map(|row| row.get(i)).filter_map(|v| infer_text(v))))
            .collect()
    };
    let header = match policy {
        HeaderPolicy::Present => !rows.is_empty(),
        HeaderPolicy::Absent => false,
        HeaderPolicy::Detect => {
            let first_is_text = rows
                .first()
                .is_some_and(|row| row.iter().all(|v| infer_text(v) == Some(GlueType::String)));
            let data_types = types_of(rows.get(1..).unwrap_or_default());
            first_is_text
                && data_types
                    .iter()
                    .any(|t| t.as_ref().is_some_and(|t| *t != GlueType::String))
        }
    };
    let (names, data): (Vec<String>, &[Vec<String>]) = if header {
        (header_names(&rows[0]), &rows[1..])
    } else {
        let names = (0..width)
            .map(|i| column_names.get(i).cloned().unwrap_or_else(|| format!("col{i}")))
            .collect();
        (names, rows)
    };
    let columns = names
        .into_iter()
        .zip(types_of(data))
        .map(|(name, type_)| InferredColumn {
            name,
            type_: type_.unwrap_or(GlueType::String),
        })
        .collect();
    DelimitedSchema { header, columns }
}

/// Header values as column names: trimmed and lowercased (engines match names case-insensitively
/// and Athena stores them lowercase), blanks named by position, repeats numbered.
fn header_names(row: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(row.len());
    for (i, value) in row.iter().enumerate() {
        let base = match value.trim().to_lowercase() {
            name if name.is_empty() => format!("col{i}"),
            name => name,
        };
        let mut name = base.clone();
        let mut suffix = 1;
        while names.contains(&name) {
            name = format!("{base}_{suffix}");
            suffix += 1;
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Fields, TimeUnit};

    use super::*;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    fn t(s: &str) -> GlueType {
        GlueType::parse(s).expect(s)
    }

    fn rows(text: &[&str]) -> Vec<Vec<String>> {
        text.iter()
            .map(|r| r.split(',').map(str::to_string).collect())
            .collect()
    }

    fn described(columns: &[InferredColumn]) -> Vec<String> {
        columns.iter().map(|c| format!("{}:{}", c.name, c.type_)).collect()
    }

    #[test]
    fn arrow_types_map_to_glue_types() {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Int64, true),
            ])),
            false,
        );
        let cases = [
            (DataType::Int8, "tinyint"),
            (DataType::UInt32, "bigint"),
            (DataType::UInt64, "decimal(20,0)"),
            (DataType::Float32, "float"),
            (DataType::Decimal128(12, 2), "decimal(12,2)"),
            (DataType::Decimal256(60, 10), "decimal(38,0)"),
            (DataType::Utf8View, "string"),
            (DataType::Date32, "date"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp",
            ),
            (DataType::List(item), "array<string>"),
            (DataType::Map(Arc::new(entries), false), "map<string,bigint>"),
            (
                DataType::Struct(Fields::from(vec![Field::new("sku", DataType::Utf8, true)])),
                "struct<sku:string>",
            ),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                "string",
            ),
            (DataType::Time64(TimeUnit::Microsecond), "string"),
        ];
        for (arrow, glue) in cases {
            assert_eq!(from_arrow(&arrow), t(glue), "{arrow}");
        }
    }

    #[test]
    fn json_records_widen_across_rows_and_nest() {
        let records = [
            json(r#"{"id": 1, "price": 3, "tags": ["a"], "customer": {"name": "x"}, "note": null}"#),
            json(r#"{"id": 3000000000, "price": 2.5, "tags": [], "customer": {"name": "y", "vip": true}}"#),
            json(r#"{"id": 2, "extra": "z", "note": null}"#),
        ];
        assert_eq!(
            described(&columns_from_json(&records)),
            [
                "id:bigint",
                "price:double",
                "tags:array<string>",
                "customer:struct<name:string,vip:boolean>",
                "note:string",
                "extra:string"
            ]
        );
    }

    #[test]
    fn conflicting_json_types_become_strings() {
        let records = [json(r#"{"v": 1}"#), json(r#"{"v": {"a": 1}}"#)];
        assert_eq!(described(&columns_from_json(&records)), ["v:string"]);
    }

    #[test]
    fn a_header_is_detected_when_it_differs_in_type_from_the_data() {
        let schema = columns_from_delimited(
            &rows(&["id,amount,day", "1,2.50,2024-01-01", "2,3,2024-01-02"]),
            HeaderPolicy::Detect,
            &[],
        );
        assert!(schema.header);
        assert_eq!(described(&schema.columns), ["id:int", "amount:double", "day:date"]);
    }

    #[test]
    fn all_text_has_no_detectable_header() {
        let schema = columns_from_delimited(
            &rows(&["name,city", "ann,paris", "bob,rome"]),
            HeaderPolicy::Detect,
            &[],
        );
        assert!(!schema.header);
        assert_eq!(described(&schema.columns), ["col0:string", "col1:string"]);
    }

    #[test]
    fn a_numeric_first_row_is_data() {
        let schema = columns_from_delimited(&rows(&["1,2", "3,4"]), HeaderPolicy::Detect, &["a".into(), "b".into()]);
        assert!(!schema.header);
        assert_eq!(described(&schema.columns), ["a:int", "b:int"]);
    }

    #[test]
    fn header_policies_override_detection() {
        let present = columns_from_delimited(&rows(&["Name,City", "ann,paris"]), HeaderPolicy::Present, &[]);
        assert!(present.header);
        assert_eq!(described(&present.columns), ["name:string", "city:string"]);
        let absent = columns_from_delimited(&rows(&["id,n", "1,2"]), HeaderPolicy::Absent, &[]);
        assert!(!absent.header);
        assert_eq!(described(&absent.columns), ["col0:string", "col1:string"]);
    }

    #[test]
    fn blank_and_repeated_header_names_are_made_unique() {
        let schema = columns_from_delimited(&rows(&["id,,ID", "1,2,3"]), HeaderPolicy::Present, &[]);
        assert_eq!(described(&schema.columns), ["id:int", "col1:int", "id_1:int"]);
    }

    #[test]
    fn empty_values_are_nulls_and_widening_spans_rows() {
        let schema = columns_from_delimited(
            &rows(&["a,b,c", "1,,2024-01-01", "5000000000,x,2024-01-01 10:00:00", "2.5,,"]),
            HeaderPolicy::Detect,
            &[],
        );
        assert_eq!(described(&schema.columns), ["a:double", "b:string", "c:timestamp"]);
    }
}
