//! A job's database sources: a Table (or storage) of format `Jdbc`, read through its `jdbc`
//! Connection. Everything about the read is decided while the run is planned, like an object
//! source's listing: the key bookmark's range (greater than the committed key, up to the
//! greatest key there is now — so a run's rows and the bookmark it commits agree whatever the
//! script filters or limits), and the ranges a partitioned read splits the table into.
//!
//! The session sees a [`DatabaseTable`]: the script's filters that mean the same in the
//! database are pushed into the SQL it sends (as `Inexact`: the engine applies them again, so a
//! database that returns more rows — a case-insensitive collation — changes nothing), and only
//! the columns the script uses are selected. `--explain` prints each statement.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::{MySqlDialect, PostgreSqlDialect};
use futures::StreamExt;
use kglue_crds::common::{Column, DataFormat, StorageSpec};
use kglue_crds::connection::{JdbcEngine, JdbcTableName};
use kglue_crds::glue_type::GlueType;
use kglue_crds::job::{BookmarkOption, JdbcSource, JobSource, KeyValue, SourceBookmark};
use kglue_jdbc::Endpoint;
use kglue_jdbc::read::{Read, Relation, first_row, orderable_key, quote, stream, typed_literal};
use kglue_jdbc::schema::describe_table;

use super::types::to_arrow;
use crate::catalog::DirCatalog;
use crate::storage::StoreResolver;

/// Why a database source cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {message}")]
pub struct DatabaseSourceError {
    /// The source.
    pub source_name: String,
    /// What is wrong, naming the field, table or column.
    pub message: String,
}

/// A database source as the run reads it, everything decided.
#[derive(Debug, Clone)]
pub struct DatabaseSource {
    /// The source's name in the job.
    pub name: String,
    /// The Connection it is read through.
    pub connection: String,
    endpoint: Endpoint,
    relation: Relation,
    columns: Vec<(String, GlueType)>,
    schema: SchemaRef,
    /// Conditions every read carries: the key bookmark's range.
    key_range: Vec<String>,
    /// One condition per parallel read (`None`: one read of everything).
    splits: Vec<Option<String>>,
    fetch_size: usize,
    /// The key bookmark after this run (empty: the source keeps no key bookmark).
    next_key: Vec<KeyValue>,
    /// Rows the run's scans returned.
    rows: Arc<AtomicU64>,
}

/// Whether `source` reads a database (a `query`, or a Table or storage of format Jdbc).
pub fn is_database(source: &JobSource, catalog: &DirCatalog) -> bool {
    let query = source.jdbc.as_ref().is_some_and(|j| j.query.is_some());
    let storage = source
        .storage
        .as_ref()
        .is_some_and(|s| s.format.format == DataFormat::Jdbc);
    let table = source.table.as_ref().is_some_and(|r| {
        catalog
            .table(&r.database, &r.table)
            .is_some_and(|t| t.spec.storage.format.format == DataFormat::Jdbc)
    });
    query || storage || table
}

