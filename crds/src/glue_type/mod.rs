//! The Glue/Hive column type grammar that the crawler, the ETL runner and the operator share:
//! parsing and the canonical printed form ([`grammar`]), and widening for schema inference and
//! schema-evolution checks ([`lattice`]). Inferring a type from a text value is the crawler's
//! (`kglue_runner::crawl::text_type`).
//!
//! Every column and partition key of a `Table` carries its type as a string (`bigint`,
//! `decimal(12,2)`, `array<struct<sku:string,quantity:int>>`). The CRD schema checks only the outer
//! form of that string (CEL cannot recurse); [`GlueType::parse`] checks all of it, and
//! [`validate_columns`] names the column whose type is wrong.
//!
//! The grammar (keywords are case-insensitive; whitespace is allowed around every token):
//!
//! ```text
//! type      = primitive
//!           | "array" "<" type ">"
//!           | "map" "<" primitive "," type ">"
//!           | "struct" "<" field { "," field } ">"
//! field     = name ":" type
//! primitive = "boolean" | "tinyint" | "smallint" | "int" | "integer" | "bigint" | "float"
//!           | "double" | "decimal" [ "(" precision [ "," scale ] ")" ] | "string"
//!           | "char" "(" length ")" | "varchar" "(" length ")" | "binary" | "date" | "timestamp"
//! ```
//!
//! - `integer` is an alias of `int`; `decimal` alone is `decimal(10,0)` and `decimal(p)` is
//!   `decimal(p,0)`, as in Hive.
//! - Ranges: decimal precision 1–38 and scale 0–precision; char length 1–255; varchar length
//!   1–65535.
//! - A struct field name is any text without `:`, `,`, `<`, `>` or backticks (Glue allows dashes,
//!   dots, spaces, non-ASCII letters); whitespace around it is dropped and its case is kept. Names
//!   must be unique within a struct ignoring case, because Hive, Athena, Trino and Spark resolve
//!   them ignoring case. A struct has at least one field.
//! - Map keys are primitive types.
//! - Types nest at most [`MAX_NESTING`] levels deep.
//!
//! [`GlueType`]'s `Display` prints the canonical form: lowercase keywords, no spaces, every decimal
//! with both precision and scale (`struct<a:int,b:array<string>>`, `decimal(12,2)`,
//! `map<string,bigint>`). Parsing the canonical form gives back the same value.

use std::fmt;
use std::str::FromStr;

use crate::common::Column;

/// The deepest nesting [`GlueType::parse`] accepts: `array<array<…<int>…>>` with 99 `array`s is
/// 100 levels. Deeper input is refused with [`TypeParseErrorKind::TooDeep`] instead of exhausting
/// the stack.
pub const MAX_NESTING: usize = 100;

/// The largest decimal precision (Hive's and Glue's limit).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// The longest `char(n)`.
pub const MAX_CHAR_LENGTH: u16 = 255;

/// The longest `varchar(n)`.
pub const MAX_VARCHAR_LENGTH: u32 = 65535;

/// A Glue/Hive column type.
///
/// ```
/// use kglue_crds::glue_type::{GlueType, StructField};
///
/// let items: GlueType = "ARRAY < struct<sku: string, quantity: integer> >".parse().unwrap();
/// assert_eq!(
///     items,
///     GlueType::Array(Box::new(GlueType::Struct(vec![
///         StructField { name: "sku".into(), type_: GlueType::String },
///         StructField { name: "quantity".into(), type_: GlueType::Int },
///     ])))
/// );
/// assert_eq!(items.to_string(), "array<struct<sku:string,quantity:int>>");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GlueType {
    /// `boolean`.
    Boolean,
    /// `tinyint`: an 8-bit signed integer.
    TinyInt,
    /// `smallint`: a 16-bit signed integer.
    SmallInt,
    /// `int` (or `integer`): a 32-bit signed integer.
    Int,
    /// `bigint`: a 64-bit signed integer.
    BigInt,
    /// `float`: a 32-bit IEEE 754 number.
    Float,
    /// `double`: a 64-bit IEEE 754 number.
    Double,
    /// `decimal(precision,scale)`: an exact number with `precision` digits, `scale` of them after
    /// the point.
    Decimal {
        /// The number of digits, 1–38.
        precision: u8,
        /// The number of digits after the point, 0–`precision`.
        scale: u8,
    },
    /// `string`: text of any length.
    String,
    /// `char(n)`: text of exactly n characters (padded), n 1–255.
    Char(u16),
    /// `varchar(n)`: text of at most n characters, n 1–65535.
    Varchar(u32),
    /// `binary`: bytes.
    Binary,
    /// `date`: a calendar day.
    Date,
    /// `timestamp`: a date and time of day.
    Timestamp,
    /// `array<T>`.
    Array(Box<GlueType>),
    /// `map<K,V>`; K is a primitive type.
    Map(Box<GlueType>, Box<GlueType>),
    /// `struct<name:T,…>`: named fields in order.
    Struct(Vec<StructField>),
}

/// A field of a `struct<…>` type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StructField {
    /// The field name, printed as it is. A name written back by `Display` parses to the same name
    /// when it is non-empty, has no `:`, `,`, `<`, `>` or backtick, and no whitespace at either end.
    pub name: String,
    /// The field type.
    pub type_: GlueType,
}

impl fmt::Display for StructField {
    /// `name:type`, as inside `struct<…>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.type_)
    }
}

/// How a column's type changed between an old and a new schema (see [`GlueType::change_from`]).
///
/// The variants are ordered by severity, so the change of a whole schema is the maximum of its
/// columns' changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeChange {
    /// The types are identical.
    Same,
    /// The new type holds every value of the old one: reading old data with the new type loses
    /// nothing (up to the rounding noted on [`GlueType::change_from`]).
    Widened,
    /// Some values of the old type do not fit the new one.
    Incompatible,
}

