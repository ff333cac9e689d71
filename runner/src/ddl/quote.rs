//! Quoting per dialect: identifiers (with each engine's reserved words), struct field names, type
//! names and string literals.

use kglue_crds::glue_type::GlueType;

use super::model::Dialect;

/// A quoted identifier: backticks for Hive, Spark and Athena, double quotes for Trino and DuckDB;
/// the quote character inside is doubled.
pub(super) fn quote_ident(dialect: Dialect, name: &str) -> String {
    if dialect.backticks() {
        format!("`{}`", name.replace('`', "``"))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Words that must be quoted as struct field names in at least one of the engines.
pub(super) const RESERVED: &[&str] = &[
    "all",
    "alter",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "between",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "column",
    "constraint",
    "create",
    "cross",
    "cube",
    "current",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "date",
    "default",
    "delete",
    "desc",
    "describe",
    "distinct",
    "drop",
    "else",
    "end",
    "escape",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "function",
    "grant",
    "group",
    "grouping",
    "having",
    "in",
    "inner",
    "insert",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "local",
    "map",
    "natural",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "primary",
    "range",
    "recursive",
    "references",
    "revoke",
    "right",
    "rollup",
    "row",
    "rows",
    "select",
    "set",
    "some",
    "struct",
    "table",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "unnest",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

/// A struct field name inside a type: as it is when it is a plain lowercase identifier, quoted
/// otherwise (spaces, dashes, upper case, reserved words).
pub(super) fn field_name(dialect: Dialect, name: &str) -> String {
    let plain = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        quote_ident(dialect, name)
    }
}

/// A type in the dialect's spelling.
pub(super) fn render_type(dialect: Dialect, type_: &GlueType) -> String {
    use GlueType::*;
    let render = |t: &GlueType| render_type(dialect, t);
    match dialect {
        Dialect::Athena | Dialect::Spark => match type_ {
            Array(element) => format!("array<{}>", render(element)),
            Map(key, value) => format!("map<{},{}>", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{}:{}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("struct<{}>", fields.join(","))
            }
            primitive => primitive.to_string(),
        },
        Dialect::Trino => match type_ {
            Boolean => "BOOLEAN".into(),
            TinyInt => "TINYINT".into(),
            SmallInt => "SMALLINT".into(),
            Int => "INTEGER".into(),
            BigInt => "BIGINT".into(),
            Float => "REAL".into(),
            Double => "DOUBLE".into(),
            Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            String => "VARCHAR".into(),
            Char(n) => format!("CHAR({n})"),
            Varchar(n) => format!("VARCHAR({n})"),
            Binary => "VARBINARY".into(),
            Date => "DATE".into(),
            Timestamp => "TIMESTAMP(3)".into(),
            Array(element) => format!("ARRAY({})", render(element)),
            Map(key, value) => format!("MAP({}, {})", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{} {}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("ROW({})", fields.join(", "))
            }
        },
        Dialect::Duckdb => match type_ {
            Boolean => "BOOLEAN".into(),
            TinyInt => "TINYINT".into(),
            SmallInt => "SMALLINT".into(),
            Int => "INTEGER".into(),
            BigInt => "BIGINT".into(),
            Float => "FLOAT".into(),
            Double => "DOUBLE".into(),
            Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            // DuckDB's VARCHAR has no length; CHAR(n) and VARCHAR(n) are VARCHAR.
            String | Char(_) | Varchar(_) => "VARCHAR".into(),
            Binary => "BLOB".into(),
            Date => "DATE".into(),
            Timestamp => "TIMESTAMP".into(),
            Array(element) => format!("{}[]", render(element)),
            Map(key, value) => format!("MAP({}, {})", render(key), render(value)),
            Struct(fields) => {
                let fields: Vec<std::string::String> = fields
                    .iter()
                    .map(|f| format!("{} {}", field_name(dialect, &f.name), render(&f.type_)))
                    .collect();
                format!("STRUCT({})", fields.join(", "))
            }
        },
    }
}

/// A string literal.
///
/// - Hive, Spark, Athena: backslash escapes (`\'`, `\\`, `\t`, `\n`, `\uXXXX`), which their
///   parsers unescape (a doubled quote would be two adjacent literals there).
/// - Trino: a doubled quote; text with control characters as a Unicode literal `U&'\0009'`.
/// - DuckDB: a doubled quote; text with tabs or line breaks as an escape string `E'\t'`.
pub(super) fn string_literal(dialect: Dialect, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    match dialect {
        Dialect::Athena | Dialect::Spark => {
            out.push('\'');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
        }
        Dialect::Trino if value.chars().any(char::is_control) => {
            out.push_str("U&'");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("''"),
                    c if c.is_control() => out.push_str(&format!("\\{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
        }
        Dialect::Duckdb if value.contains(['\t', '\n', '\r']) => {
            out.push_str("E'");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        Dialect::Trino | Dialect::Duckdb => {
            out.push('\'');
            out.push_str(&value.replace('\'', "''"));
        }
    }
    out.push('\'');
    out
}
