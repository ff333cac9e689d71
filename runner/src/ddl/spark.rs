//! Spark: `CREATE TABLE … USING <format> OPTIONS (…) PARTITIONED BY (…) LOCATION …`.

use kglue_crds::common::DataFormat;

use super::ctx::{Col, Ctx};
use super::model::DdlError;

pub(super) fn spark(ctx: &mut Ctx) -> Result<String, DdlError> {
    let source = match ctx.format {
        DataFormat::Parquet => "parquet",
        DataFormat::Csv => "csv",
        DataFormat::Json => "json",
        DataFormat::Avro => "avro",
        DataFormat::Orc => "orc",
        DataFormat::Grok => return Err(ctx.refuse_grok()),
        DataFormat::Jdbc => return Err(ctx.refuse_jdbc()),
        DataFormat::Kafka => return Err(ctx.refuse_kafka()),
    };
    let mut options = Vec::new();
    match ctx.format {
        DataFormat::Csv => {
            options.push(format!(
                "header {}",
                ctx.string(if ctx.header() { "true" } else { "false" })
            ));
            options.push(format!("sep {}", ctx.string(ctx.delimiter())));
            options.push(format!("quote {}", ctx.string(ctx.quote())));
            // Spark's default escape is a backslash; the catalog's default is a doubled quote.
            let escape = ctx.csv.escape.clone().unwrap_or_else(|| ctx.quote().to_string());
            options.push(format!("escape {}", ctx.string(&escape)));
            if let Some(null) = &ctx.csv.null_value {
                options.push(format!("nullValue {}", ctx.string(null)));
            }
        }
        DataFormat::Json if ctx.json_array => options.push(format!("multiLine {}", ctx.string("true"))),
        _ => {}
    }
    let all: Vec<Col> = ctx.columns.iter().chain(&ctx.keys).cloned().collect();
    let lines = ctx.column_lines(&all, |c| ctx.type_(&c.type_));
    let mut sql = format!(
        "CREATE TABLE {} (\n{}\n)\nUSING {source}\n",
        ctx.qualified(),
        lines.join(",\n")
    );
    if !options.is_empty() {
        sql.push_str(&format!("OPTIONS ({})\n", options.join(", ")));
    }
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx.keys.iter().map(|k| ctx.ident(&k.name)).collect();
        sql.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
    }
    sql.push_str(&format!("LOCATION {}", ctx.string(&ctx.location)));
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("\nCOMMENT {}", ctx.string(description)));
    }
    sql.push_str(";\n");
    Ok(sql)
}
