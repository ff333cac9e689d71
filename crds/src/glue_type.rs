//! The Glue/Hive column type grammar that the crawler, the ETL runner and the operator share:
//! parsing, the canonical printed form, widening for schema inference, schema-evolution checks and
//! scalar inference from text.
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

use std::collections::{HashMap, HashSet};
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
        let mut parser = Parser { input, pos: 0 };
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

    /// Whether the two types are equal up to the order of struct fields and the case of their
    /// names (which Hive, Athena, Trino and Spark ignore), at every level.
    pub fn is_equivalent(&self, other: &GlueType) -> bool {
        match (self, other) {
            (GlueType::Array(a), GlueType::Array(b)) => a.is_equivalent(b),
            (GlueType::Map(ka, va), GlueType::Map(kb, vb)) => ka.is_equivalent(kb) && va.is_equivalent(vb),
            (GlueType::Struct(a), GlueType::Struct(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                let by_name: HashMap<String, &GlueType> = b
                    .iter()
                    .map(|field| (field.name.to_lowercase(), &field.type_))
                    .collect();
                a.iter().all(|field| {
                    by_name
                        .get(&field.name.to_lowercase())
                        .is_some_and(|type_| field.type_.is_equivalent(type_))
                })
            }
            _ => self == other,
        }
    }

    /// The narrowest type that holds the values of both `self` and `other`: how a column's type is
    /// inferred across the rows and files of a crawl (Glue's and Hive's widening).
    ///
    /// - Identical types give the same type.
    /// - Integers widen along tinyint → smallint → int → bigint.
    /// - An integer and a decimal give a decimal with enough integer digits for both (tinyint
    ///   needs 3, smallint 5, int 10, bigint 19); two decimals give the larger number of integer
    ///   digits plus the larger scale. Precision is capped at 38, and when both do not fit the
    ///   integer digits are kept and the scale reduced (rounding fractional digits loses less than
    ///   overflowing): `decimal(20,18)` + `decimal(30,0)` → `decimal(38,8)`.
    /// - An integer or decimal and a `float` or `double` give `double`; `float` + `double` →
    ///   `double`. (Not `float` for integers, as Spark does: `float` cannot hold an int exactly.)
    /// - `date` + `timestamp` → `timestamp`.
    /// - Text types follow Hive: `char(a)` + `char(b)` → `char(max)`, `char`/`varchar` +
    ///   `varchar` → `varchar(max)`, anything with `string` → `string`.
    /// - `array<a>` + `array<b>` → `array<widen(a,b)>`; maps widen key and value alike (keys stay
    ///   primitive, as every widening of primitives is primitive).
    /// - Two structs give the union of their fields, matched by name ignoring case: the fields of
    ///   `self` first (common ones widened, spelled as in `self`), then the fields only `other` has,
    ///   in its order.
    /// - Anything else (`boolean` + `int`, `struct` + `string`, `array` + `int`, `binary` +
    ///   `date`, …) → `string`, which holds every value as text.
    ///
    /// The result is commutative and associative up to struct field order and field-name case
    /// ([`is_equivalent`](Self::is_equivalent)), so the order in which files and rows are read does
    /// not change the inferred type.
    pub fn widen(&self, other: &GlueType) -> GlueType {
        use GlueType::*;
        if self == other {
            return self.clone();
        }
        match (self, other) {
            (Array(a), Array(b)) => Array(Box::new(a.widen(b))),
            (Map(ka, va), Map(kb, vb)) => Map(Box::new(ka.widen(kb)), Box::new(va.widen(vb))),
            (Struct(a), Struct(b)) => Struct(merge_fields(a, b)),
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            (Char(a), Char(b)) => Char(*a.max(b)),
            (Char(a), Varchar(b)) | (Varchar(b), Char(a)) => Varchar(u32::from(*a).max(*b)),
            (Varchar(a), Varchar(b)) => Varchar(*a.max(b)),
            _ => widen_numbers(self, other).unwrap_or(String),
        }
    }

    /// How the type of a column changed from `old` to `self`, for the crawler's schema change
    /// policy.
    ///
    /// - [`Same`](TypeChange::Same): the types are identical.
    /// - [`Widened`](TypeChange::Widened): `self` is what [`widen`](Self::widen) makes of `old` and
    ///   `self`, i.e. `self` holds every value of `old`: a wider integer (int → bigint), a decimal
    ///   with at least as many integer and fractional digits, int/decimal/float → double, date →
    ///   timestamp, a longer char/varchar, char → varchar, anything → string, an array or map whose
    ///   parts widened, a struct that kept every field (fields widened or not, new fields added,
    ///   reordered, or renamed only in case: readers match fields by name ignoring case).
    /// - [`Incompatible`](TypeChange::Incompatible): anything else: a narrower type (bigint → int,
    ///   string → int, timestamp → date, double → decimal), int → float (a float holds 24 bits), a
    ///   different family (boolean → int), or a struct that lost a field (its data would no longer
    ///   be read).
    ///
    /// The crawler's own widening never yields `Incompatible`: `old.widen(x).change_from(old)` is
    /// `Same` or `Widened` for every `x`. As in Glue, bigint → double and decimal → double count as
    /// widened although a double rounds integers beyond 2^53 and decimals beyond 15–17 significant
    /// digits, and so does the scale reduction of a decimal capped at 38 digits (see `widen`).
    pub fn change_from(&self, old: &GlueType) -> TypeChange {
        if self == old {
            TypeChange::Same
        } else if old.widen(self).is_equivalent(self) {
            TypeChange::Widened
        } else {
            TypeChange::Incompatible
        }
    }

    /// The integer digits a decimal needs to hold every value of an integer type.
    fn integer_digits(&self) -> Option<u8> {
        match self {
            GlueType::TinyInt => Some(3),
            GlueType::SmallInt => Some(5),
            GlueType::Int => Some(10),
            GlueType::BigInt => Some(19),
            _ => None,
        }
    }

    /// An integer or decimal type as (integer digits, scale).
    fn as_decimal(&self) -> Option<(u8, u8)> {
        match self {
            GlueType::Decimal { precision, scale } => Some((precision.saturating_sub(*scale), *scale)),
            other => other.integer_digits().map(|digits| (digits, 0)),
        }
    }
}

/// Widening of two different numeric types; `None` when one is not numeric.
fn widen_numbers(a: &GlueType, b: &GlueType) -> Option<GlueType> {
    let floating = |t: &GlueType| matches!(t, GlueType::Float | GlueType::Double);
    match (a.as_decimal(), b.as_decimal()) {
        (Some((digits_a, scale_a)), Some((digits_b, scale_b))) => {
            if let (Some(int_a), Some(int_b)) = (a.integer_digits(), b.integer_digits()) {
                return Some(if int_a >= int_b { a.clone() } else { b.clone() });
            }
            let digits = digits_a.max(digits_b).min(MAX_DECIMAL_PRECISION);
            let scale = scale_a.max(scale_b).min(MAX_DECIMAL_PRECISION - digits);
            Some(GlueType::Decimal {
                precision: (digits + scale).max(1),
                scale,
            })
        }
        (Some(_), None) if floating(b) => Some(GlueType::Double),
        (None, Some(_)) if floating(a) => Some(GlueType::Double),
        (None, None) if floating(a) && floating(b) => Some(GlueType::Double),
        _ => None,
    }
}

