//! What every dialect shares: the dialects, the DDL they produce and why it may not be written.

use std::fmt;
use std::path::PathBuf;

use kglue_crds::glue_type::TypeParseError;

use crate::catalog::CatalogError;

/// The SQL dialect to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    /// DuckDB: a view over its file readers.
    Duckdb,
    /// Trino's Hive connector.
    Trino,
    /// Spark SQL data source tables.
    Spark,
    /// Amazon Athena (Hive DDL).
    Athena,
}

impl Dialect {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Duckdb => "duckdb",
            Dialect::Trino => "trino",
            Dialect::Spark => "spark",
            Dialect::Athena => "athena",
        }
    }

    /// The engine's name in prose.
    pub(super) fn engine(self) -> &'static str {
        match self {
            Dialect::Duckdb => "DuckDB",
            Dialect::Trino => "Trino",
            Dialect::Spark => "Spark",
            Dialect::Athena => "Athena",
        }
    }

    /// Whether identifiers are quoted with backticks (Hive's family) rather than double quotes.
    pub(super) fn backticks(self) -> bool {
        matches!(self, Dialect::Spark | Dialect::Athena)
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CREATE statement and what to know besides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddl {
    /// The statement(s), each ending with `;` and a line break. SQL comment lines before the
    /// statement say where the DDL differs from the catalog.
    pub sql: String,
    /// What the engine needs besides the statement (loading partitions, S3 endpoint and
    /// credentials), one sentence each.
    pub notes: Vec<String>,
}

/// Why no DDL could be written.
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// The table name is not `database.table`.
    #[error("{0:?} is not a table name: write DATABASE.TABLE with the Glue names, e.g. sales_raw.orders")]
    BadName(String),
    /// The catalog directory could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No such table in the catalog directory.
    #[error("table {database}.{table} is not in the catalog at {}; {}", .dir.display(), existing_tables(.database, .existing))]
    NotFound {
        /// The database name asked for.
        database: String,
        /// The table name asked for.
        table: String,
        /// The catalog directory.
        dir: PathBuf,
        /// The tables that database does have, sorted.
        existing: Vec<String>,
    },
    /// A column or partition key type that does not parse.
    #[error("table {table}: {} {column:?} has an invalid type: {error}", if *.partition_key { "partition key" } else { "column" })]
    InvalidType {
        /// `database.table`.
        table: String,
        /// The column or partition key.
        column: String,
        /// Whether it is a partition key.
        partition_key: bool,
        /// What is wrong with the type.
        error: Box<TypeParseError>,
    },
    /// The engine cannot read the table as the catalog describes it.
    #[error("--dialect {dialect} cannot express table {table}: {reason}")]
    Unsupported {
        /// The dialect asked for.
        dialect: Dialect,
        /// `database.table`.
        table: String,
        /// Why, and what to do instead.
        reason: String,
    },
}

fn existing_tables(database: &str, existing: &[String]) -> String {
    if existing.is_empty() {
        format!("database {database} has no tables there")
    } else {
        format!("the tables of database {database} there are: {}", existing.join(", "))
    }
}
