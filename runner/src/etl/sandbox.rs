//! The SQL sandbox: what a script may ask of the engine. A job's SQL may define views and tables
//! computed from queries over its declared sources; nothing in it may register a table over a
//! path, write anywhere, or change the session. Every statement is checked before the first one
//! runs, and the session's object stores hold only the stores of the job's own sources (no local
//! file system), so a path that reached the engine by another route still reads nothing.
//!
//! The same check serves every job entry point (`kglue run`, `kglue attempt`); SQL sessions
//! (`kglue sql`) are read-only and checked by [`check_session`].

use std::sync::Arc;

use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

/// A statement the sandbox refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "statement {number} ({kind}) is not allowed in a job script: {why}; a script may only define views (CREATE VIEW name AS SELECT …) and tables computed from queries (CREATE TABLE name AS SELECT …) over the Job's sources, and its sinks write the results"
)]
pub struct Refused {
    /// The statement's 1-based position in the script.
    pub number: usize,
    /// What the statement is (`COPY`, `CREATE EXTERNAL TABLE`, …).
    pub kind: String,
    /// Why it is refused.
    pub why: &'static str,
}

/// Checks that `statement` (number `number` of its script) only defines a relation from a query.
pub fn check(number: usize, statement: &Statement) -> Result<(), Refused> {
    let refuse = |kind: &str, why: &'static str| {
        Err(Refused {
            number,
            kind: kind.to_string(),
            why,
        })
    };
    let reads_paths = "it reads files or object-store paths the Job did not declare as sources";
    match statement {
        Statement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE", reads_paths),
        Statement::CopyTo(_) => refuse("COPY", "it writes to a path; sinks are the only way a Job writes"),
        Statement::Explain(_) => refuse("EXPLAIN", "its rows go nowhere"),
        Statement::Reset(_) => refuse("RESET", "it changes the session's settings"),
        Statement::Statement(inner) => match inner.as_ref() {
            // A query alone is reported by the script as a dangling query.
            SqlStatement::Query(_) | SqlStatement::CreateView(_) => Ok(()),
            SqlStatement::CreateTable(table) => {
                let hive_location = table.hive_formats.as_ref().is_some_and(|h| h.location.is_some());
                if table.external || table.location.is_some() || hive_location {
                    refuse("CREATE EXTERNAL TABLE", reads_paths)
                } else if table.query.is_none() {
                    refuse(
                        "CREATE TABLE",
                        "a table must be computed from a query (CREATE TABLE name AS SELECT …)",
                    )
                } else {
                    Ok(())
                }
            }
            SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) | SqlStatement::Merge(_) => {
                refuse(
                    &keyword(inner),
                    "it changes data in place; sinks are the only way a Job writes",
                )
            }
            SqlStatement::Copy { .. } => refuse("COPY", "it writes to or reads from a path"),
            SqlStatement::Set(_) => refuse("SET", "it changes the session's settings"),
            other => refuse(
                &keyword(other),
                "only views and tables computed from queries are allowed",
            ),
        },
    }
}

/// A statement a SQL session refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} is not allowed in a SQL session: {why}; a session is read-only over the catalog's tables: queries, EXPLAIN, SHOW and DESCRIBE, and views it defines for itself (CREATE VIEW name AS SELECT …)"
)]
pub struct RefusedInSession {
    /// What the statement is.
    pub kind: String,
    /// Why it is refused.
    pub why: &'static str,
}

/// Checks that `statement` only reads: a query, an explanation of one, a look at the catalog, or
/// a view of the session's own. Writes and every route to a path are refused, as in jobs.
pub fn check_session(statement: &Statement) -> Result<(), RefusedInSession> {
    let refuse = |kind: &str, why: &'static str| {
        Err(RefusedInSession {
            kind: kind.to_string(),
            why,
        })
    };
    let reads_paths = "it reads files or object-store paths outside the catalog";
    match statement {
        Statement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE", reads_paths),
        Statement::CopyTo(_) => refuse("COPY", "it writes to a path"),
        Statement::Explain(explain) => check_session(&explain.statement),
        Statement::Reset(_) => refuse("RESET", "it changes the session's settings"),
        Statement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_)
            | SqlStatement::CreateView(_)
            | SqlStatement::ShowTables { .. }
            | SqlStatement::ShowColumns { .. }
            | SqlStatement::ExplainTable { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => {
                check_session(&Statement::Statement(Box::new(statement.as_ref().clone())))
            }
            SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) | SqlStatement::Merge(_) => {
                refuse(&keyword(inner), "it changes data; jobs write through their sinks")
            }
            SqlStatement::Copy { .. } => refuse("COPY", "it writes to or reads from a path"),
            SqlStatement::CreateTable(table)
                if table.external
                    || table.location.is_some()
                    || table.hive_formats.as_ref().is_some_and(|h| h.location.is_some()) =>
            {
                refuse("CREATE EXTERNAL TABLE", reads_paths)
            }
            SqlStatement::Set(_) => refuse("SET", "it changes the session's settings"),
            other => refuse(&keyword(other), "it is not a read"),
        },
    }
}

/// The statement's leading words, upper-cased, for the message (`DROP TABLE`, `INSERT`, …).
fn keyword(statement: &SqlStatement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let second = words.get(1).copied().unwrap_or_default();
    let two = [
        "TABLE", "VIEW", "FUNCTION", "SCHEMA", "DATABASE", "CATALOG", "INDEX", "EXTERNAL",
    ];
    match words.first() {
        Some(first) if two.iter().any(|w| second.eq_ignore_ascii_case(w)) => {
            format!("{} {}", first.to_uppercase(), second.to_uppercase())
        }
        Some(first) => first.to_uppercase(),
        None => "empty".into(),
    }
}

