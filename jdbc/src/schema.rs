//! What a database holds, as a crawler reads it: the tables and views an include path (Glue's
//! `JdbcTargets.Path`) selects, each column with its own type and its Glue type (or why it has
//! none), and the primary key in key order.

use kglue_crds::connection::{JdbcEngine, JdbcTableName};
use kglue_crds::glue_type::GlueType;
use mysql_async::prelude::Queryable;

use crate::{Endpoint, JdbcError, mysql, postgres, statement_failed, types};

/// An include path read: `database/schema/table` for PostgreSQL, `database/table` for MySQL,
/// where the last two may hold `%` wildcards (Glue's form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncludePath {
    /// The database (PostgreSQL: the URL's; MySQL: any on the server).
    pub database: String,
    /// PostgreSQL's schema pattern; `None` for MySQL.
    pub schema: Option<String>,
    /// The table pattern.
    pub table: String,
}

impl IncludePath {
    /// Reads `path` for `engine`; a PostgreSQL path must name the URL's database, since a session
    /// reaches only its own.
    pub fn parse(path: &str, engine: JdbcEngine, url_database: &str) -> Result<IncludePath, String> {
        let parts: Vec<&str> = path.split('/').collect();
        let include = match (engine, parts.as_slice()) {
            (JdbcEngine::Postgres, [database, schema, table]) => IncludePath {
                database: database.to_string(),
                schema: Some(schema.to_string()),
                table: table.to_string(),
            },
            (JdbcEngine::Postgres, _) => {
                return Err(format!(
                    "{path:?}: a PostgreSQL include path is DATABASE/SCHEMA/TABLE, each part may use % (sales/public/%)"
                ));
            }
            (JdbcEngine::Mysql, [database, table]) => IncludePath {
                database: database.to_string(),
                schema: None,
                table: table.to_string(),
            },
            (JdbcEngine::Mysql, _) => {
                return Err(format!(
                    "{path:?}: a MySQL include path is DATABASE/TABLE, the table may use % (shop/%)"
                ));
            }
        };
        if [Some(&include.database), include.schema.as_ref(), Some(&include.table)]
            .into_iter()
            .flatten()
            .any(|part| part.is_empty())
        {
            return Err(format!("{path:?}: an include path has no empty part"));
        }
        if engine == JdbcEngine::Postgres && include.database != url_database {
            return Err(format!(
                "{path:?} names database {:?}, but the Connection's URL reaches {url_database:?}: a PostgreSQL session sees only its own database",
                include.database
            ));
        }
        if include.database.contains('%') && engine == JdbcEngine::Postgres {
            return Err(format!("{path:?}: the database part cannot use %"));
        }
        Ok(include)
    }
}

/// A table or view.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribedTable {
    /// PostgreSQL's schema, or MySQL's database.
    pub schema: String,
    /// The table's name.
    pub name: String,
    /// Whether it is a view (or materialized view).
    pub view: bool,
    /// The columns in order.
    pub columns: Vec<DescribedColumn>,
    /// The primary key's columns in key order; empty when it has none.
    pub primary_key: Vec<String>,
}

/// A column.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribedColumn {
    /// Its name.
    pub name: String,
    /// Its type as the database writes it (`numeric(12,2)`, `int(10) unsigned`).
    pub database_type: String,
    /// Its Glue type, or why it has none.
    pub glue_type: Result<GlueType, String>,
    /// Whether it may be null.
    pub nullable: bool,
}

/// Glue's `%` wildcard as a LIKE pattern: `_` and `\` are literal in Glue's paths.
fn like(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('_', "\\_")
}

/// The tables and views `include` selects, with their columns and primary keys.
pub async fn describe(endpoint: &Endpoint, include: &IncludePath) -> Result<Vec<DescribedTable>, JdbcError> {
    match endpoint.url.engine {
        JdbcEngine::Postgres => describe_postgres(endpoint, include).await,
        JdbcEngine::Mysql => describe_mysql(endpoint, include).await,
    }
}

const POSTGRES_COLUMNS: &str = "\
select n.nspname::text, c.relname::text, c.relkind in ('v', 'm'), a.attname::text,
       format_type(case when t.typtype = 'd' then t.typbasetype else a.atttypid end,
                   case when t.typtype = 'd' then t.typtypmod else a.atttypmod end),
       (case when t.typtype = 'd' then (select b.typtype from pg_type b where b.oid = t.typbasetype)
             else t.typtype end)::text,
       not a.attnotnull
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_type t on t.oid = a.atttypid
where c.relkind in ('r', 'p', 'v', 'm', 'f') and not c.relispartition
  and n.nspname like $1 and c.relname like $2
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%'
order by 1, 2, a.attnum";

