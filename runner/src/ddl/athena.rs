//! Athena (Hive DDL): `CREATE EXTERNAL TABLE` with Hive types, `PARTITIONED BY`, `STORED AS`
//! or a `ROW FORMAT SERDE`, and `LOCATION`.

use kglue_crds::common::DataFormat;
use kglue_crds::glue_type::GlueType;

use super::ctx::Ctx;
use super::model::DdlError;

pub(super) fn athena(ctx: &mut Ctx) -> Result<String, DdlError> {
    let location = if let Some(rest) = ctx.location.strip_prefix("s3a://") {
        format!("s3://{rest}")
    } else if ctx.location.starts_with("s3://") {
        ctx.location.clone()
    } else {
        return Err(ctx.unsupported(format!(
            "Athena reads only from S3 (s3://…), and the table's location is {}; use --dialect duckdb, spark or trino for data on a local filesystem",
            ctx.location
        )));
    };
    if ctx.format == DataFormat::Json && ctx.json_array {
        return Err(ctx.unsupported(
            "its files are JSON documents holding one array of records (json.jsonPath $[*]), and Athena's JSON SerDe reads one record per line".into(),
        ));
    }
    // Athena's OpenCSVSerde parses only these types from text; others (dates as text, timestamps
    // as text, decimals…) fail at query time, so they are declared string.
    let csv_text = |t: &GlueType| {
        matches!(
            t,
            GlueType::Boolean | GlueType::Int | GlueType::BigInt | GlueType::Double | GlueType::String
        )
    };
    let is_csv = ctx.format == DataFormat::Csv;
    let lines = ctx.column_lines(&ctx.columns, |c| {
        if is_csv && !csv_text(&c.type_) {
            "string".to_string()
        } else {
            ctx.type_(&c.type_)
        }
    });
    if is_csv {
        let as_text: Vec<String> = ctx
            .columns
            .iter()
            .filter(|c| !csv_text(&c.type_))
            .map(|c| format!("{} ({})", ctx.ident(&c.name), ctx.type_(&c.type_)))
            .collect();
        if !as_text.is_empty() {
            ctx.notes.push(format!(
                "Athena's OpenCSVSerde parses only boolean, int, bigint, double and string from text, so {} {} declared string: cast in queries",
                as_text.join(", "),
                if as_text.len() == 1 { "is" } else { "are" }
            ));
        }
        if let Some(null) = &ctx.csv.null_value {
            ctx.notes.push(format!(
                "Athena's OpenCSVSerde has no NULL marker: fields holding {null:?} (csv.nullValue) read as that text"
            ));
        }
    }
    let mut sql = format!(
        "CREATE EXTERNAL TABLE {} (\n{}\n)\n",
        ctx.qualified(),
        lines.join(",\n")
    );
    if let Some(description) = &ctx.description {
        sql.push_str(&format!("COMMENT {}\n", ctx.string(description)));
    }
    if !ctx.keys.is_empty() {
        let keys: Vec<String> = ctx
            .column_lines(&ctx.keys, |c| ctx.type_(&c.type_))
            .into_iter()
            .map(|l| l.trim_start().to_string())
            .collect();
        sql.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
    }
    match ctx.format {
        DataFormat::Parquet => sql.push_str("STORED AS PARQUET\n"),
        DataFormat::Avro => sql.push_str("STORED AS AVRO\n"),
        DataFormat::Orc => sql.push_str("STORED AS ORC\n"),
        DataFormat::Csv => {
            let mut properties = vec![
                format!("  'separatorChar' = {}", ctx.string(ctx.delimiter())),
                format!("  'quoteChar' = {}", ctx.string(ctx.quote())),
            ];
            if let Some(escape) = &ctx.csv.escape {
                properties.push(format!("  'escapeChar' = {}", ctx.string(escape)));
            }
            sql.push_str(&format!(
                "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\nWITH SERDEPROPERTIES (\n{}\n)\nSTORED AS TEXTFILE\n",
                properties.join(",\n")
            ));
        }
        DataFormat::Json => {
            sql.push_str("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS TEXTFILE\n");
        }
        DataFormat::Jdbc => return Err(ctx.refuse_jdbc()),
        DataFormat::Kafka => return Err(ctx.refuse_kafka()),
        DataFormat::Grok => {
            let Some(grok) = &ctx.grok else {
                return Err(ctx.unsupported("its format is Grok but it has no grok pattern".into()));
            };
            let mut properties = vec![format!("  'input.format' = {}", ctx.string(&grok.pattern))];
            if !grok.custom_patterns.is_empty() {
                let patterns: Vec<String> = grok
                    .custom_patterns
                    .iter()
                    .map(|(name, regex)| format!("{name} {regex}"))
                    .collect();
                properties.push(format!(
                    "  'input.grokCustomPatterns' = {}",
                    ctx.string(&patterns.join("\n"))
                ));
            }
            sql.push_str(&format!(
                "ROW FORMAT SERDE 'com.amazonaws.glue.serde.GrokSerDe'\nWITH SERDEPROPERTIES (\n{}\n)\nSTORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n",
                properties.join(",\n")
            ));
        }
    }
    sql.push_str(&format!("LOCATION {}", ctx.string(&location)));
    if ctx.format == DataFormat::Csv && ctx.header() {
        sql.push_str("\nTBLPROPERTIES ('skip.header.line.count' = '1')");
    }
    sql.push_str(";\n");
    Ok(sql)
}
