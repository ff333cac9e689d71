//! A table as the dialect writers see it: its columns with parsed types, and the helpers every
//! writer uses to quote and describe it.

use kglue_crds::Table;
use kglue_crds::common::{Column, Compression, CsvOptions, DataFormat};
use kglue_crds::glue_type::GlueType;

use super::model::{DdlError, Dialect};
use super::quote::{quote_ident, render_type, string_literal};

/// A column with its type parsed.
#[derive(Clone, Debug)]
pub(super) struct Col {
    pub(super) name: String,
    pub(super) type_: GlueType,
    pub(super) comment: Option<String>,
}

pub(super) fn parse_columns(table: &str, columns: &[Column], partition_key: bool) -> Result<Vec<Col>, DdlError> {
    columns
        .iter()
        .map(|column| {
            let type_ = GlueType::parse(&column.type_).map_err(|error| DdlError::InvalidType {
                table: table.to_string(),
                column: column.name.clone(),
                partition_key,
                error: Box::new(error),
            })?;
            Ok(Col {
                name: column.name.clone(),
                type_,
                comment: column.comment.clone(),
            })
        })
        .collect()
}

/// `Some(evidence)` when the table's partition folders are not Hive-style `key=value` names, e.g.
/// `e.g. 2024/01/` or `keys partition_0, partition_1`: the crawler names such levels
/// `partition_0`, `partition_1`, …, and the partition summary in status may show the folders.
pub(super) fn partition_folders(table: &Table) -> Option<String> {
    let newest = table
        .status
        .as_ref()
        .and_then(|s| s.partitions.as_ref())
        .map(|p| p.newest.as_slice())
        .unwrap_or_default();
    if let Some(folder) = newest.iter().find(|p| p.split('/').any(|level| !level.contains('='))) {
        return Some(format!("e.g. {folder}/"));
    }
    let positional: Vec<&str> = table
        .spec
        .partition_keys
        .iter()
        .map(|k| k.name.as_str())
        .filter(|name| {
            name.strip_prefix("partition_")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    (!positional.is_empty()).then(|| {
        let s = if positional.len() == 1 { "" } else { "s" };
        format!("key{s} {}", positional.join(", "))
    })
}

/// What every dialect's writer needs.
pub(super) struct Ctx {
    pub(super) dialect: Dialect,
    /// `database.table`, for messages.
    pub(super) name: String,
    pub(super) database: String,
    pub(super) table: String,
    pub(super) description: Option<String>,
    pub(super) columns: Vec<Col>,
    pub(super) keys: Vec<Col>,
    /// The location, ending with `/`.
    pub(super) location: String,
    pub(super) format: DataFormat,
    pub(super) compression: Option<Compression>,
    pub(super) csv: CsvOptions,
    pub(super) json_array: bool,
    pub(super) grok: Option<kglue_crds::common::GrokOptions>,
    pub(super) notes: Vec<String>,
}

impl Ctx {
    pub(super) fn unsupported(&self, reason: String) -> DdlError {
        DdlError::Unsupported {
            dialect: self.dialect,
            table: self.name.clone(),
            reason,
        }
    }

    pub(super) fn ident(&self, name: &str) -> String {
        quote_ident(self.dialect, name)
    }

    pub(super) fn qualified(&self) -> String {
        format!("{}.{}", self.ident(&self.database), self.ident(&self.table))
    }

    pub(super) fn string(&self, value: &str) -> String {
        string_literal(self.dialect, value)
    }

    pub(super) fn type_(&self, type_: &GlueType) -> String {
        render_type(self.dialect, type_)
    }

    pub(super) fn delimiter(&self) -> &str {
        self.csv.delimiter.as_deref().unwrap_or(",")
    }

    pub(super) fn quote(&self) -> &str {
        self.csv.quote.as_deref().unwrap_or("\"")
    }

    pub(super) fn header(&self) -> bool {
        self.csv.header.unwrap_or(true)
    }

    /// `  name type COMMENT '…'` lines of a column list (Hive, Spark and Trino).
    pub(super) fn column_lines(&self, columns: &[Col], types: impl Fn(&Col) -> String) -> Vec<String> {
        columns
            .iter()
            .map(|c| {
                let mut line = format!("  {} {}", self.ident(&c.name), types(c));
                if let Some(comment) = &c.comment {
                    line.push_str(&format!(" COMMENT {}", self.string(comment)));
                }
                line
            })
            .collect()
    }

    /// A database table has no files to describe: the engine reads the database itself.
    pub(super) fn refuse_jdbc(&self) -> DdlError {
        self.unsupported(format!(
            "it is a database table (format Jdbc), not files: point {} at the database with its own JDBC connector",
            self.dialect.engine()
        ))
    }

    pub(super) fn refuse_kafka(&self) -> DdlError {
        self.unsupported(format!(
            "it is a Kafka topic (format Kafka), not files: read it with {}'s Kafka connector, or query the files a streaming job writes from it",
            self.dialect.engine()
        ))
    }

    pub(super) fn refuse_grok(&self) -> DdlError {
        self.unsupported(format!(
            "its files are text lines parsed by a grok pattern, which {} has no reader for (Athena has: --dialect athena)",
            self.dialect.engine()
        ))
    }
}
