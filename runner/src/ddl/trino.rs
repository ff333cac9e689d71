//! Trino's Hive connector: `CREATE TABLE … WITH (external_location, format, partitioned_by)`.

use kglue_crds::common::DataFormat;
use kglue_crds::glue_type::GlueType;

use super::ctx::Ctx;
use super::model::DdlError;

pub(super) fn trino(ctx: &mut Ctx) -> Result<String, DdlError> {
    let format = match ctx.format {
        DataFormat::Parquet => "PARQUET",
        DataFormat::Csv => "CSV",
        DataFormat::Json => "JSON",
        DataFormat::Avro => "AVRO",
        DataFormat::Orc => "ORC",
        DataFormat::Grok => return Err(ctx.refuse_grok()),
        DataFormat::Jdbc => return Err(ctx.refuse_jdbc()),
        DataFormat::Kafka => return Err(ctx.refuse_kafka()),
    };
    if ctx.format == DataFormat::Json && ctx.json_array {
        return Err(ctx.unsupported(
            "its files are JSON documents holding one array of records (json.jsonPath $[*]), and Trino's JSON format reads one record per line".into(),
        ));
    }
    let is_csv = ctx.format == DataFormat::Csv;
    let mut sql = String::new();
    if is_csv {
        // The Hive connector refuses CSV tables with data columns of any other type (partition
        // keys may keep theirs), so the DDL declares VARCHAR and says so.
        let typed: Vec<String> = ctx
            .columns
            .iter()
            .filter(|c| c.type_ != GlueType::String)
            .map(|c| format!("{} {}", ctx.ident(&c.name), ctx.type_(&c.type_)))
            .collect();
        if !typed.is_empty() {
            sql.push_str(
                "-- Trino's CSV format reads only VARCHAR columns, so every data column is declared VARCHAR.\n",
            );
            sql.push_str(&format!(
                "-- The catalog's types, to CAST to in queries: {}.\n",
                typed.join(", ")
            ));
        }
        if let Some(null) = &ctx.csv.null_value {
            ctx.notes.push(format!(
                "Trino's CSV format has no NULL marker: fields holding {null:?} (csv.nullValue) read as that text"
            ));
        }
    }
    let mut lines = ctx.column_lines(&ctx.columns, |c| {
        if is_csv {
            "VARCHAR".to_string()
        } else {
            ctx.type_(&c.type_)
        }
    });
    lines.extend(ctx.column_lines(&ctx.keys, |c| ctx.type_(&c.type_)));
    sql.push_str(&format!(
        "CREATE TABLE {} (\n{}\n)\n",
        ctx.qualified(),
        lines.join(",\n")
    ));
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("COMMENT {}\n", ctx.string(description)));
    }
    let mut properties = vec![
        format!("  external_location = {}", ctx.string(&ctx.location)),
        format!("  format = {}", ctx.string(format)),
    ];
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx.keys.iter().map(|k| ctx.string(&k.name)).collect();
        properties.push(format!("  partitioned_by = ARRAY[{}]", keys.join(", ")));
    }
    if is_csv {
        properties.push(format!("  csv_separator = {}", ctx.string(ctx.delimiter())));
        properties.push(format!("  csv_quote = {}", ctx.string(ctx.quote())));
        if let Some(escape) = &ctx.csv.escape {
            properties.push(format!("  csv_escape = {}", ctx.string(escape)));
        }
        if ctx.header() {
            properties.push("  skip_header_line_count = 1".to_string());
        }
    }
    sql.push_str(&format!("WITH (\n{}\n);\n", properties.join(",\n")));
    Ok(sql)
}
