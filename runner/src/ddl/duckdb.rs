//! DuckDB: a `CREATE VIEW` over `read_parquet`, `read_csv`, `read_json` or `read_avro`.

use kglue_crds::common::{Compression, DataFormat};

use super::ctx::{Col, Ctx};
use super::model::DdlError;

pub(super) fn duckdb(ctx: &mut Ctx, folders: Option<&str>) -> Result<String, DdlError> {
    if let Some(example) = folders {
        return Err(ctx.unsupported(format!(
            "its partition folders are not named key=value ({example}), and DuckDB reads partition values only from Hive-style folders"
        )));
    }
    let reader = match ctx.format {
        DataFormat::Parquet => "read_parquet",
        DataFormat::Avro => "read_avro",
        DataFormat::Csv => "read_csv",
        DataFormat::Json => "read_json",
        DataFormat::Orc => {
            return Err(ctx.unsupported(
                "its files are ORC, which DuckDB has no reader for; use --dialect trino, spark or athena".into(),
            ));
        }
        DataFormat::Grok => return Err(ctx.refuse_grok()),
        DataFormat::Jdbc => return Err(ctx.refuse_jdbc()),
        DataFormat::Kafka => return Err(ctx.refuse_kafka()),
    };
    let text = matches!(ctx.format, DataFormat::Csv | DataFormat::Json);
    if text && let Some(codec @ (Compression::Bzip2 | Compression::Xz)) = ctx.compression {
        return Err(ctx.unsupported(format!(
            "its files are {} compressed, and DuckDB reads only gzip and zstd text files",
            if codec == Compression::Bzip2 { "bzip2" } else { "xz" }
        )));
    }
    // file:///path becomes the plain path; s3:// stays. Like Hive, Spark and Trino, skip files and
    // folders' markers whose names start with '.' or '_' (_SUCCESS, .crc files).
    let root = ctx.location.strip_prefix("file://").unwrap_or(&ctx.location);
    let mut arguments = vec![ctx.string(&format!("{root}**/[!._]*"))];
    let struct_of = |columns: &[Col]| {
        let entries: Vec<String> = columns
            .iter()
            .map(|c| format!("{}: {}", ctx.string(&c.name), ctx.string(&ctx.type_(&c.type_))))
            .collect();
        entries
    };
    match ctx.format {
        DataFormat::Csv => {
            arguments.push(format!("delim = {}", ctx.string(ctx.delimiter())));
            arguments.push(format!("quote = {}", ctx.string(ctx.quote())));
            let escape = ctx.csv.escape.clone().unwrap_or_else(|| ctx.quote().to_string());
            arguments.push(format!("escape = {}", ctx.string(&escape)));
            arguments.push(format!("header = {}", ctx.header()));
            if let Some(null) = &ctx.csv.null_value {
                arguments.push(format!("nullstr = {}", ctx.string(null)));
            }
        }
        DataFormat::Json => {
            let format = if ctx.json_array { "array" } else { "newline_delimited" };
            arguments.push(format!("format = {}", ctx.string(format)));
        }
        _ => {}
    }
    if text {
        arguments.push(format!(
            "columns = {{\n    {}\n  }}",
            struct_of(&ctx.columns).join(",\n    ")
        ));
    }
    if ctx.keys.is_empty() {
        arguments.push("hive_partitioning = false".into());
    } else {
        arguments.push("hive_partitioning = true".into());
        arguments.push(format!("hive_types = {{{}}}", struct_of(&ctx.keys).join(", ")));
    }
    let select = if text {
        // The reader applies the catalog's types itself.
        "SELECT *".to_string()
    } else {
        // Self-describing files: project the catalog's columns, cast to the catalog's types.
        arguments.push("union_by_name = true".into());
        let mut projection: Vec<String> = ctx
            .columns
            .iter()
            .map(|c| {
                let name = ctx.ident(&c.name);
                format!("  CAST({name} AS {}) AS {name}", ctx.type_(&c.type_))
            })
            .collect();
        projection.extend(ctx.keys.iter().map(|k| format!("  {}", ctx.ident(&k.name))));
        format!("SELECT\n{}", projection.join(",\n"))
    };
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {};\nCREATE VIEW {} AS\n{select}\nFROM {reader}(\n  {}\n);\n",
        ctx.ident(&ctx.database),
        ctx.qualified(),
        arguments.join(",\n  ")
    ))
}