impl DatabaseSource {
    /// Resolves `source` (index `index` of the job) against the catalog, reads the bounds its
    /// bookmark and splits need from the database, and decides every read.
    pub async fn prepare(
        index: usize,
        source: &JobSource,
        catalog: &DirCatalog,
        resolver: &StoreResolver,
        bookmark_option: BookmarkOption,
        bookmark: Option<&SourceBookmark>,
    ) -> Result<DatabaseSource, DatabaseSourceError> {
        let fail = |message: String| DatabaseSourceError {
            source_name: source.name.clone(),
            message,
        };
        let options = source.jdbc.clone().unwrap_or_default();
        let field = format!("spec.sources[{index}]");
        let (connection, location, declared) = match (&source.table, &source.storage, &options.query) {
            (Some(table_ref), _, _) => {
                let table = catalog.table(&table_ref.database, &table_ref.table).ok_or_else(|| {
                    fail(format!(
                        "table {}.{} is not in the catalog",
                        table_ref.database, table_ref.table
                    ))
                })?;
                let storage = &table.spec.storage;
                (
                    jdbc_connection(storage, &format!("table {}.{}", table_ref.database, table_ref.table))
                        .map_err(&fail)?,
                    Some(storage.location.clone()),
                    Some(table.spec.columns.clone()),
                )
            }
            (None, Some(storage), _) => (
                jdbc_connection(storage, &format!("{field}.storage")).map_err(&fail)?,
                Some(storage.location.clone()),
                None,
            ),
            (None, None, Some(_)) => match &options.connection {
                Some(connection) => (connection.clone(), None, None),
                None => return Err(fail(format!("{field}.jdbc.query needs jdbc.connection"))),
            },
            (None, None, None) => return Err(fail("needs a table, storage or jdbc.query".into())),
        };
        let endpoint = resolver
            .database(&connection, &format!("{field}.connection"))
            .map_err(|e| fail(e.to_string()))?;
        let engine = endpoint.url.engine;
        let (relation, columns) = match (location, &options.query) {
            (Some(location), _) => {
                let name = JdbcTableName::parse(&location, &endpoint.url).map_err(&fail)?;
                let columns = match declared {
                    Some(columns) if !columns.is_empty() => glue_columns(&columns).map_err(&fail)?,
                    _ => described_columns(&endpoint, &name).await.map_err(&fail)?,
                };
                (Relation::Table(name), columns)
            }
            (None, Some(query)) => {
                let described = kglue_jdbc::schema::describe_query(&endpoint, query)
                    .await
                    .map_err(|e| fail(format!("{field}.jdbc.query: {e}")))?;
                let columns = described
                    .into_iter()
                    .map(|c| match c.glue_type {
                        Ok(glue) => Ok((c.name, glue)),
                        Err(reason) => Err(fail(format!(
                            "{field}.jdbc.query: column {} ({}): {reason}",
                            c.name, c.database_type
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (Relation::Query(query.clone()), columns)
            }
            (None, None) => return Err(fail("needs a table, storage or jdbc.query".into())),
        };
        let column_type = |name: &str, what: &str| {
            columns
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| {
                    fail(format!(
                        "{field}.jdbc.{what} names column {name:?}, which {} does not have (its columns: {})",
                        relation_name(&relation),
                        columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })
        };

        // The key bookmark: read (committed key, greatest key now].
        let mut key_range = Vec::new();
        let mut next_key = Vec::new();
        if !options.bookmark_keys.is_empty() {
            let mut keys = Vec::new();
            for key in &options.bookmark_keys {
                let glue = column_type(key, "bookmarkKeys")?;
                if !orderable_key(&glue) {
                    return Err(fail(format!(
                        "{field}.jdbc.bookmarkKeys: column {key:?} is {glue}, which has no order a bookmark can rely on: use a whole-number, decimal, text, date or timestamp column that only grows"
                    )));
                }
                keys.push((key.clone(), glue));
            }
            if bookmark_option != BookmarkOption::Disable {
                let committed = committed_key(bookmark, &keys).map_err(&fail)?;
                let not_null: Vec<String> = keys
                    .iter()
                    .map(|(k, _)| format!("{} IS NOT NULL", quote(engine, k)))
                    .collect();
                let mut after = not_null.clone();
                if let Some(committed) = &committed {
                    after.push(tuple_compare(engine, &keys, ">", committed).map_err(&fail)?);
                }
                let greatest = first_row(
                    &endpoint,
                    Read {
                        relation: relation.clone(),
                        columns: keys.clone(),
                        conditions: after.clone(),
                        order_by: keys.iter().map(|(k, _)| format!("{} DESC", quote(engine, k))).collect(),
                        limit: Some(1),
                    },
                )
                .await
                .map_err(|e| fail(format!("reading the greatest bookmark key: {e}")))?;
                match greatest {
                    Some(values) => {
                        let values: Vec<String> = values.into_iter().map(Option::unwrap_or_default).collect();
                        key_range = after;
                        key_range.push(tuple_compare(engine, &keys, "<=", &values).map_err(&fail)?);
                        next_key = keys
                            .iter()
                            .zip(values)
                            .map(|((column, _), value)| KeyValue {
                                column: column.clone(),
                                value,
                            })
                            .collect();
                    }
                    None => {
                        // Nothing past the bookmark: this run reads no row, and the bookmark stays.
                        key_range = vec!["1 = 0".into()];
                        next_key = committed
                            .unwrap_or_default()
                            .into_iter()
                            .zip(&keys)
                            .map(|(value, (column, _))| KeyValue {
                                column: column.clone(),
                                value,
                            })
                            .collect();
                    }
                }
            }
        }

        let splits = match &options.partition_column {
            Some(column) if options.num_partitions.unwrap_or(1) > 1 => {
                let glue = column_type(column, "partitionColumn")?;
                if !matches!(
                    glue,
                    GlueType::TinyInt | GlueType::SmallInt | GlueType::Int | GlueType::BigInt
                ) {
                    return Err(fail(format!(
                        "{field}.jdbc.partitionColumn {column:?} is {glue}: reads split on a whole-number column"
                    )));
                }
                let bounds = match (options.lower_bound, options.upper_bound) {
                    (Some(lower), Some(upper)) => Some((lower, upper)),
                    _ => column_bounds(&endpoint, &relation, column, &key_range)
                        .await
                        .map_err(&fail)?,
                };
                match bounds {
                    Some((lower, upper)) => split_conditions(
                        engine,
                        column,
                        lower,
                        upper,
                        options.num_partitions.unwrap_or(1).max(1) as u64,
                    ),
                    None => vec![None],
                }
            }
            _ => vec![None],
        };

        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, glue)| Field::new(name, to_arrow(glue), true))
            .collect();
        Ok(DatabaseSource {
            name: source.name.clone(),
            connection,
            endpoint,
            relation,
            columns,
            schema: Arc::new(Schema::new(fields)),
            key_range,
            splits,
            fetch_size: options.fetch_size.unwrap_or(JdbcSource::DEFAULT_FETCH_SIZE).max(1) as usize,
            next_key,
            rows: Arc::default(),
        })
    }

    /// Registers the source in the session as a table named after it.
    pub fn register(&self, ctx: &SessionContext) -> Result<(), DatabaseSourceError> {
        ctx.register_table(self.name.as_str(), Arc::new(DatabaseTable { source: self.clone() }))
            .map(|_| ())
            .map_err(|e| DatabaseSourceError {
                source_name: self.name.clone(),
                message: e.to_string(),
            })
    }

    /// The source as a table of any session (`kglue sql` reads database tables with it).
    pub fn provider(&self) -> Arc<dyn TableProvider> {
        Arc::new(DatabaseTable { source: self.clone() })
    }

    /// One line for `--explain`.
    pub fn describe(&self) -> String {
        let key = if self.next_key.is_empty() {
            String::new()
        } else {
            format!(
                ", key bookmark up to {}",
                self.next_key
                    .iter()
                    .map(|k| format!("{}={}", k.column, k.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "source {}: {} {} through connection {} in {} read(s){key}",
            self.name,
            self.endpoint.url.engine,
            relation_name(&self.relation),
            self.connection,
            self.splits.len()
        )
    }

    /// The source's bookmark after this run.
    pub fn next_bookmark(&self) -> SourceBookmark {
        SourceBookmark {
            key: self.next_key.clone(),
            ..SourceBookmark::default()
        }
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

fn relation_name(relation: &Relation) -> String {
    match relation {
        Relation::Table(name) => name.to_string(),
        Relation::Query(_) => "its query".into(),
    }
}

/// The `jdbc` Connection of a Jdbc storage.
fn jdbc_connection(storage: &StorageSpec, what: &str) -> Result<String, String> {
    if storage.format.format != DataFormat::Jdbc {
        return Err(format!(
            "{what} is {:?} files, not a database table",
            storage.format.format
        ));
    }
    storage
        .connection
        .clone()
        .ok_or_else(|| format!("{what} has format Jdbc but no connection"))
}

fn glue_columns(columns: &[Column]) -> Result<Vec<(String, GlueType)>, String> {
    columns
        .iter()
        .map(|c| {
            GlueType::parse(&c.type_)
                .map(|t| (c.name.clone(), t))
                .map_err(|e| format!("column {} type {:?}: {e}", c.name, c.type_))
        })
        .collect()
}

/// A table without declared columns (a storage source): its columns as the database describes
/// them. A column without a Glue type stops the run by name: reading on without it would be a
/// silent drop.
async fn described_columns(endpoint: &Endpoint, name: &JdbcTableName) -> Result<Vec<(String, GlueType)>, String> {
    let Some(table) = describe_table(endpoint, name).await? else {
        return Err(format!(
            "table {name} does not exist (or the Connection's user cannot see it)"
        ));
    };
    table
        .columns
        .into_iter()
        .map(|c| match c.glue_type {
            Ok(glue) => Ok((c.name, glue)),
            Err(reason) => Err(format!("column {} ({}) of {name}: {reason}", c.name, c.database_type)),
        })
        .collect()
}

/// The committed key, checked against the key columns the source names now.
fn committed_key(
    bookmark: Option<&SourceBookmark>,
    keys: &[(String, GlueType)],
) -> Result<Option<Vec<String>>, String> {
    let Some(bookmark) = bookmark.filter(|b| !b.key.is_empty()) else {
        return Ok(None);
    };
    let columns: Vec<&str> = bookmark.key.iter().map(|k| k.column.as_str()).collect();
    let now: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    if columns != now {
        return Err(format!(
            "the committed bookmark is on key {columns:?} but jdbc.bookmarkKeys is now {now:?}: reset the bookmark (kglue bookmark reset) to start the new key from the beginning"
        ));
    }
    Ok(Some(bookmark.key.iter().map(|k| k.value.clone()).collect()))
}

/// `(a, b) op (x, y)` with typed literals (`a op x` for one key).
fn tuple_compare(
    engine: JdbcEngine,
    keys: &[(String, GlueType)],
    op: &str,
    values: &[String],
) -> Result<String, String> {
    let columns: Vec<String> = keys.iter().map(|(k, _)| quote(engine, k)).collect();
    let literals = keys
        .iter()
        .zip(values)
        .map(|((column, glue), value)| {
            typed_literal(engine, glue, value).map_err(|e| format!("the bookmark's value for {column}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if columns.len() == 1 {
        format!("{} {op} {}", columns[0], literals[0])
    } else {
        format!("({}) {op} ({})", columns.join(", "), literals.join(", "))
    })
}

/// The least and greatest value of `column` within `conditions`; `None` when it has none.
async fn column_bounds(
    endpoint: &Endpoint,
    relation: &Relation,
    column: &str,
    conditions: &[String],
) -> Result<Option<(i64, i64)>, String> {
    let engine = endpoint.url.engine;
    let quoted = quote(engine, column);
    let mut bounds = Vec::new();
    for order in ["ASC", "DESC"] {
        let mut conditions = conditions.to_vec();
        conditions.push(format!("{quoted} IS NOT NULL"));
        let row = first_row(
            endpoint,
            Read {
                relation: relation.clone(),
                columns: vec![(column.to_string(), GlueType::BigInt)],
                conditions,
                order_by: vec![format!("{quoted} {order}")],
                limit: Some(1),
            },
        )
        .await
        .map_err(|e| format!("reading the bounds of partitionColumn {column:?}: {e}"))?;
        let Some(value) = row.and_then(|r| r.into_iter().next().flatten()) else {
            return Ok(None);
        };
        bounds.push(
            value
                .parse::<i64>()
                .map_err(|_| format!("partitionColumn {column:?} holds {value:?}, not a whole number"))?,
        );
    }
    Ok(Some((bounds[0], bounds[1])))
}

/// Spark's split of a column's range into `n` reads: the first also takes values below the range
/// and nulls, the last values above it, so no row is left out whatever the bounds.
fn split_conditions(engine: JdbcEngine, column: &str, lower: i64, upper: i64, n: u64) -> Vec<Option<String>> {
    let span = (i128::from(upper) - i128::from(lower)).max(0) as u128;
    let n = u128::from(n).min(span.max(1));
    if n <= 1 {
        return vec![None];
    }
    let quoted = quote(engine, column);
    let stride = span / n;
    let boundaries: Vec<i128> = (1..n).map(|i| i128::from(lower) + (stride * i) as i128).collect();
    let mut conditions = Vec::new();
    for (i, boundary) in boundaries.iter().enumerate() {
        conditions.push(Some(if i == 0 {
            format!("{quoted} < {boundary} OR {quoted} IS NULL")
        } else {
            format!("{quoted} >= {} AND {quoted} < {boundary}", boundaries[i - 1])
        }));
    }
    if let Some(last) = boundaries.last() {
        conditions.push(Some(format!("{quoted} >= {last}")));
    }
    conditions
}

/// The source as a table of the run's session.
#[derive(Debug)]
struct DatabaseTable {
    source: DatabaseSource,
}

/// A filter the database can apply, in its SQL, when it means the same there (or selects more):
/// comparisons of columns with constants, `IS [NOT] NULL`, `IN` lists, `BETWEEN`, and `AND`/`OR`
/// of those. Text is compared only for equality (collations order text differently, and
/// MySQL's ignore case), and no `NOT` (it would turn "more rows" into "fewer").
fn pushable(expr: &Expr, schema: &Schema) -> bool {
    let text_column = |e: &Expr| match e {
        Expr::Column(c) => schema
            .field_with_name(&c.name)
            .map(|f| matches!(f.data_type(), DataType::Utf8 | DataType::Binary))
            .unwrap_or(true),
        _ => false,
    };
    let simple = |e: &Expr| match e {
        Expr::Column(c) => schema.field_with_name(&c.name).is_ok(),
        Expr::Literal(..) => true,
        Expr::Cast(cast) => matches!(*cast.expr, Expr::Literal(..)),
        _ => false,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => pushable(left, schema) && pushable(right, schema),
            Operator::Eq => simple(left) && simple(right),
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                simple(left) && simple(right) && !text_column(left) && !text_column(right)
            }
            _ => false,
        },
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => matches!(**inner, Expr::Column(_)) && simple(inner),
        Expr::InList(list) => {
            !list.negated && matches!(*list.expr, Expr::Column(_)) && simple(&list.expr) && list.list.iter().all(simple)
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => !negated && simple(expr) && !text_column(expr) && simple(low) && simple(high),
        _ => false,
    }
}

impl DatabaseTable {
    /// The filter in the database's SQL, if it can be pushed.
    fn to_sql(&self, filter: &Expr) -> Option<String> {
        if !pushable(filter, &self.source.schema) {
            return None;
        }
        // The session's relation names mean nothing in the database: columns go unqualified.
        let unqualified = filter
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => {
                        Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name)))
                    }
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        let sql = match self.source.endpoint.url.engine {
            JdbcEngine::Postgres => Unparser::new(&PostgreSqlDialect {}).expr_to_sql(&unqualified),
            JdbcEngine::Mysql => Unparser::new(&MySqlDialect {}).expr_to_sql(&unqualified),
        };
        sql.ok().map(|sql| sql.to_string())
    }
}

#[async_trait]
impl TableProvider for DatabaseTable {
    fn schema(&self) -> SchemaRef {
        self.source.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.to_sql(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let source = &self.source;
        let indices: Vec<usize> = match projection {
            Some(indices) => indices.clone(),
            None => (0..source.columns.len()).collect(),
        };
        let columns: Vec<(String, GlueType)> = indices.iter().map(|&i| source.columns[i].clone()).collect();
        let schema = Arc::new(source.schema.project(&indices)?);
        let pushed: Vec<String> = filters.iter().filter_map(|f| self.to_sql(f)).collect();
        let reads = source
            .splits
            .iter()
            .map(|split| Read {
                relation: source.relation.clone(),
                columns: columns.clone(),
                conditions: source
                    .key_range
                    .iter()
                    .cloned()
                    .chain(split.clone())
                    .chain(pushed.iter().cloned())
                    .collect(),
                order_by: Vec::new(),
                // Every filter left above is also pushed, and the engine passes a limit down
                // only when none is left: each read may stop there.
                limit,
            })
            .collect::<Vec<_>>();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(reads.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(DatabaseScan {
            source: source.name.clone(),
            endpoint: source.endpoint.clone(),
            reads,
            schema,
            fetch_size: source.fetch_size,
            properties: Arc::new(properties),
            rows: source.rows.clone(),
        }))
    }
}

/// Reads of one database source, one partition per read.
#[derive(Debug)]
pub struct DatabaseScan {
    source: String,
    endpoint: Endpoint,
    reads: Vec<Read>,
    schema: SchemaRef,
    fetch_size: usize,
    properties: Arc<PlanProperties>,
    rows: Arc<AtomicU64>,
}

impl DisplayAs for DatabaseScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let engine = self.endpoint.url.engine;
        let statements: Vec<String> = self.reads.iter().map(|r| r.sql(engine, &[])).collect();
        write!(
            f,
            "DatabaseScan: source={}, sql=[{}]",
            self.source,
            statements.join("; ")
        )
    }
}

impl ExecutionPlan for DatabaseScan {
    fn name(&self) -> &str {
        "DatabaseScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, _: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let read = self
            .reads
            .get(partition)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("no read {partition}")))?;
        let source = self.source.clone();
        let rows = self.rows.clone();
        let batches = stream(self.endpoint.clone(), read, self.schema.clone(), self.fetch_size).map(move |batch| {
            let batch = batch.map_err(|e| DataFusionError::External(format!("source {source}: {e}").into()))?;
            rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_value_and_null_once() {
        let splits = split_conditions(JdbcEngine::Postgres, "id", 1, 100, 4);
        assert_eq!(
            splits,
            [
                Some("\"id\" < 25 OR \"id\" IS NULL".to_string()),
                Some("\"id\" >= 25 AND \"id\" < 49".to_string()),
                Some("\"id\" >= 49 AND \"id\" < 73".to_string()),
                Some("\"id\" >= 73".to_string()),
            ]
        );
        assert_eq!(split_conditions(JdbcEngine::Mysql, "id", 5, 5, 4), [None]);
        assert_eq!(split_conditions(JdbcEngine::Mysql, "id", 1, 3, 8).len(), 2);
    }

    #[test]
    fn only_filters_that_mean_the_same_in_the_database_are_pushed() {
        use datafusion::prelude::{col, lit};
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        assert!(pushable(&col("id").gt(lit(5)).and(col("name").eq(lit("a"))), &schema));
        assert!(pushable(
            &col("id").is_null().or(col("id").in_list(vec![lit(1), lit(2)], false)),
            &schema
        ));
        assert!(
            !pushable(&col("name").gt(lit("a")), &schema),
            "text order differs by collation"
        );
        assert!(
            !pushable(&Expr::Not(Box::new(col("id").eq(lit(1)))), &schema),
            "NOT could drop rows"
        );
        assert!(!pushable(&col("id").in_list(vec![lit(1)], true), &schema));
    }

    #[test]
    fn a_bookmark_on_other_keys_is_refused_and_tuples_compare_typed() {
        let keys = vec![
            ("id".to_string(), GlueType::BigInt),
            ("at".to_string(), GlueType::Timestamp),
        ];
        assert_eq!(
            tuple_compare(
                JdbcEngine::Postgres,
                &keys,
                ">",
                &["7".into(), "2024-01-01 00:00:00.000000".into()]
            ),
            Ok("(\"id\", \"at\") > (7, TIMESTAMP '2024-01-01 00:00:00.000000')".to_string())
        );
        let bookmark = SourceBookmark {
            key: vec![KeyValue {
                column: "id".into(),
                value: "7".into(),
            }],
            ..SourceBookmark::default()
        };
        let error = committed_key(Some(&bookmark), &keys).expect_err("other keys");
        assert!(error.contains("kglue bookmark reset"), "{error}");
        assert_eq!(
            committed_key(Some(&bookmark), &keys[..1]),
            Ok(Some(vec!["7".to_string()]))
        );
    }
}
