//! Arrow types of catalog columns: a job reads a catalog table with the schema the Table declares,
//! so files are parsed into the types engines reading the same table through its DDL would see.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use kglue_crds::common::Column;
use kglue_crds::glue_type::GlueType;

/// Why a Table's columns could not become an Arrow schema.
#[derive(Debug, thiserror::Error)]
#[error("column {column:?} has type {type_:?}, which does not parse: {message}")]
pub struct ColumnSchemaError {
    /// The column.
    pub column: String,
    /// Its type string.
    pub type_: String,
    /// The parser's message.
    pub message: String,
}

/// The Arrow type of a Glue type. Timestamps are microseconds without a time zone, as Hive's and
/// Spark's `timestamp` (and DuckDB's) are; `char`/`varchar` are text, their length unchecked, as
/// Spark and Athena read them.
pub fn to_arrow(glue: &GlueType) -> DataType {
    match glue {
        GlueType::Boolean => DataType::Boolean,
        GlueType::TinyInt => DataType::Int8,
        GlueType::SmallInt => DataType::Int16,
        GlueType::Int => DataType::Int32,
        GlueType::BigInt => DataType::Int64,
        GlueType::Float => DataType::Float32,
        GlueType::Double => DataType::Float64,
        GlueType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale as i8),
        GlueType::String | GlueType::Char(_) | GlueType::Varchar(_) => DataType::Utf8,
        GlueType::Binary => DataType::Binary,
        GlueType::Date => DataType::Date32,
        GlueType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        GlueType::Array(item) => DataType::List(Arc::new(Field::new("item", to_arrow(item), true))),
        GlueType::Map(key, value) => {
            let entries = Fields::from(vec![
                Field::new("key", to_arrow(key), false),
                Field::new("value", to_arrow(value), true),
            ]);
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
        }
        GlueType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(&f.name, to_arrow(&f.type_), true))
                .collect(),
        ),
    }
}

/// Nullable Arrow fields for catalog columns, in order.
pub fn fields_of(columns: &[Column]) -> Result<Vec<Field>, ColumnSchemaError> {
    columns
        .iter()
        .map(|column| {
            let glue = GlueType::parse(&column.type_).map_err(|e| ColumnSchemaError {
                column: column.name.clone(),
                type_: column.type_.clone(),
                message: e.to_string(),
            })?;
            Ok(Field::new(&column.name, to_arrow(&glue), true))
        })
        .collect()
}

/// The schema of a table's data files: its columns, without the partition keys.
pub fn schema_of(columns: &[Column]) -> Result<Schema, ColumnSchemaError> {
    Ok(Schema::new(fields_of(columns)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::infer::from_arrow;

    #[test]
    fn every_glue_type_round_trips_through_arrow() {
        for text in [
            "boolean",
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "float",
            "double",
            "decimal(12,2)",
            "string",
            "binary",
            "date",
            "timestamp",
            "array<struct<sku:string,quantity:int>>",
            "map<string,array<bigint>>",
            "struct<a:int,b:struct<c:date>>",
        ] {
            let glue = GlueType::parse(text).expect("parses");
            assert_eq!(from_arrow(&to_arrow(&glue)).to_string(), text, "{text}");
        }
        assert_eq!(
            to_arrow(&GlueType::parse("varchar(10)").expect("parses")),
            DataType::Utf8
        );
    }

    #[test]
    fn a_bad_column_type_is_named() {
        let columns = vec![Column {
            name: "price".into(),
            type_: "decimal(10,2".into(),
            comment: None,
        }];
        let error = schema_of(&columns).expect_err("bad type");
        assert!(
            error
                .to_string()
                .starts_with("column \"price\" has type \"decimal(10,2\""),
            "{error}"
        );
    }
}