const POSTGRES_KEYS: &str = "\
select n.nspname::text, c.relname::text, a.attname::text
from pg_index i
join pg_class c on c.oid = i.indrelid
join pg_namespace n on n.oid = c.relnamespace
join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, position) on true
join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
where i.indisprimary and n.nspname like $1 and c.relname like $2
order by 1, 2, k.position";

async fn describe_postgres(endpoint: &Endpoint, include: &IncludePath) -> Result<Vec<DescribedTable>, JdbcError> {
    let client = postgres::connect(endpoint).await?;
    let schema = like(include.schema.as_deref().unwrap_or("%"));
    let table = like(&include.table);
    describe_postgres_with(&client, endpoint, schema, table).await
}

async fn describe_postgres_with(
    client: &tokio_postgres::Client,
    endpoint: &Endpoint,
    schema: String,
    table: String,
) -> Result<Vec<DescribedTable>, JdbcError> {
    let rows = client
        .query(POSTGRES_COLUMNS, &[&schema, &table])
        .await
        .map_err(statement_failed(endpoint.url.engine, POSTGRES_COLUMNS))?;
    let mut tables = Vec::new();
    for row in rows {
        let database_type: String = row.get(4);
        let typtype: String = row.get(5);
        push_column(
            &mut tables,
            row.get(0),
            row.get(1),
            row.get(2),
            DescribedColumn {
                name: row.get(3),
                glue_type: types::postgres(&database_type, &typtype),
                database_type,
                nullable: row.get(6),
            },
        );
    }
    let keys = client
        .query(POSTGRES_KEYS, &[&schema, &table])
        .await
        .map_err(statement_failed(endpoint.url.engine, POSTGRES_KEYS))?;
    for key in keys {
        add_key(&mut tables, key.get(0), key.get(1), key.get(2));
    }
    Ok(tables)
}

const MYSQL_COLUMNS: &str = "\
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.TABLE_TYPE = 'VIEW', c.COLUMN_NAME, c.COLUMN_TYPE, c.DATA_TYPE, c.IS_NULLABLE = 'YES'
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.TABLE_SCHEMA LIKE ? AND c.TABLE_NAME LIKE ?
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION";

const MYSQL_KEYS: &str = "\
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA LIKE ? AND TABLE_NAME LIKE ?
ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION";

async fn describe_mysql(endpoint: &Endpoint, include: &IncludePath) -> Result<Vec<DescribedTable>, JdbcError> {
    let mut conn = mysql::connect(endpoint).await?;
    let patterns = (like(&include.database), like(&include.table));
    type ColumnRow = (String, String, bool, String, String, String, bool);
    let rows: Vec<ColumnRow> = conn
        .exec(MYSQL_COLUMNS, patterns.clone())
        .await
        .map_err(statement_failed(endpoint.url.engine, MYSQL_COLUMNS))?;
    let mut tables = Vec::new();
    for (schema, name, view, column, column_type, data_type, nullable) in rows {
        push_column(
            &mut tables,
            schema,
            name,
            view,
            DescribedColumn {
                name: column,
                glue_type: types::mysql(&column_type, &data_type),
                database_type: column_type,
                nullable,
            },
        );
    }
    let keys: Vec<(String, String, String)> = conn
        .exec(MYSQL_KEYS, patterns)
        .await
        .map_err(statement_failed(endpoint.url.engine, MYSQL_KEYS))?;
    for (schema, name, column) in keys {
        add_key(&mut tables, schema, name, column);
    }
    // The session ends cleanly; a failure here changes nothing about what was read.
    let _ = conn.disconnect().await;
    Ok(tables)
}

/// The one table or view `name` names, if it exists and the user sees it. (A `%` in a name
/// would select more tables; the exact one is picked.)
pub async fn describe_table(endpoint: &Endpoint, name: &JdbcTableName) -> Result<Option<DescribedTable>, String> {
    let path = match &name.schema {
        Some(schema) => format!("{}/{schema}/{}", name.database, name.table),
        None => format!("{}/{}", name.database, name.table),
    };
    let include = IncludePath::parse(&path, endpoint.url.engine, &endpoint.url.database)?;
    // PostgreSQL's described schema is the name's schema; MySQL's is its database.
    let schema = name.schema.as_ref().unwrap_or(&name.database);
    Ok(describe(endpoint, &include)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|t| t.name == name.table && t.schema == *schema))
}

