//! A job's SQL script: several statements, run in order in one DataFusion session, with the run's
//! arguments bound to `$name` placeholders as parameters — the text is never rewritten, so an
//! argument value can never change what the SQL means.

use std::collections::{BTreeMap, HashMap};

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

/// Why a script failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The SQL does not parse; the message has the line and column.
    #[error("the script does not parse: {0}")]
    Syntax(String),
    /// A statement could not be planned or run (an unknown table or column, a type error…).
    #[error("statement {number}: {message}")]
    Statement {
        /// The statement's 1-based position in the script.
        number: usize,
        /// What the engine said.
        message: String,
    },
    /// A statement the sandbox refuses (it would read a path, write, or change the session).
    #[error(transparent)]
    Refused(#[from] super::sandbox::Refused),
    /// A statement is a query whose rows would go nowhere.
    #[error(
        "statement {0} is a query whose rows go nowhere: define a view (CREATE VIEW name AS …) and name it in a sink"
    )]
    DanglingQuery(usize),
}

/// Runs every statement of `sql` in `ctx`, in order, with `arguments` bound as named parameters.
/// Statements define relations (`CREATE VIEW`, `CREATE TABLE … AS`) for sinks to read; anything
/// else is refused before the first statement runs ([`super::sandbox`]).
pub async fn run_script(
    ctx: &SessionContext,
    sql: &str,
    arguments: &BTreeMap<String, String>,
) -> Result<usize, ScriptError> {
    let statements =
        DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| ScriptError::Syntax(e.to_string()))?;
    let params = ParamValues::Map(
        arguments
            .iter()
            .map(|(name, value)| (name.clone(), ScalarValue::Utf8(Some(value.clone())).into()))
            .collect::<HashMap<_, _>>(),
    );
    let count = statements.len();
    // Every statement is checked before the first one runs: a refused one changes nothing.
    for (index, statement) in statements.iter().enumerate() {
        super::sandbox::check(index + 1, statement)?;
    }
    for (index, statement) in statements.into_iter().enumerate() {
        let number = index + 1;
        let failed = |e: datafusion::error::DataFusionError| ScriptError::Statement {
            number,
            message: e.to_string(),
        };
        if matches!(&statement, Statement::Statement(s) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)))
        {
            return Err(ScriptError::DanglingQuery(number));
        }
        let plan: LogicalPlan = ctx.state().statement_to_plan(statement).await.map_err(failed)?;
        let plan = plan.with_param_values(params.clone()).map_err(failed)?;
        ctx.execute_logical_plan(plan)
            .await
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;

    use super::*;

    fn session() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("day", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["2024-01-01", "2024-01-02", "2024-01-03"])),
            ],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        ctx.register_table("orders", Arc::new(table)).expect("registered");
        ctx
    }

    async fn ids(ctx: &SessionContext, relation: &str) -> Vec<i64> {
        let batches = ctx
            .sql(&format!("SELECT id FROM {relation} ORDER BY id"))
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        batches
            .iter()
            .flat_map(|b| {
                let column = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64")
                    .clone();
                column.values().to_vec()
            })
            .collect()
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn statements_run_in_order_with_arguments_bound_as_parameters() {
        let ctx = session();
        let script = "CREATE VIEW recent AS SELECT id, day FROM orders WHERE CAST(day AS DATE) >= CAST($since AS DATE);\n\
                      CREATE VIEW recent_ids AS SELECT id FROM recent;";
        let count = run_script(&ctx, script, &args(&[("since", "2024-01-02")]))
            .await
            .expect("runs");
        assert_eq!(count, 2);
        assert_eq!(ids(&ctx, "recent_ids").await, [2, 3]);
    }

    #[tokio::test]
    async fn an_argument_value_is_data_never_sql() {
        let ctx = session();
        let script = "CREATE VIEW picked AS SELECT id FROM orders WHERE day = $day;";
        run_script(&ctx, script, &args(&[("day", "x' OR '1'='1")]))
            .await
            .expect("runs");
        assert_eq!(
            ids(&ctx, "picked").await,
            Vec::<i64>::new(),
            "the quote trick matches nothing"
        );
    }

    #[tokio::test]
    async fn errors_name_the_statement_or_position() {
        let ctx = session();
        let error = run_script(&ctx, "CREATE VIEW v AS SELEC id FROM orders;", &args(&[]))
            .await
            .expect_err("syntax");
        assert!(
            matches!(error, ScriptError::Syntax(ref m) if m.contains("Line: 1")),
            "{error}"
        );

        let error = run_script(
            &ctx,
            "CREATE VIEW a AS SELECT id FROM orders;\nCREATE VIEW b AS SELECT nope FROM orders;",
            &args(&[]),
        )
        .await
        .expect_err("unknown column");
        assert!(
            matches!(error, ScriptError::Statement { number: 2, ref message } if message.contains("nope")),
            "{error}"
        );

        let error = run_script(
            &ctx,
            "CREATE VIEW c AS SELECT id FROM orders WHERE day = $missing;",
            &args(&[]),
        )
        .await
        .expect_err("no value");
        assert!(error.to_string().contains("missing"), "{error}");

        let error = run_script(&ctx, "SELECT * FROM orders;", &args(&[]))
            .await
            .expect_err("dangling");
        assert!(matches!(error, ScriptError::DanglingQuery(1)), "{error}");
    }
}