/// An object store registry without DataFusion's default local file system: a session built with
/// it reaches only the stores the run registers (its sources').
pub fn object_stores() -> Arc<dyn ObjectStoreRegistry> {
    let registry = DefaultObjectStoreRegistry::new();
    if let Ok(local) = url::Url::parse("file://") {
        let _ = registry.deregister_store(&local);
    }
    Arc::new(registry)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn checked(sql: &str) -> Result<(), Refused> {
        let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).expect("parses");
        statements
            .iter()
            .enumerate()
            .try_for_each(|(index, statement)| check(index + 1, statement))
    }

    #[test]
    fn a_session_reads_and_defines_views_but_writes_nothing_and_reaches_no_path() {
        let session = |sql: &str| {
            DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
                .expect("parses")
                .iter()
                .try_for_each(check_session)
        };
        for sql in [
            "SELECT * FROM sales.orders WHERE day = '2024-01-01'",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW COLUMNS FROM sales.orders",
            "DESCRIBE sales.orders",
            "CREATE VIEW recent AS SELECT * FROM sales.orders",
        ] {
            assert_eq!(session(sql), Ok(()), "{sql}");
        }
        for (sql, kind) in [
            ("INSERT INTO sales.orders VALUES (1)", "INSERT"),
            ("DELETE FROM sales.orders", "DELETE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("DROP TABLE sales.orders", "DROP TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
        ] {
            let refused = session(sql).expect_err(sql);
            assert_eq!(refused.kind, kind, "{sql}");
            assert!(
                refused.to_string().contains("not allowed in a SQL session"),
                "{refused}"
            );
        }
    }

    #[test]
    fn views_and_tables_from_queries_are_allowed() {
        for sql in [
            "CREATE VIEW v AS SELECT * FROM orders",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE TABLE t AS SELECT id FROM orders",
            "SELECT 1",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn every_route_to_a_path_or_a_write_is_refused_by_name() {
        let cases = [
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/var/run/secrets/kubernetes.io/serviceaccount/token'",
                "CREATE EXTERNAL TABLE",
            ),
            ("CREATE TABLE t (a INT) LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
            (
                "CREATE TABLE t LOCATION '/etc/passwd' AS SELECT 1",
                "CREATE EXTERNAL TABLE",
            ),
            ("COPY (SELECT 1) TO '/tmp/out.csv' STORED AS CSV", "COPY"),
            ("COPY orders TO 's3://elsewhere/x.parquet'", "COPY"),
            ("INSERT INTO orders VALUES (1)", "INSERT"),
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("SET datafusion.catalog.location = '/etc'", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("DROP TABLE orders", "DROP TABLE"),
            ("EXPLAIN SELECT 1", "EXPLAIN"),
            ("CREATE FUNCTION f() RETURNS INT RETURN 1", "CREATE FUNCTION"),
        ];
        for (sql, kind) in cases {
            let refused = checked(&format!("CREATE VIEW ok AS SELECT 1; {sql}")).expect_err(sql);
            assert_eq!((refused.number, refused.kind.as_str()), (2, kind), "{sql}");
            assert!(
                refused
                    .to_string()
                    .starts_with(&format!("statement 2 ({kind}) is not allowed")),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_registry_has_no_local_file_system() {
        let registry = object_stores();
        let local = url::Url::parse("file:///etc/passwd").expect("a URL");
        assert!(registry.get_store(&local).is_err());
    }

    proptest::proptest! {
        // The statement check sees whatever a script holds once it parses: never a panic, and
        // nothing but views and tables computed from queries passes.
        #[test]
        fn any_sql_is_checked_without_panic(sql in "\\PC{0,200}") {
            if let Ok(statements) = DFParser::parse_sql_with_dialect(&sql, &GenericDialect {}) {
                for (index, statement) in statements.iter().enumerate() {
                    let _ = check(index + 1, statement);
                }
            }
        }

        #[test]
        fn sql_shaped_text_passes_only_as_a_view_or_a_computed_table(
            words in proptest::collection::vec(
                "(CREATE|EXTERNAL|TABLE|VIEW|OR|REPLACE|TEMPORARY|AS|SELECT|\\*|FROM|COPY|TO|INSERT|INTO|VALUES|SET|RESET|DROP|LOCATION|STORED|CSV|EXPLAIN|WITH|\\(|\\)|;|'/etc/passwd'|1|t|v|=)",
                0..16,
            )
        ) {
            let sql = words.join(" ");
            if let Ok(statements) = DFParser::parse_sql_with_dialect(&sql, &GenericDialect {}) {
                for (index, statement) in statements.iter().enumerate() {
                    if check(index + 1, statement).is_ok() {
                        let allowed = match statement {
                            Statement::Statement(inner) => matches!(
                                inner.as_ref(),
                                SqlStatement::Query(_) | SqlStatement::CreateView(_) | SqlStatement::CreateTable(_)
                            ),
                            _ => false,
                        };
                        proptest::prop_assert!(allowed, "{} passed the check", statement);
                        if let Statement::Statement(inner) = statement
                            && let SqlStatement::CreateTable(table) = inner.as_ref()
                        {
                            proptest::prop_assert!(table.query.is_some() && !table.external && table.location.is_none());
                        }
                    }
                }
            }
        }
    }
}