/// The union of two structs' fields by name ignoring case: `a`'s first, then those only `b` has.
fn merge_fields(a: &[StructField], b: &[StructField]) -> Vec<StructField> {
    let index: HashMap<String, usize> = b
        .iter()
        .enumerate()
        .map(|(i, field)| (field.name.to_lowercase(), i))
        .collect();
    let mut matched = vec![false; b.len()];
    let mut fields: Vec<StructField> = a
        .iter()
        .map(|field| match index.get(&field.name.to_lowercase()) {
            Some(&i) => {
                matched[i] = true;
                StructField {
                    name: field.name.clone(),
                    type_: field.type_.widen(&b[i].type_),
                }
            }
            None => field.clone(),
        })
        .collect();
    fields.extend(
        b.iter()
            .zip(&matched)
            .filter(|(_, matched)| !**matched)
            .map(|(field, _)| field.clone()),
    );
    fields
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

/// The longest excerpt of the input an error shows.
const EXCERPT_LEN: usize = 60;

/// The longest name or type an error message repeats.
const QUOTE_LEN: usize = 64;

/// `text`, cut after [`QUOTE_LEN`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The input around `offset`, at most [`EXCERPT_LEN`] bytes (plus whole characters), with `…`
/// where it was cut.
fn excerpt(input: &str, offset: usize) -> String {
    if input.len() <= EXCERPT_LEN {
        return input.to_string();
    }
    let mut start = offset.saturating_sub(EXCERPT_LEN / 2).min(input.len() - EXCERPT_LEN);
    while !input.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + EXCERPT_LEN).min(input.len());
    while !input.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{}{}{}",
        if start > 0 { "…" } else { "" },
        &input[start..end],
        if end < input.len() { "…" } else { "" }
    )
}

/// What the input holds at `offset`, for an error message: `end of input`, a word in double
/// quotes, or a character in single quotes.
fn describe(input: &str, offset: usize) -> String {
    let rest = input.get(offset..).unwrap_or_default();
    let is_word = |c: &char| c.is_alphanumeric() || *c == '_';
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some(c) if is_word(&c) => {
            let word: String = rest.chars().take_while(is_word).collect();
            format!("{:?}", shorten(&word))
        }
        Some(c) => format!("{c:?}"),
    }
}

/// The Glue name of a type other systems spell differently.
fn hint(word: &str) -> Option<&'static str> {
    Some(match word {
        "long" | "int64" => "bigint",
        "short" | "int16" => "smallint",
        "byte" => "tinyint",
        "int32" => "int",
        "bool" => "boolean",
        "real" | "float32" => "float",
        "float64" => "double",
        "numeric" | "dec" | "number" => "decimal",
        "text" | "str" | "utf8" => "string",
        "bytes" | "blob" | "bytea" => "binary",
        "datetime" | "timestamp_ntz" | "timestamp_ltz" | "timestamptz" => "timestamp",
        "list" => "array",
        "record" | "row" => "struct",
        _ => return None,
    })
}

/// A recursive-descent parser over a type string; `pos` is a byte offset, always on a character
/// boundary (it only moves over ASCII bytes or up to an ASCII delimiter).
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.input.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        while self.bytes().get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes().get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8, expected: impl FnOnce() -> String) -> Result<(), TypeParseError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.expected_here(expected()))
        }
    }

    fn error(&self, offset: usize, kind: TypeParseErrorKind) -> TypeParseError {
        TypeParseError {
            kind,
            offset,
            excerpt: excerpt(self.input, offset),
        }
    }

    fn expected_at(&self, offset: usize, expected: String) -> TypeParseError {
        let found = describe(self.input, offset);
        self.error(offset, TypeParseErrorKind::Expected { expected, found })
    }

    fn expected_here(&self, expected: String) -> TypeParseError {
        self.expected_at(self.pos, expected)
    }

    /// Skips whitespace and reads a keyword (ASCII letters, digits, underscores) and its offset.
    fn word(&mut self) -> (usize, &'a str) {
        self.skip_whitespace();
        let start = self.pos;
        while self
            .bytes()
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        (start, &self.input[start..self.pos])
    }

    /// Skips whitespace and reads a decimal number and its offset.
    fn number(&mut self, what: &str) -> Result<(usize, u64), TypeParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit) = self.bytes().get(self.pos).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or_else(|| self.error(start, TypeParseErrorKind::NumberTooLarge))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected_here(what.to_string()));
        }
        Ok((start, value))
    }

    fn parse_type(&mut self, depth: usize) -> Result<GlueType, TypeParseError> {
        let (start, word) = self.word();
        if word.is_empty() {
            return Err(self.expected_here("a type".into()));
        }
        if depth > MAX_NESTING {
            return Err(self.error(start, TypeParseErrorKind::TooDeep));
        }
        let keyword = word.to_ascii_lowercase();
        Ok(match keyword.as_str() {
            "boolean" => GlueType::Boolean,
            "tinyint" => GlueType::TinyInt,
            "smallint" => GlueType::SmallInt,
            "int" | "integer" => GlueType::Int,
            "bigint" => GlueType::BigInt,
            "float" => GlueType::Float,
            "double" => GlueType::Double,
            "decimal" => self.decimal()?,
            "string" => GlueType::String,
            "char" => GlueType::Char(self.length("char", u32::from(MAX_CHAR_LENGTH))? as u16),
            "varchar" => GlueType::Varchar(self.length("varchar", MAX_VARCHAR_LENGTH)?),
            "binary" => GlueType::Binary,
            "date" => GlueType::Date,
            "timestamp" => GlueType::Timestamp,
            "array" => {
                self.expect(b'<', || "'<' after array".into())?;
                let element = self.parse_type(depth + 1)?;
                self.expect(b'>', || "'>' to close array<…>".into())?;
                GlueType::Array(Box::new(element))
            }
            "map" => {
                self.expect(b'<', || "'<' after map".into())?;
                self.skip_whitespace();
                let key_start = self.pos;
                let key = self.parse_type(depth + 1)?;
                if !key.is_primitive() {
                    let key = shorten(&key.to_string());
                    return Err(self.error(key_start, TypeParseErrorKind::NonPrimitiveMapKey(key)));
                }
                self.expect(b',', || "',' after the map key type".into())?;
                let value = self.parse_type(depth + 1)?;
                self.expect(b'>', || "'>' to close map<…>".into())?;
                GlueType::Map(Box::new(key), Box::new(value))
            }
            "struct" => self.struct_fields(depth)?,
            _ => {
                return Err(self.error(
                    start,
                    TypeParseErrorKind::UnknownType {
                        name: shorten(word),
                        hint: hint(&keyword),
                    },
                ));
            }
        })
    }

    /// After `decimal`: an optional `(precision[,scale])`.
    fn decimal(&mut self) -> Result<GlueType, TypeParseError> {
        if !self.eat(b'(') {
            return Ok(GlueType::Decimal {
                precision: 10,
                scale: 0,
            });
        }
        let (precision_at, precision) = self.number("a number for the decimal precision")?;
        let (scale_at, scale) = if self.eat(b',') {
            self.number("a number for the decimal scale")?
        } else if self.bytes().get(self.pos) == Some(&b')') {
            (precision_at, 0)
        } else {
            return Err(self.expected_here("',' or ')' after the decimal precision".into()));
        };
        self.expect(b')', || "')' to close decimal(…)".into())?;
        if !(1..=u64::from(MAX_DECIMAL_PRECISION)).contains(&precision) {
            return Err(self.error(precision_at, TypeParseErrorKind::DecimalPrecision(precision)));
        }
        if scale > precision {
            return Err(self.error(scale_at, TypeParseErrorKind::DecimalScale { precision, scale }));
        }
        // Both fit in u8: precision ≤ 38 and scale ≤ precision.
        Ok(GlueType::Decimal {
            precision: precision as u8,
            scale: scale as u8,
        })
    }

    /// After `char` or `varchar`: `(length)`, with the length in 1..=max.
    fn length(&mut self, type_name: &'static str, max: u32) -> Result<u32, TypeParseError> {
        self.expect(b'(', || format!("'(' and a length after {type_name}"))?;
        let (at, length) = self.number(&format!("a number for the {type_name} length"))?;
        self.expect(b')', || format!("')' to close {type_name}(…)"))?;
        if !(1..=u64::from(max)).contains(&length) {
            return Err(self.error(
                at,
                TypeParseErrorKind::Length {
                    type_name,
                    max,
                    found: length,
                },
            ));
        }
        // Fits: length ≤ max, a u32.
        Ok(length as u32)
    }

    /// After `struct`: `<name:type,…>`.
    fn struct_fields(&mut self, depth: usize) -> Result<GlueType, TypeParseError> {
        self.expect(b'<', || "'<' after struct".into())?;
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let (name_at, name) = self.field_name()?;
            if !seen.insert(name.to_lowercase()) {
                return Err(self.error(name_at, TypeParseErrorKind::DuplicateField(shorten(name))));
            }
            let type_ = self.parse_type(depth + 1)?;
            fields.push(StructField {
                name: name.to_string(),
                type_,
            });
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'>') {
                return Ok(GlueType::Struct(fields));
            }
            return Err(self.expected_here(format!("',' or '>' after struct field {:?}", shorten(name))));
        }
    }

    /// A struct field name and the `:` after it; returns the name's offset and the name without
    /// surrounding whitespace.
    fn field_name(&mut self) -> Result<(usize, &'a str), TypeParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let rest = &self.input[start..];
        let stop = start + rest.find([':', ',', '<', '>', '`']).unwrap_or(rest.len());
        let name = self.input[start..stop].trim_end_matches(|c: char| c.is_ascii_whitespace());
        match self.bytes().get(stop) {
            Some(b'`') => Err(self.error(stop, TypeParseErrorKind::Backtick)),
            _ if name.is_empty() => Err(self.expected_here("a struct field name".into())),
            Some(b':') => {
                self.pos = stop + 1;
                Ok((start, name))
            }
            _ => {
                // The usual mistake is Hive DDL's `name type`: point at the second word.
                let (first, at) = match name.find(|c: char| c.is_ascii_whitespace()) {
                    Some(gap) => {
                        let after = &name[gap..];
                        let spaces = after.len() - after.trim_start_matches(|c: char| c.is_ascii_whitespace()).len();
                        (&name[..gap], start + gap + spaces)
                    }
                    None => (name, stop),
                };
                Err(self.expected_at(at, format!("':' after struct field name {:?}", shorten(first))))
            }
        }
    }
}