/// The name a query's columns are described under.
const QUERY_RELATION: &str = "kglue_query";

/// The columns a query returns, typed as a table's are: the query becomes a temporary view
/// (PostgreSQL) or an empty temporary table (MySQL) of the session, whose columns the server
/// describes with their precision, then goes with the session.
pub async fn describe_query(endpoint: &Endpoint, query: &str) -> Result<Vec<DescribedColumn>, JdbcError> {
    let engine = endpoint.url.engine;
    let query = query.trim().trim_end_matches(';');
    match engine {
        JdbcEngine::Postgres => {
            let client = postgres::connect(endpoint).await?;
            let create = format!("CREATE TEMPORARY VIEW {QUERY_RELATION} AS {query}");
            client
                .batch_execute(&create)
                .await
                .map_err(statement_failed(engine, &create))?;
            let temp = "SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()";
            let row = client
                .query_one(temp, &[])
                .await
                .map_err(statement_failed(engine, temp))?;
            let schema: String = row.get(0);
            let tables = describe_postgres_with(&client, endpoint, like(&schema), like(QUERY_RELATION)).await?;
            Ok(tables.into_iter().next().map(|t| t.columns).unwrap_or_default())
        }
        JdbcEngine::Mysql => {
            let mut conn = mysql::connect(endpoint).await?;
            let create = format!("CREATE TEMPORARY TABLE {QUERY_RELATION} AS SELECT * FROM ({query}) AS q LIMIT 0");
            conn.query_drop(&create)
                .await
                .map_err(statement_failed(engine, &create))?;
            let show = format!("SHOW COLUMNS FROM {QUERY_RELATION}");
            type ShowRow = (String, String, String, String, Option<String>, String);
            let rows: Vec<ShowRow> = conn.query(&show).await.map_err(statement_failed(engine, &show))?;
            let _ = conn.disconnect().await;
            Ok(rows
                .into_iter()
                .map(|(name, column_type, nullable, ..)| {
                    let data_type = column_type.split(['(', ' ']).next().unwrap_or_default().to_string();
                    DescribedColumn {
                        name,
                        glue_type: types::mysql(&column_type, &data_type),
                        database_type: column_type,
                        nullable: nullable == "YES",
                    }
                })
                .collect())
        }
    }
}

/// Adds a column to its table, rows arriving ordered by table.
fn push_column(tables: &mut Vec<DescribedTable>, schema: String, name: String, view: bool, column: DescribedColumn) {
    match tables.last_mut() {
        Some(last) if last.schema == schema && last.name == name => last.columns.push(column),
        _ => tables.push(DescribedTable {
            schema,
            name,
            view,
            columns: vec![column],
            primary_key: Vec::new(),
        }),
    }
}

fn add_key(tables: &mut [DescribedTable], schema: String, name: String, column: String) {
    if let Some(table) = tables.iter_mut().find(|t| t.schema == schema && t.name == name) {
        table.primary_key.push(column);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_paths_are_read_in_glues_form_per_engine() {
        assert_eq!(
            IncludePath::parse("sales/public/%", JdbcEngine::Postgres, "sales"),
            Ok(IncludePath {
                database: "sales".into(),
                schema: Some("public".into()),
                table: "%".into()
            })
        );
        assert_eq!(
            IncludePath::parse("shop/order%", JdbcEngine::Mysql, "other"),
            Ok(IncludePath {
                database: "shop".into(),
                schema: None,
                table: "order%".into()
            })
        );
        for (path, engine, expected) in [
            ("sales/%", JdbcEngine::Postgres, "DATABASE/SCHEMA/TABLE"),
            ("shop/x/%", JdbcEngine::Mysql, "DATABASE/TABLE"),
            ("crm/public/%", JdbcEngine::Postgres, "sees only its own database"),
            ("sales//%", JdbcEngine::Postgres, "no empty part"),
        ] {
            let error = IncludePath::parse(path, engine, "sales").expect_err(path);
            assert!(error.contains(expected), "{path}: {error}");
        }
    }

    #[test]
    fn glue_wildcards_become_like_patterns_with_literal_underscores() {
        assert_eq!(like("order_items%"), "order\\_items%");
        assert_eq!(like("a\\b"), "a\\\\b");
    }
}