/// A type string that does not parse: what is wrong ([`kind`](Self::kind)) and where
/// ([`offset`](Self::offset)).
///
/// Displayed as e.g. `expected '>' to close array<…>, found end of input at offset 19 in
/// "array<struct<a:int>"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset} in {excerpt:?}")]
pub struct TypeParseError {
    /// What is wrong.
    pub kind: TypeParseErrorKind,
    /// The byte offset in the input where the problem was found.
    pub offset: usize,
    /// The input; for a long input, the part around `offset`, with `…` where it was cut.
    pub excerpt: String,
}

/// What is wrong with a type string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeParseErrorKind {
    /// The grammar needs something else here.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the grammar needs, e.g. `'>' to close array<…>`.
        expected: String,
        /// What the input holds there, e.g. `','`, `"foo"` or `end of input`.
        found: String,
    },
    /// A word that is not a type keyword.
    #[error("unknown type {name:?}{}", did_you_mean(.hint))]
    UnknownType {
        /// The word (cut after 64 characters).
        name: String,
        /// The Glue type that other systems call `name`, if any (`long` is `bigint`).
        hint: Option<&'static str>,
    },
    /// A decimal precision outside 1–38.
    #[error("decimal precision must be between 1 and 38, found {0}")]
    DecimalPrecision(u64),
    /// A decimal scale larger than its precision.
    #[error("decimal scale {scale} is larger than its precision {precision}")]
    DecimalScale {
        /// The precision.
        precision: u64,
        /// The scale.
        scale: u64,
    },
    /// A `char` or `varchar` length out of range.
    #[error("{type_name} length must be between 1 and {max}, found {found}")]
    Length {
        /// `char` or `varchar`.
        type_name: &'static str,
        /// The largest length allowed.
        max: u32,
        /// The length written.
        found: u64,
    },
    /// A number with more digits than any limit could allow.
    #[error("number too large")]
    NumberTooLarge,
    /// A map key of a complex type.
    #[error("map keys must be a primitive type, found {0}")]
    NonPrimitiveMapKey(String),
    /// Two struct fields whose names differ at most in case.
    #[error("duplicate struct field name {0:?}")]
    DuplicateField(String),
    /// A backtick: Glue type strings write struct field names unquoted.
    #[error("backticks are not allowed; write struct field names without quotes")]
    Backtick,
    /// Nesting deeper than [`MAX_NESTING`].
    #[error("types nested more than {} levels deep", MAX_NESTING)]
    TooDeep,
}

/// ` (did you mean bigint?)` after an unknown type that has a Glue name.
fn did_you_mean(hint: &Option<&'static str>) -> String {
    hint.map(|hint| format!(" (did you mean {hint}?)")).unwrap_or_default()
}

/// A column whose type does not parse (see [`validate_columns`]).
///
/// Displayed as e.g. `column "items": expected ':' after struct field name "sku", found "string"
/// at offset 11 in "struct<sku string>"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column:?}: {error}")]
pub struct ColumnTypeError {
    /// The column name.
    pub column: String,
    /// What is wrong with its type.
    pub error: TypeParseError,
}

/// Parses the type of every column, stopping at the first that does not parse. The operator
/// reports the error as the Table's `Stalled` condition with reason `InvalidColumnType`.
pub fn validate_columns(columns: &[Column]) -> Result<(), ColumnTypeError> {
    for column in columns {
        GlueType::parse(&column.type_).map_err(|error| ColumnTypeError {
            column: column.name.clone(),
            error,
        })?;
    }
    Ok(())
}

impl FromStr for GlueType {
    type Err = TypeParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        GlueType::parse(input)
    }
}

impl GlueType {
    /// Parses a Glue/Hive type string (see the module documentation for the grammar). Never
    /// panics; the error says what is wrong, at which byte offset, with an excerpt of the input.
    pub fn parse(input: &str) -> Result<GlueType, TypeParseError> {
        let mut parser = grammar::Parser::new(input);
        let parsed = parser.parse_type(1)?;
        parser.skip_whitespace();
        if parser.pos < input.len() {
            return Err(parser.expected_here("end of input after a complete type".into()));
        }
        Ok(parsed)
    }

    /// Whether this is a primitive (not `array`, `map` or `struct`) type.
    pub fn is_primitive(&self) -> bool {
        !matches!(self, GlueType::Array(_) | GlueType::Map(..) | GlueType::Struct(_))
    }
}

impl fmt::Display for GlueType {
    /// The canonical form: lowercase keywords, no spaces, decimals with precision and scale.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlueType::Boolean => f.write_str("boolean"),
            GlueType::TinyInt => f.write_str("tinyint"),
            GlueType::SmallInt => f.write_str("smallint"),
            GlueType::Int => f.write_str("int"),
            GlueType::BigInt => f.write_str("bigint"),
            GlueType::Float => f.write_str("float"),
            GlueType::Double => f.write_str("double"),
            GlueType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            GlueType::String => f.write_str("string"),
            GlueType::Char(length) => write!(f, "char({length})"),
            GlueType::Varchar(length) => write!(f, "varchar({length})"),
            GlueType::Binary => f.write_str("binary"),
            GlueType::Date => f.write_str("date"),
            GlueType::Timestamp => f.write_str("timestamp"),
            GlueType::Array(element) => write!(f, "array<{element}>"),
            GlueType::Map(key, value) => write!(f, "map<{key},{value}>"),
            GlueType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{field}")?;
                }
                f.write_str(">")
            }
        }
    }
}

mod grammar;
mod lattice;

#[cfg(test)]
mod tests;