/// The type a text value (a CSV field, a Hive partition value such as `dt=2024-01-01`) suggests, for
/// schema inference; widen the results over many values with [`GlueType::widen`].
///
/// - `""` → `None`: an empty value is a null and says nothing about the type.
/// - `true` / `false`, in any case → `boolean`.
/// - An integer that fits 32 bits → `int`; 64 bits → `bigint`. A longer one → `string`.
/// - A decimal or scientific number (`-1.5`, `2.5e-3`, `1E10`) → `double`; `NaN`, `inf` and
///   numbers beyond a double's range → `string`.
/// - A leading zero (`007`, `00.5`), a leading `+`, or a point without digits on both sides (`.5`,
///   `5.`) → `string`: like Glue, such values are taken for identifiers or codes, whose zeros and
///   signs would be lost as numbers. `0`, `-0` and `0.5` are numbers.
/// - `YYYY-MM-DD`, a real calendar day (`2024-02-29` yes, `2023-02-29` no) → `date`.
/// - `YYYY-MM-DD HH:MM:SS[.f…]` (Hive's form, 1–9 fractional digits) and ISO 8601
///   `YYYY-MM-DDTHH:MM:SS[.f…][Z|±HH:MM]` → `timestamp`.
/// - Anything else → `string`. Values are not trimmed: ` 42` is a string, as a CSV reader would
///   not read it as a number either.
pub fn infer_text(value: &str) -> Option<GlueType> {
    if value.is_empty() {
        return None;
    }
    if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
        return Some(GlueType::Boolean);
    }
    let bytes = value.as_bytes();
    Some(
        infer_number(value)
            .or_else(|| is_date(bytes).then_some(GlueType::Date))
            .or_else(|| is_timestamp(bytes).then_some(GlueType::Timestamp))
            .unwrap_or(GlueType::String),
    )
}

/// The number of ASCII digits at the start of `bytes`.
fn leading_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `int`, `bigint` or `double` for a number written as [`infer_text`] accepts it.
fn infer_number(value: &str) -> Option<GlueType> {
    let bytes = value.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let integer_digits = leading_digits(&bytes[i..]);
    if integer_digits == 0 || (integer_digits > 1 && bytes[i] == b'0') {
        return None;
    }
    i += integer_digits;
    if i == bytes.len() {
        return match value.parse::<i64>() {
            Ok(v) if i32::try_from(v).is_ok() => Some(GlueType::Int),
            Ok(_) => Some(GlueType::BigInt),
            Err(_) => None,
        };
    }
    if bytes[i] == b'.' {
        let fraction = leading_digits(&bytes[i + 1..]);
        if fraction == 0 {
            return None;
        }
        i += 1 + fraction;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent = leading_digits(bytes.get(i..).unwrap_or_default());
        if exponent == 0 {
            return None;
        }
        i += exponent;
    }
    if i != bytes.len() {
        return None;
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|_| GlueType::Double)
}

/// The value of a run of ASCII digits (callers check they are digits and few).
fn digits_value(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |value, b| value * 10 + u32::from(b - b'0'))
}

/// Whether `bytes` are exactly `count` ASCII digits.
fn all_digits(bytes: &[u8], count: usize) -> bool {
    bytes.len() == count && leading_digits(bytes) == count
}

/// `YYYY-MM-DD`, a day that exists in the proleptic Gregorian calendar.
fn is_date(bytes: &[u8]) -> bool {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    if !all_digits(&bytes[0..4], 4) || !all_digits(&bytes[5..7], 2) || !all_digits(&bytes[8..10], 2) {
        return false;
    }
    let year = digits_value(&bytes[0..4]);
    let month = digits_value(&bytes[5..7]);
    let day = digits_value(&bytes[8..10]);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `HH:MM` with HH 00–23 and MM 00–59.
fn is_hours_minutes(bytes: &[u8]) -> bool {
    bytes.len() == 5
        && bytes[2] == b':'
        && all_digits(&bytes[0..2], 2)
        && all_digits(&bytes[3..5], 2)
        && digits_value(&bytes[0..2]) < 24
        && digits_value(&bytes[3..5]) < 60
}

/// `YYYY-MM-DD HH:MM:SS[.f…]` or `YYYY-MM-DDTHH:MM:SS[.f…][Z|±HH:MM]`.
fn is_timestamp(bytes: &[u8]) -> bool {
    if bytes.len() < 19 || !is_date(&bytes[..10]) {
        return false;
    }
    let iso = match bytes[10] {
        b' ' => false,
        b'T' => true,
        _ => return false,
    };
    let time = &bytes[11..19];
    if !is_hours_minutes(&time[..5]) || time[5] != b':' || !all_digits(&time[6..8], 2) || digits_value(&time[6..8]) > 59
    {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = leading_digits(fraction);
        if !(1..=9).contains(&digits) {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [] => true,
        _ if !iso => false,
        [b'Z'] => true,
        [b'+' | b'-', offset @ ..] => is_hours_minutes(offset),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::GlueType::*;
    use super::*;

    fn parse(input: &str) -> GlueType {
        match GlueType::parse(input) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{input:?} should parse: {error}"),
        }
    }

    fn error(input: &str) -> std::string::String {
        match GlueType::parse(input) {
            Ok(parsed) => panic!("{input:?} should not parse, got {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn array(element: GlueType) -> GlueType {
        Array(Box::new(element))
    }

    fn map(key: GlueType, value: GlueType) -> GlueType {
        Map(Box::new(key), Box::new(value))
    }

    fn strukt(fields: &[(&str, GlueType)]) -> GlueType {
        Struct(
            fields
                .iter()
                .map(|(name, type_)| StructField {
                    name: name.to_string(),
                    type_: type_.clone(),
                })
                .collect(),
        )
    }

    fn decimal(precision: u8, scale: u8) -> GlueType {
        Decimal { precision, scale }
    }

    #[test]
    fn parses_every_primitive() {
        let cases = [
            ("boolean", Boolean),
            ("tinyint", TinyInt),
            ("smallint", SmallInt),
            ("int", Int),
            ("integer", Int),
            ("bigint", BigInt),
            ("float", Float),
            ("double", Double),
            ("decimal", decimal(10, 0)),
            ("decimal(12)", decimal(12, 0)),
            ("decimal(12,2)", decimal(12, 2)),
            ("decimal(38,38)", decimal(38, 38)),
            ("decimal(1,0)", decimal(1, 0)),
            ("decimal(012,02)", decimal(12, 2)),
            ("string", String),
            ("char(1)", Char(1)),
            ("char(255)", Char(255)),
            ("varchar(1)", Varchar(1)),
            ("varchar(65535)", Varchar(65535)),
            ("binary", Binary),
            ("date", Date),
            ("timestamp", Timestamp),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), expected, "{input}");
        }
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse("BIGINT"), BigInt);
        assert_eq!(parse("Integer"), Int);
        assert_eq!(parse("DECIMAL(5,1)"), decimal(5, 1));
        assert_eq!(parse("VarChar(10)"), Varchar(10));
        assert_eq!(
            parse("ARRAY<Map<STRING,Struct<Id:BIGINT>>>"),
            array(map(String, strukt(&[("Id", BigInt)])))
        );
    }

    #[test]
    fn whitespace_is_allowed_around_tokens() {
        assert_eq!(
            parse(
                "  struct < a : int , b\t:\narray < string > , c : decimal ( 12 , 2 ) , d : map < string , bigint > >  "
            ),
            strukt(&[
                ("a", Int),
                ("b", array(String)),
                ("c", decimal(12, 2)),
                ("d", map(String, BigInt)),
            ])
        );
        assert_eq!(parse(" char ( 3 ) "), Char(3));
        assert_eq!(parse("decimal ( 7 )"), decimal(7, 0));
    }

    #[test]
    fn struct_fields_keep_their_order_case_and_characters() {
        assert_eq!(
            parse("struct<zeta:int,Alpha:string,first-name:string,x.y:double,Last Name:date,名前:string,$ref:binary>"),
            strukt(&[
                ("zeta", Int),
                ("Alpha", String),
                ("first-name", String),
                ("x.y", Double),
                ("Last Name", Date),
                ("名前", String),
                ("$ref", Binary),
            ])
        );
        // Keywords are only keywords in type position.
        assert_eq!(
            parse("struct<int:string,struct:int,map:array<int>>"),
            strukt(&[("int", String), ("struct", Int), ("map", array(Int))])
        );
    }

    #[test]
    fn nested_types_parse() {
        assert_eq!(
            parse("array<struct<sku:string,quantity:int>>"),
            array(strukt(&[("sku", String), ("quantity", Int)]))
        );
        assert_eq!(
            parse("map<date,array<map<int,struct<a:array<array<decimal(5,2)>>>>>>"),
            map(Date, array(map(Int, strukt(&[("a", array(array(decimal(5, 2))))]))))
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            ("", "expected a type, found end of input at offset 0 in \"\""),
            ("   ", "expected a type, found end of input at offset 3 in \"   \""),
            (
                "long",
                "unknown type \"long\" (did you mean bigint?) at offset 0 in \"long\"",
            ),
            (
                "array<Text>",
                "unknown type \"Text\" (did you mean string?) at offset 6 in \"array<Text>\"",
            ),
            (
                "uniontype<int,string>",
                "unknown type \"uniontype\" at offset 0 in \"uniontype<int,string>\"",
            ),
            (
                "int64",
                "unknown type \"int64\" (did you mean bigint?) at offset 0 in \"int64\"",
            ),
            ("int8", "unknown type \"int8\" at offset 0 in \"int8\""),
            ("ïnt", "expected a type, found \"ïnt\" at offset 0 in \"ïnt\""),
            (
                "array<struct<a:int>",
                "expected '>' to close array<…>, found end of input at offset 19 in \"array<struct<a:int>\"",
            ),
            (
                "array<struct<a:int",
                "expected ',' or '>' after struct field \"a\", found end of input at offset 18 in \"array<struct<a:int\"",
            ),
            (
                "array",
                "expected '<' after array, found end of input at offset 5 in \"array\"",
            ),
            ("array<>", "expected a type, found '>' at offset 6 in \"array<>\""),
            (
                "array<int,int>",
                "expected '>' to close array<…>, found ',' at offset 9 in \"array<int,int>\"",
            ),
            (
                "array<int>>",
                "expected end of input after a complete type, found '>' at offset 10 in \"array<int>>\"",
            ),
            (
                "int int",
                "expected end of input after a complete type, found \"int\" at offset 4 in \"int int\"",
            ),
            (
                "map<string>",
                "expected ',' after the map key type, found '>' at offset 10 in \"map<string>\"",
            ),
            (
                "map<string,int",
                "expected '>' to close map<…>, found end of input at offset 14 in \"map<string,int\"",
            ),
            (
                "map<array<int>,string>",
                "map keys must be a primitive type, found array<int> at offset 4 in \"map<array<int>,string>\"",
            ),
            (
                "map< struct<a:int>,string>",
                "map keys must be a primitive type, found struct<a:int> at offset 5 in \"map< struct<a:int>,string>\"",
            ),
            (
                "struct<sku string>",
                "expected ':' after struct field name \"sku\", found \"string\" at offset 11 in \"struct<sku string>\"",
            ),
            (
                "struct<a int, b string>",
                "expected ':' after struct field name \"a\", found \"int\" at offset 9 in \"struct<a int, b string>\"",
            ),
            (
                "struct<a>",
                "expected ':' after struct field name \"a\", found '>' at offset 8 in \"struct<a>\"",
            ),
            (
                "struct<a:int b:string>",
                "expected ',' or '>' after struct field \"a\", found \"b\" at offset 13 in \"struct<a:int b:string>\"",
            ),
            (
                "struct<>",
                "expected a struct field name, found '>' at offset 7 in \"struct<>\"",
            ),
            (
                "struct<:int>",
                "expected a struct field name, found ':' at offset 7 in \"struct<:int>\"",
            ),
            (
                "struct<a:int,>",
                "expected a struct field name, found '>' at offset 13 in \"struct<a:int,>\"",
            ),
            ("struct<a:>", "expected a type, found '>' at offset 9 in \"struct<a:>\""),
            (
                "struct<`a`:int>",
                "backticks are not allowed; write struct field names without quotes at offset 7 in \"struct<`a`:int>\"",
            ),
            (
                "struct<a:int,A:string>",
                "duplicate struct field name \"A\" at offset 13 in \"struct<a:int,A:string>\"",
            ),
            (
                "decimal(39,2)",
                "decimal precision must be between 1 and 38, found 39 at offset 8 in \"decimal(39,2)\"",
            ),
            (
                "decimal(0)",
                "decimal precision must be between 1 and 38, found 0 at offset 8 in \"decimal(0)\"",
            ),
            (
                "decimal(5,6)",
                "decimal scale 6 is larger than its precision 5 at offset 10 in \"decimal(5,6)\"",
            ),
            (
                "decimal()",
                "expected a number for the decimal precision, found ')' at offset 8 in \"decimal()\"",
            ),
            (
                "decimal(10,)",
                "expected a number for the decimal scale, found ')' at offset 11 in \"decimal(10,)\"",
            ),
            (
                "decimal(-1,0)",
                "expected a number for the decimal precision, found '-' at offset 8 in \"decimal(-1,0)\"",
            ),
            (
                "decimal(10;2)",
                "expected ',' or ')' after the decimal precision, found ';' at offset 10 in \"decimal(10;2)\"",
            ),
            (
                "decimal(10,2",
                "expected ')' to close decimal(…), found end of input at offset 12 in \"decimal(10,2\"",
            ),
            (
                "decimal(99999999999999999999,1)",
                "number too large at offset 8 in \"decimal(99999999999999999999,1)\"",
            ),
            (
                "char",
                "expected '(' and a length after char, found end of input at offset 4 in \"char\"",
            ),
            (
                "char(0)",
                "char length must be between 1 and 255, found 0 at offset 5 in \"char(0)\"",
            ),
            (
                "char(256)",
                "char length must be between 1 and 255, found 256 at offset 5 in \"char(256)\"",
            ),
            (
                "varchar(65536)",
                "varchar length must be between 1 and 65535, found 65536 at offset 8 in \"varchar(65536)\"",
            ),
            (
                "varchar(x)",
                "expected a number for the varchar length, found \"x\" at offset 8 in \"varchar(x)\"",
            ),
            (
                "varchar(10",
                "expected ')' to close varchar(…), found end of input at offset 10 in \"varchar(10\"",
            ),
            (
                "string\u{0}",
                "expected end of input after a complete type, found '\\0' at offset 6 in \"string\\0\"",
            ),
        ];
        let mut failures = Vec::new();
        for (input, expected) in cases {
            let actual = error(input);
            if actual != expected {
                failures.push(format!("{input:?}\n  expected: {expected}\n  actual:   {actual}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn error_kind_and_offset_are_exposed() {
        let error = GlueType::parse("array<struct<a:int").expect_err("unclosed");
        assert_eq!(error.offset, 18);
        assert_eq!(error.excerpt, "array<struct<a:int");
        assert_eq!(
            error.kind,
            TypeParseErrorKind::Expected {
                expected: "',' or '>' after struct field \"a\"".into(),
                found: "end of input".into()
            }
        );
        assert_eq!(
            "bool".parse::<GlueType>().expect_err("bool").kind,
            TypeParseErrorKind::UnknownType {
                name: "bool".into(),
                hint: Some("boolean")
            }
        );
    }

    #[test]
    fn long_input_is_excerpted_around_the_error() {
        let fields: Vec<std::string::String> = (0..20).map(|i| format!("field_{i:02}:int")).collect();
        let input = format!("struct<{},bad field>", fields.join(","));
        let error = GlueType::parse(&input).expect_err("bad field");
        assert_eq!(error.offset, input.find("field>").expect("present"));
        assert_eq!(
            error.to_string(),
            format!(
                "expected ':' after struct field name \"bad\", found \"field\" at offset {} in \"…eld_16:int,field_17:int,field_18:int,field_19:int,bad field>\"",
                error.offset
            )
        );
        // The excerpt is cut on character boundaries.
        let input = format!("struct<{}:int,ü:bogus>", "ü".repeat(100));
        let error = GlueType::parse(&input).expect_err("bogus");
        assert_eq!(error.offset, input.len() - 6);
        assert!(
            error.excerpt.starts_with('…') && error.excerpt.ends_with(":bogus>"),
            "{}",
            error.excerpt
        );
        let input = format!("struct<a:{}>", "x".repeat(200));
        let error = GlueType::parse(&input).expect_err("unknown");
        assert_eq!(error.excerpt, format!("struct<a:{}…", "x".repeat(51)));
        assert_eq!(
            error.kind,
            TypeParseErrorKind::UnknownType {
                name: format!("{}…", "x".repeat(64)),
                hint: None
            }
        );
    }

    #[test]
    fn nesting_is_limited_without_overflowing_the_stack() {
        let nested = |levels: usize| format!("{}int{}", "array<".repeat(levels), ">".repeat(levels));
        let mut expected = Int;
        for _ in 0..MAX_NESTING - 1 {
            expected = array(expected);
        }
        assert_eq!(parse(&nested(MAX_NESTING - 1)), expected);
        let error = GlueType::parse(&nested(MAX_NESTING)).expect_err("too deep");
        assert_eq!(error.kind, TypeParseErrorKind::TooDeep);
        assert_eq!(error.offset, 6 * MAX_NESTING);
        assert!(
            error
                .to_string()
                .starts_with("types nested more than 100 levels deep at offset 600 in \"…")
        );
        for input in [
            "array<".repeat(100_000),
            "struct<a:".repeat(100_000),
            "map<int,".repeat(100_000),
            format!("{}int{}", "array<".repeat(50_000), ">".repeat(50_000)),
        ] {
            assert_eq!(
                GlueType::parse(&input).expect_err("too deep").kind,
                TypeParseErrorKind::TooDeep
            );
        }
    }

    /// Valid type strings that exercise every rule, as seeds for mutation.
    const SEEDS: &[&str] = &[
        "int",
        "decimal(12,2)",
        "char(10)",
        "varchar(300)",
        "array<struct<sku:string,quantity:int>>",
        "map<string,array<map<int,decimal(38,10)>>>",
        "struct<a:int,b-c:array<string>,名前:map<date,timestamp>>",
        " STRUCT < a : struct < b : array < varchar ( 5 ) > > > ",
        "decimal",
        "map<decimal(5),struct<x:double,y:float,z:binary>>",
    ];

    /// A small deterministic pseudo-random generator (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parsing never panics; what parses prints canonically and parses back to itself; an error's
    /// offset lies within the input.
    fn check_robust(input: &str) {
        match GlueType::parse(input) {
            Ok(parsed) => assert_eq!(GlueType::parse(&parsed.to_string()).as_ref(), Ok(&parsed), "{input:?}"),
            Err(error) => {
                assert!(error.offset <= input.len(), "{input:?}: {error}");
                assert!(error.to_string().contains(" at offset "), "{input:?}: {error}");
            }
        }
    }

    #[test]
    fn mangled_input_never_panics() {
        let inserts = [
            "<", ">", "(", ")", ",", ":", "`", " ", "x", "9", "é", "\u{0}", "-", "array<", "struct<",
        ];
        let mut count = 0;
        for seed in SEEDS {
            let chars: Vec<char> = seed.chars().collect();
            for i in 0..=chars.len() {
                let prefix: std::string::String = chars[..i].iter().collect();
                let suffix: std::string::String = chars[i..].iter().collect();
                let mut variants = vec![prefix.clone(), suffix.clone()];
                if i < chars.len() {
                    let after: std::string::String = chars[i + 1..].iter().collect();
                    variants.push(format!("{prefix}{after}"));
                    for insert in inserts {
                        variants.push(format!("{prefix}{insert}{after}"));
                    }
                    if i + 1 < chars.len() {
                        let mut swapped = chars.clone();
                        swapped.swap(i, i + 1);
                        variants.push(swapped.iter().collect());
                    }
                }
                for insert in inserts {
                    variants.push(format!("{prefix}{insert}{suffix}"));
                }
                for variant in variants {
                    check_robust(&variant);
                    count += 1;
                }
            }
        }
        let vocabulary = [
            "array",
            "map",
            "struct",
            "int",
            "decimal",
            "char",
            "varchar",
            "string",
            "<",
            ">",
            "(",
            ")",
            ",",
            ":",
            " ",
            "a",
            "1",
            "38",
            "0",
            "99999999999999999999999",
            "`",
            "é",
            "\t",
            "-",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let length = rng.below(24);
            let input: std::string::String = (0..length).map(|_| vocabulary[rng.below(vocabulary.len())]).collect();
            check_robust(&input);
            count += 1;
        }
        assert!(count > 25_000, "{count} inputs");
    }

    /// Primitive types with interesting parameters.
    fn primitives() -> Vec<GlueType> {
        vec![
            Boolean,
            TinyInt,
            SmallInt,
            Int,
            BigInt,
            Float,
            Double,
            decimal(1, 0),
            decimal(10, 0),
            decimal(12, 2),
            decimal(38, 0),
            decimal(38, 38),
            String,
            Char(1),
            Char(255),
            Varchar(1),
            Varchar(65535),
            Binary,
            Date,
            Timestamp,
        ]
    }

    /// Types built from the primitives two levels deep: arrays, maps and structs of each other.
    fn sample_types() -> Vec<GlueType> {
        let primitives = primitives();
        let keys = [String, Int, Date, decimal(12, 2)];
        let mut level1 = Vec::new();
        for (i, p) in primitives.iter().enumerate() {
            level1.push(array(p.clone()));
            level1.push(map(keys[i % keys.len()].clone(), p.clone()));
            level1.push(strukt(&[("a", p.clone())]));
            level1.push(strukt(&[
                ("B-1", p.clone()),
                ("a", primitives[(i + 7) % primitives.len()].clone()),
            ]));
        }
        let mut level2 = Vec::new();
        for (i, t) in level1.iter().enumerate() {
            level2.push(array(t.clone()));
            level2.push(map(keys[i % keys.len()].clone(), t.clone()));
            level2.push(strukt(&[
                ("x y", t.clone()),
                ("a", primitives[i % primitives.len()].clone()),
            ]));
        }
        [primitives, level1, level2].concat()
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            (
                " STRUCT < a : INT , b : ARRAY < STRING > > ",
                "struct<a:int,b:array<string>>",
            ),
            ("decimal ( 12 , 2 )", "decimal(12,2)"),
            ("decimal", "decimal(10,0)"),
            ("DECIMAL(7)", "decimal(7,0)"),
            ("map < STRING , BigInt >", "map<string,bigint>"),
            ("integer", "int"),
            ("VARCHAR ( 020 )", "varchar(20)"),
            ("char(3)", "char(3)"),
            ("struct<Name With Space : int>", "struct<Name With Space:int>"),
            (
                "array<struct<sku:string,quantity:int>>",
                "array<struct<sku:string,quantity:int>>",
            ),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).to_string(), canonical, "{input}");
        }
        let field = StructField {
            name: "a".into(),
            type_: array(Int),
        };
        assert_eq!(field.to_string(), "a:array<int>");
    }

    /// Writes a type with random keyword case, `integer` for some `int`s and random whitespace
    /// around tokens.
    fn noisy(t: &GlueType, rng: &mut Rng) -> std::string::String {
        fn space(rng: &mut Rng) -> &'static str {
            ["", "", "", " ", "  ", "\t", "\n"][rng.below(7)]
        }
        fn keyword(word: &str, rng: &mut Rng) -> std::string::String {
            let cased: std::string::String = word
                .chars()
                .map(|c| if rng.below(2) == 0 { c.to_ascii_uppercase() } else { c })
                .collect();
            format!("{}{cased}{}", space(rng), space(rng))
        }
        match t {
            Int if rng.below(2) == 0 => keyword("integer", rng),
            Decimal { precision, scale } => format!(
                "{}({}{precision}{},{}{scale}{}){}",
                keyword("decimal", rng),
                space(rng),
                space(rng),
                space(rng),
                space(rng),
                space(rng)
            ),
            Char(n) => format!("{}({n}){}", keyword("char", rng), space(rng)),
            Varchar(n) => format!(
                "{}({}{n}{}){}",
                keyword("varchar", rng),
                space(rng),
                space(rng),
                space(rng)
            ),
            Array(element) => format!("{}<{}>{}", keyword("array", rng), noisy(element, rng), space(rng)),
            Map(key, value) => format!(
                "{}<{},{}>{}",
                keyword("map", rng),
                noisy(key, rng),
                noisy(value, rng),
                space(rng)
            ),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|field| {
                        format!(
                            "{}{}{}:{}",
                            space(rng),
                            field.name,
                            space(rng),
                            noisy(&field.type_, rng)
                        )
                    })
                    .collect();
                format!("{}<{}>{}", keyword("struct", rng), fields.join(","), space(rng))
            }
            other => keyword(&other.to_string(), rng),
        }
    }

    #[test]
    fn display_round_trips() {
        let types = sample_types();
        assert_eq!(types.len(), 20 + 80 + 240);
        let mut rng = Rng(42);
        for t in &types {
            let canonical = t.to_string();
            assert!(!canonical.contains(' ') || canonical.contains("x y"), "{canonical}");
            assert_eq!(&parse(&canonical), t, "{canonical}");
            let input = noisy(t, &mut rng);
            assert_eq!(&parse(&input), t, "{input:?}");
        }
    }

    #[test]
    fn is_primitive_is_false_only_for_complex_types() {
        for p in primitives() {
            assert!(p.is_primitive(), "{p}");
        }
        assert!(!array(Int).is_primitive());
        assert!(!map(String, Int).is_primitive());
        assert!(!strukt(&[("a", Int)]).is_primitive());
    }

    #[test]
    fn widen_follows_glue() {
        let cases = [
            ("int", "int", "int"),
            ("tinyint", "smallint", "smallint"),
            ("smallint", "int", "int"),
            ("int", "bigint", "bigint"),
            ("tinyint", "bigint", "bigint"),
            ("int", "float", "double"),
            ("bigint", "double", "double"),
            ("float", "double", "double"),
            ("float", "float", "float"),
            ("tinyint", "decimal(1,0)", "decimal(3,0)"),
            ("int", "decimal(5,2)", "decimal(12,2)"),
            ("bigint", "decimal(10,4)", "decimal(23,4)"),
            ("decimal(12,2)", "int", "decimal(12,2)"),
            ("bigint", "decimal(38,30)", "decimal(38,19)"),
            ("decimal(10,2)", "decimal(5,4)", "decimal(12,4)"),
            ("decimal(20,18)", "decimal(30,0)", "decimal(38,8)"),
            ("decimal(38,38)", "decimal(38,0)", "decimal(38,0)"),
            ("decimal(12,2)", "double", "double"),
            ("float", "decimal(12,2)", "double"),
            ("date", "timestamp", "timestamp"),
            ("timestamp", "date", "timestamp"),
            ("char(5)", "char(10)", "char(10)"),
            ("char(200)", "varchar(20)", "varchar(200)"),
            ("varchar(20)", "char(5)", "varchar(20)"),
            ("varchar(20)", "varchar(30)", "varchar(30)"),
            ("char(5)", "string", "string"),
            ("string", "varchar(5)", "string"),
            ("boolean", "int", "string"),
            ("int", "date", "string"),
            ("binary", "string", "string"),
            ("binary", "int", "string"),
            ("date", "boolean", "string"),
            ("struct<a:int>", "string", "string"),
            ("array<int>", "int", "string"),
            ("array<int>", "map<int,int>", "string"),
            ("map<int,int>", "struct<a:int>", "string"),
            ("array<int>", "array<bigint>", "array<bigint>"),
            ("array<int>", "array<boolean>", "array<string>"),
            (
                "array<array<date>>",
                "array<array<timestamp>>",
                "array<array<timestamp>>",
            ),
            ("map<int,date>", "map<bigint,timestamp>", "map<bigint,timestamp>"),
            ("map<int,int>", "map<date,int>", "map<string,int>"),
            (
                "struct<a:int,b:string>",
                "struct<b:string,c:date,a:bigint>",
                "struct<a:bigint,b:string,c:date>",
            ),
            (
                "struct<b:string,c:date,a:bigint>",
                "struct<a:int,b:string>",
                "struct<b:string,c:date,a:bigint>",
            ),
            ("struct<Id:int>", "struct<id:double,x:int>", "struct<Id:double,x:int>"),
            (
                "struct<a:struct<x:int>>",
                "struct<a:struct<y:date>,b:array<int>>",
                "struct<a:struct<x:int,y:date>,b:array<int>>",
            ),
            (
                "array<struct<a:int>>",
                "array<struct<b:int>>",
                "array<struct<a:int,b:int>>",
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(parse(a).widen(&parse(b)).to_string(), expected, "{a} + {b}");
        }
    }

    /// A set of types where widening does interesting things, small enough for every triple.
    fn widening_types() -> Vec<GlueType> {
        [
            "boolean",
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "float",
            "double",
            "decimal(3,2)",
            "decimal(12,2)",
            "decimal(20,18)",
            "decimal(30,0)",
            "decimal(38,38)",
            "string",
            "char(5)",
            "char(10)",
            "varchar(7)",
            "binary",
            "date",
            "timestamp",
            "array<int>",
            "array<double>",
            "array<date>",
            "map<int,int>",
            "map<string,decimal(5,1)>",
            "struct<a:int>",
            "struct<A:bigint,b:string>",
            "struct<b:date,c:array<int>>",
            "struct<c:array<float>,a:decimal(4,2)>",
            "struct<a:struct<x:int>>",
            "struct<a:struct<y:timestamp,x:date>>",
            "array<struct<a:int>>",
            "array<struct<b:tinyint,a:float>>",
        ]
        .iter()
        .map(|s| parse(s))
        .collect()
    }

    #[test]
    fn widen_is_commutative_up_to_field_order() {
        let mut types = sample_types();
        types.extend(widening_types());
        for a in &types {
            for b in &types {
                let ab = a.widen(b);
                let ba = b.widen(a);
                assert!(ab.is_equivalent(&ba), "{a} + {b} = {ab}, but {b} + {a} = {ba}");
            }
        }
    }

    #[test]
    fn widen_is_associative_up_to_field_order() {
        let types = widening_types();
        for a in &types {
            for b in &types {
                let ab = a.widen(b);
                for c in &types {
                    let left = ab.widen(c);
                    let right = a.widen(&b.widen(c));
                    assert!(
                        left.is_equivalent(&right),
                        "({a} + {b}) + {c} = {left}, {a} + ({b} + {c}) = {right}"
                    );
                }
            }
        }
    }

    #[test]
    fn widen_results_parse_and_absorb_both_sides() {
        let types = widening_types();
        for a in &types {
            for b in &types {
                let wide = a.widen(b);
                assert_eq!(parse(&wide.to_string()), wide, "{a} + {b}");
                assert_ne!(wide.change_from(a), TypeChange::Incompatible, "{a} + {b} = {wide}");
                assert_ne!(wide.change_from(b), TypeChange::Incompatible, "{a} + {b} = {wide}");
                assert!(wide.widen(a).is_equivalent(&wide), "{a} + {b} = {wide}");
            }
        }
    }

    #[test]
    fn is_equivalent_ignores_field_order_and_case_only() {
        let a = parse("struct<a:int,b:array<struct<x:int,y:string>>>");
        assert!(a.is_equivalent(&parse("struct<B:array<struct<Y:string,x:int>>,a:int>")));
        assert!(!a.is_equivalent(&parse("struct<a:int,b:array<struct<x:int>>>")));
        assert!(!a.is_equivalent(&parse("struct<a:bigint,b:array<struct<x:int,y:string>>>")));
        assert!(!a.is_equivalent(&parse("struct<a:int,c:array<struct<x:int,y:string>>>")));
        assert!(parse("map<int,struct<a:int,b:int>>").is_equivalent(&parse("map<int,struct<b:int,a:int>>")));
        assert!(!parse("int").is_equivalent(&parse("bigint")));
    }

    #[test]
    fn change_from_classifies_schema_evolution() {
        use TypeChange::*;
        // (old, new, change)
        let cases = [
            ("int", "int", Same),
            ("struct<a:int,b:string>", "struct<a:int,b:string>", Same),
            ("int", "bigint", Widened),
            ("tinyint", "int", Widened),
            ("int", "double", Widened),
            ("bigint", "double", Widened),
            ("float", "double", Widened),
            ("int", "decimal(10,0)", Widened),
            ("decimal(10,2)", "decimal(12,2)", Widened),
            ("decimal(10,2)", "decimal(12,4)", Widened),
            ("decimal(10,2)", "double", Widened),
            ("date", "timestamp", Widened),
            ("char(5)", "char(10)", Widened),
            ("char(5)", "varchar(5)", Widened),
            ("varchar(5)", "varchar(10)", Widened),
            ("int", "string", Widened),
            ("boolean", "string", Widened),
            ("binary", "string", Widened),
            ("struct<a:int>", "string", Widened),
            ("array<int>", "string", Widened),
            ("array<int>", "array<bigint>", Widened),
            ("map<int,date>", "map<bigint,timestamp>", Widened),
            ("struct<a:int>", "struct<a:int,b:string>", Widened),
            ("struct<a:int,b:string>", "struct<b:string,a:bigint>", Widened),
            ("struct<a:int>", "struct<A:int>", Widened),
            ("struct<s:struct<x:int>>", "struct<s:struct<x:int,y:int>>", Widened),
            ("bigint", "int", Incompatible),
            ("string", "int", Incompatible),
            ("double", "float", Incompatible),
            ("double", "decimal(38,10)", Incompatible),
            ("int", "float", Incompatible),
            ("int", "decimal(9,0)", Incompatible),
            ("decimal(10,2)", "decimal(10,4)", Incompatible),
            ("decimal(10,2)", "decimal(11,1)", Incompatible),
            ("decimal(10,2)", "bigint", Incompatible),
            ("timestamp", "date", Incompatible),
            ("boolean", "int", Incompatible),
            ("int", "boolean", Incompatible),
            ("string", "char(10)", Incompatible),
            ("varchar(10)", "char(10)", Incompatible),
            ("char(10)", "char(5)", Incompatible),
            ("string", "binary", Incompatible),
            ("int", "array<int>", Incompatible),
            ("array<bigint>", "array<int>", Incompatible),
            ("map<string,int>", "map<int,int>", Incompatible),
            ("struct<a:int,b:string>", "struct<a:int>", Incompatible),
            ("struct<a:bigint>", "struct<a:int,b:string>", Incompatible),
            ("struct<a:int>", "struct<b:int>", Incompatible),
        ];
        let mut failures = Vec::new();
        for (old, new, expected) in cases {
            let actual = parse(new).change_from(&parse(old));
            if actual != expected {
                failures.push(format!("{old} -> {new}: expected {expected:?}, got {actual:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(Same < Widened && Widened < Incompatible);
    }

    #[test]
    fn infer_text_classifies_values() {
        let cases: &[(&str, Option<GlueType>)] = &[
            ("", None),
            ("true", Some(Boolean)),
            ("FALSE", Some(Boolean)),
            ("True", Some(Boolean)),
            ("yes", Some(String)),
            ("0", Some(Int)),
            ("-0", Some(Int)),
            ("42", Some(Int)),
            ("-42", Some(Int)),
            ("2024", Some(Int)),
            ("2147483647", Some(Int)),
            ("-2147483648", Some(Int)),
            ("2147483648", Some(BigInt)),
            ("-2147483649", Some(BigInt)),
            ("9223372036854775807", Some(BigInt)),
            ("-9223372036854775808", Some(BigInt)),
            ("9223372036854775808", Some(String)),
            ("123456789012345678901234567890", Some(String)),
            ("007", Some(String)),
            ("-007", Some(String)),
            ("00", Some(String)),
            ("+5", Some(String)),
            ("1.5", Some(Double)),
            ("-0.25", Some(Double)),
            ("0.5", Some(Double)),
            ("00.5", Some(String)),
            ("01.5", Some(String)),
            (".5", Some(String)),
            ("5.", Some(String)),
            ("-", Some(String)),
            ("1e10", Some(Double)),
            ("2.5E-3", Some(Double)),
            ("-1.5e+300", Some(Double)),
            ("1e", Some(String)),
            ("1e+", Some(String)),
            ("1e400", Some(String)),
            ("NaN", Some(String)),
            ("nan", Some(String)),
            ("inf", Some(String)),
            ("-Infinity", Some(String)),
            ("1,000", Some(String)),
            (" 42", Some(String)),
            ("42 ", Some(String)),
            ("0x1F", Some(String)),
            ("1_000", Some(String)),
            ("2024-01-01", Some(Date)),
            ("2024-02-29", Some(Date)),
            ("2000-02-29", Some(Date)),
            ("1900-02-29", Some(String)),
            ("2023-02-29", Some(String)),
            ("2024-02-30", Some(String)),
            ("2024-04-31", Some(String)),
            ("2024-12-31", Some(Date)),
            ("2024-13-01", Some(String)),
            ("2024-00-10", Some(String)),
            ("2024-01-00", Some(String)),
            ("2024-1-01", Some(String)),
            ("24-01-01", Some(String)),
            ("2024/01/01", Some(String)),
            ("2024-01-01 10:30:00", Some(Timestamp)),
            ("2024-01-01 23:59:59.123", Some(Timestamp)),
            ("2024-01-01 00:00:00.123456789", Some(Timestamp)),
            ("2024-01-01 00:00:00.1234567890", Some(String)),
            ("2024-01-01 00:00:00.", Some(String)),
            ("2024-01-01 24:00:00", Some(String)),
            ("2024-01-01 10:60:00", Some(String)),
            ("2024-01-01 10:00:60", Some(String)),
            ("2024-01-01 10:00", Some(String)),
            ("2024-01-01 10:00:00Z", Some(String)),
            ("2024-02-30 10:00:00", Some(String)),
            ("2024-01-01T10:30:00", Some(Timestamp)),
            ("2024-01-01T10:30:00Z", Some(Timestamp)),
            ("2024-01-01T10:30:00.5Z", Some(Timestamp)),
            ("2024-01-01T10:30:00+02:00", Some(Timestamp)),
            ("2024-01-01T10:30:00.123456-05:30", Some(Timestamp)),
            ("2024-01-01T10:30:00+2:00", Some(String)),
            ("2024-01-01T10:30:00+24:00", Some(String)),
            ("2024-01-01T10:30:00+0200", Some(String)),
            ("2024-01-01T10:30:00ZZ", Some(String)),
            ("2024-01-01T10:30", Some(String)),
            ("2024-01-01t10:30:00", Some(String)),
            ("2024-01-01_10:30:00", Some(String)),
            ("hello", Some(String)),
            ("ünïcode", Some(String)),
            ("2024-01-01ü", Some(String)),
        ];
        let mut failures = Vec::new();
        for (value, expected) in cases {
            let actual = infer_text(value);
            if &actual != expected {
                failures.push(format!("{value:?}: expected {expected:?}, got {actual:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn inferred_text_types_widen_like_a_crawl() {
        let infer = |values: &[&str]| values.iter().filter_map(|v| infer_text(v)).reduce(|a, b| a.widen(&b));
        assert_eq!(infer(&["1", "", "2"]), Some(Int));
        assert_eq!(infer(&["1", "3000000000"]), Some(BigInt));
        assert_eq!(infer(&["1", "2.5"]), Some(Double));
        assert_eq!(infer(&["2024-01-01", "2024-01-02 10:00:00"]), Some(Timestamp));
        assert_eq!(infer(&["1", "007"]), Some(String));
        assert_eq!(infer(&["true", "1"]), Some(String));
        assert_eq!(infer(&["", ""]), None);
    }

    fn column(name: &str, type_: &str) -> Column {
        Column {
            name: name.into(),
            type_: type_.into(),
            comment: None,
        }
    }

    #[test]
    fn validate_columns_names_the_bad_column() {
        assert_eq!(validate_columns(&[]), Ok(()));
        assert_eq!(
            validate_columns(&[column("id", "bigint"), column("items", "array<struct<sku:string>>")]),
            Ok(())
        );
        let error = validate_columns(&[
            column("id", "bigint"),
            column("items", "struct<sku string>"),
            column("later", "nonsense"),
        ])
        .expect_err("items is invalid");
        assert_eq!(error.column, "items");
        assert_eq!(error.error.offset, 11);
        assert_eq!(
            error.to_string(),
            "column \"items\": expected ':' after struct field name \"sku\", found \"string\" at offset 11 in \"struct<sku string>\""
        );
    }

    /// The `type:` values of `columns` and `partitionKeys` entries in a manifest: a text scan that
    /// follows indentation, enough for the examples' block-style YAML.
    fn column_types(yaml: &str) -> Vec<std::string::String> {
        let mut types = Vec::new();
        let mut block_indent: Option<usize> = None;
        for line in yaml.lines() {
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let indent = line.len() - content.len();
            if block_indent.is_some_and(|block| indent <= block) {
                block_indent = None;
            }
            let item = content.trim_start_matches("- ").trim_start();
            match (block_indent, item.split_once(':')) {
                (None, Some(("columns" | "partitionKeys", rest))) if rest.trim().is_empty() => {
                    block_indent = Some(indent);
                }
                (Some(_), Some(("type", value))) => {
                    types.push(value.trim().trim_matches(['"', '\'']).to_string());
                }
                _ => {}
            }
        }
        types
    }

    fn yaml_files(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                yaml_files(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
                files.push(path);
            }
        }
    }

    #[test]
    fn column_type_scan_finds_nested_blocks_only() {
        let yaml = "kind: Table\nspec:\n  columns:\n    - name: a\n      type: bigint\n    - type: \"array<int>\"\n      name: b\n  partitionKeys:\n    - name: dt\n      type: date\n  storage:\n    type: ignored\nother:\n  type: ignored\n";
        assert_eq!(column_types(yaml), ["bigint", "array<int>", "date"]);
    }

    #[test]
    fn every_column_type_in_the_examples_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut files = Vec::new();
        yaml_files(&root, &mut files);
        files.sort();
        let mut checked = Vec::new();
        let mut failures = Vec::new();
        for file in &files {
            let yaml = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for type_ in column_types(&yaml) {
                if let Err(error) = GlueType::parse(&type_) {
                    failures.push(format!("{}: {error}", file.display()));
                }
                checked.push(type_);
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            checked.iter().any(|t| t == "array<struct<sku:string,quantity:bigint>>") && checked.len() >= 7,
            "the scan found too little: {checked:?}"
        );
    }
}
