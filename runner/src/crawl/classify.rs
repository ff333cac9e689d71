//! Classifying one file: what format it is and what columns it has. Custom classifiers are tried
//! first, in the crawler's order, then the built-in ones. A file nothing recognises is reported
//! with the reason, never guessed.

use std::sync::Arc;

use kglue_crds::ClassifierSpec;
use kglue_crds::classifier::{CsvClassifier, HeaderPolicy};
use kglue_crds::common::{Compression, CsvOptions, DataFormat, FormatSpec, GrokOptions, JsonOptions};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::container::{avro_schema, parquet_schema};
use super::delimited::{self, CANDIDATE_DELIMITERS, Parsed};
use super::grok::GrokPattern;
use super::infer::{InferredColumn, columns_from_arrow, columns_from_delimited, columns_from_json};
use super::json::{JsonLayout, looks_like_json, read_records};
use super::sniff::{Sniffed, TEXT_SAMPLE_BYTES, sniff};

/// How many bytes of a file are read to classify it: the text sample plus room for compressed
/// input to expand into it.
const HEAD_BYTES: u64 = TEXT_SAMPLE_BYTES as u64;

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSchema {
    /// The classification written to the table's `classification` parameter: `parquet`, `avro`,
    /// `csv`, `json`, or a custom classifier's.
    pub classification: String,
    /// The Custom classifier that recognised the file, if one did.
    pub classifier: Option<String>,
    /// Format, compression and format options.
    pub format: FormatSpec,
    /// The columns.
    pub columns: Vec<InferredColumn>,
}

/// The outcome of classifying one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// Recognised.
    Schema(Box<FileSchema>),
    /// Not recognised; the reason is for the crawl report.
    Unclassified(String),
}

/// Classifies the file `meta` of `store`, trying `custom` classifiers (name and spec, in order)
/// before the built-in ones. Only a failure of the store itself is an `Err`.
pub async fn classify(
    store: Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    custom: &[(String, ClassifierSpec)],
) -> Result<Classified, object_store::Error> {
    let head = store.get_range(&meta.location, 0..meta.size.min(HEAD_BYTES)).await?;
    let whole_file = meta.size <= HEAD_BYTES;
    let sniffed = match sniff(&head, whole_file) {
        Ok(sniffed) => sniffed,
        Err(error) => return Ok(Classified::Unclassified(error.to_string())),
    };
    let container = |format: DataFormat, classification: &str, columns| {
        Classified::Schema(Box::new(FileSchema {
            classification: classification.into(),
            classifier: None,
            format: plain(format, None),
            columns,
        }))
    };
    Ok(match sniffed {
        Sniffed::Parquet => match parquet_schema(store, meta).await {
            Ok(schema) => container(
                DataFormat::Parquet,
                "parquet",
                columns_from_arrow(schema.schema.fields()),
            ),
            Err(error) => Classified::Unclassified(error.to_string()),
        },
        Sniffed::Avro => match avro_schema(&head) {
            Ok(schema) => container(DataFormat::Avro, "avro", columns_from_arrow(schema.schema.fields())),
            Err(error) => Classified::Unclassified(error.to_string()),
        },
        Sniffed::Orc => Classified::Unclassified(
            "ORC: no well-kept Rust reader of ORC schemas is available to kglue yet; not classified".into(),
        ),
        Sniffed::Text {
            compression,
            sample,
            complete,
        } => classify_text(&sample, complete, compression, custom),
    })
}

/// Classifies decompressed text.
pub fn classify_text(
    sample: &str,
    complete: bool,
    compression: Compression,
    custom: &[(String, ClassifierSpec)],
) -> Classified {
    if sample.trim().is_empty() {
        return Classified::Unclassified("no data: the file holds only blank lines".into());
    }
    let mut declined = Vec::new();
    for (name, classifier) in custom {
        match try_custom(sample, complete, compression, classifier) {
            Ok(Some(mut schema)) => {
                schema.classifier = Some(name.clone());
                return Classified::Schema(Box::new(schema));
            }
            Ok(None) => {}
            Err(reason) => declined.push(format!("classifier {name}: {reason}")),
        }
    }
    let built_in = if looks_like_json(sample) {
        built_in_json(sample, complete, compression)
    } else {
        built_in_delimited(sample, compression)
    };
    match built_in {
        Ok(schema) => Classified::Schema(Box::new(schema)),
        Err(reason) => {
            declined.push(reason);
            Classified::Unclassified(declined.join("; "))
        }
    }
}

fn plain(format: DataFormat, compression: Option<Compression>) -> FormatSpec {
    FormatSpec {
        format,
        compression,
        csv: None,
        json: None,
        grok: None,
        kafka: None,
    }
}

fn compression_field(compression: Compression) -> Option<Compression> {
    (compression != Compression::None).then_some(compression)
}

/// A custom classifier's verdict: `Ok(None)` when it does not apply to this kind of file,
/// `Err(reason)` when it applies but the file does not match it.
fn try_custom(
    sample: &str,
    complete: bool,
    compression: Compression,
    classifier: &ClassifierSpec,
) -> Result<Option<FileSchema>, String> {
    if let Some(csv) = &classifier.csv {
        return custom_csv(sample, compression, &classifier.classification, csv).map(Some);
    }
    if let Some(json) = &classifier.json {
        let records = read_records(sample, Some(&json.json_path), complete).map_err(|e| e.to_string())?;
        if records.records.is_empty() {
            return Err(format!("no records at {}", json.json_path));
        }
        let mut format = plain(DataFormat::Json, compression_field(compression));
        format.json = Some(JsonOptions {
            json_path: Some(json.json_path.clone()),
        });
        return Ok(Some(FileSchema {
            classification: classification_or(&classifier.classification, "json"),
            classifier: None,
            format,
            columns: columns_from_json(&records.records),
        }));
    }
    if let Some(grok) = &classifier.grok {
        let pattern = GrokPattern::compile(&grok.pattern, &grok.custom_patterns)?;
        if let Some((line, _)) = sample
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .find(|(_, l)| !pattern.matches(l))
        {
            return Err(format!("line {} does not match its grok pattern", line + 1));
        }
        let mut format = plain(DataFormat::Grok, compression_field(compression));
        format.grok = Some(GrokOptions {
            pattern: grok.pattern.clone(),
            custom_patterns: grok.custom_patterns.clone(),
        });
        return Ok(Some(FileSchema {
            classification: classification_or(&classifier.classification, "grok"),
            classifier: None,
            format,
            columns: pattern.columns,
        }));
    }
    Ok(None)
}

fn classification_or(custom: &str, default: &str) -> String {
    if custom.is_empty() {
        default.to_string()
    } else {
        custom.to_string()
    }
}

fn custom_csv(
    sample: &str,
    compression: Compression,
    classification: &str,
    csv: &CsvClassifier,
) -> Result<FileSchema, String> {
    let delimiter = single_byte(&csv.delimiter).ok_or("the delimiter must be one ASCII character")?;
    let quote = csv
        .quote
        .as_deref()
        .map(single_byte)
        .unwrap_or(Some(b'"'))
        .ok_or("the quote must be one ASCII character")?;
    let parsed = delimited::parse(sample, delimiter, quote).map_err(|e| e.to_string())?;
    let width = parsed.rows.first().map(|(_, row)| row.len()).unwrap_or_default();
    if width < 2 && !csv.allow_single_column {
        return Err(format!("delimiter {:?} gives a single column", delimiter as char));
    }
    if let Some((line, row)) = parsed.rows.iter().find(|(_, row)| row.len() != width) {
        return Err(format!("line {line} has {} fields where line 1 has {width}", row.len()));
    }
    Ok(delimited_schema(
        &parsed,
        quote,
        compression,
        csv.header,
        &csv.column_names,
        classification_or(classification, "csv"),
    ))
}

fn single_byte(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => None,
    }
}

fn delimited_schema(
    parsed: &Parsed,
    quote: u8,
    compression: Compression,
    header: HeaderPolicy,
    column_names: &[String],
    classification: String,
) -> FileSchema {
    let rows: Vec<Vec<String>> = parsed.rows.iter().map(|(_, row)| row.clone()).collect();
    let schema = columns_from_delimited(&rows, header, column_names);
    let mut format = plain(DataFormat::Csv, compression_field(compression));
    format.csv = Some(CsvOptions {
        delimiter: Some((parsed.delimiter as char).to_string()),
        quote: (quote != b'"').then(|| (quote as char).to_string()),
        escape: None,
        header: Some(schema.header),
        null_value: None,
    });
    FileSchema {
        classification,
        classifier: None,
        format,
        columns: schema.columns,
    }
}

fn built_in_json(sample: &str, complete: bool, compression: Compression) -> Result<FileSchema, String> {
    let records = read_records(sample, None, complete).map_err(|e| format!("JSON: {e}"))?;
    if !records
        .records
        .iter()
        .any(|r| matches!(r, super::json::Value::Object(_)))
    {
        return Err("JSON: no records (objects) found".into());
    }
    let mut format = plain(DataFormat::Json, compression_field(compression));
    if let JsonLayout::Documents { json_path } = &records.layout {
        format.json = Some(JsonOptions {
            json_path: Some(json_path.clone()),
        });
    }
    Ok(FileSchema {
        classification: "json".into(),
        classifier: None,
        format,
        columns: columns_from_json(&records.records),
    })
}

fn built_in_delimited(sample: &str, compression: Compression) -> Result<FileSchema, String> {
    let parsed = delimited::detect(sample, &CANDIDATE_DELIMITERS, b'"').map_err(|e| match e {
        delimited::DelimitedError::NoDelimiter => {
            "not recognised: not Parquet, Avro, ORC or JSON, and no delimiter (',' tab '|' ';') splits its lines into columns".to_string()
        }
        other => format!("CSV: {other}"),
    })?;
    Ok(delimited_schema(
        &parsed,
        b'"',
        compression,
        HeaderPolicy::Detect,
        &[],
        "csv".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(schema: &FileSchema) -> Vec<String> {
        schema
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.type_))
            .collect()
    }

    fn schema(classified: Classified) -> FileSchema {
        match classified {
            Classified::Schema(schema) => *schema,
            Classified::Unclassified(reason) => panic!("unclassified: {reason}"),
        }
    }

    fn classifier(yaml: &str) -> ClassifierSpec {
        serde_saphyr::from_str(yaml).expect("valid classifier")
    }

    #[test]
    fn built_in_csv_with_detected_header() {
        let file = schema(classify_text("id|amount\n1|2.5\n2|3\n", true, Compression::Gzip, &[]));
        assert_eq!(file.classification, "csv");
        assert_eq!(file.format.format, DataFormat::Csv);
        assert_eq!(file.format.compression, Some(Compression::Gzip));
        let csv = file.format.csv.as_ref().expect("csv options");
        assert_eq!((csv.delimiter.as_deref(), csv.header), (Some("|"), Some(true)));
        assert_eq!(described(&file), ["id:int", "amount:double"]);
    }

    #[test]
    fn built_in_json_lines_and_arrays() {
        let lines = schema(classify_text("{\"a\":1}\n{\"a\":2}\n", true, Compression::None, &[]));
        assert_eq!(
            (lines.format.format, lines.format.json.as_ref()),
            (DataFormat::Json, None)
        );
        let array = schema(classify_text("[{\"a\":1},{\"a\":2.5}]", true, Compression::None, &[]));
        assert_eq!(
            array.format.json.as_ref().and_then(|j| j.json_path.as_deref()),
            Some("$[*]")
        );
        assert_eq!(described(&array), ["a:double"]);
    }

    #[test]
    fn custom_classifiers_come_first_and_in_order() {
        let pipes =
            classifier("classification: partner-feed\ncsv: {delimiter: '|', header: Absent, columnNames: [sku, qty]}");
        let records = classifier("classification: api-dump\njson: {jsonPath: '$.items[*]'}");
        let custom = vec![("pipes".to_string(), pipes), ("records".to_string(), records)];

        let file = schema(classify_text("A-1|2\nB-7|5\n", true, Compression::None, &custom));
        assert_eq!(
            (file.classification.as_str(), file.classifier.as_deref()),
            ("partner-feed", Some("pipes"))
        );
        assert_eq!(described(&file), ["sku:string", "qty:int"]);

        // The pipe classifier declines JSON (one column), the JSON one takes it.
        let file = schema(classify_text(
            "{\"items\": [{\"x\": true}]}",
            true,
            Compression::None,
            &custom,
        ));
        assert_eq!(
            (file.classification.as_str(), file.classifier.as_deref()),
            ("api-dump", Some("records"))
        );
        assert_eq!(described(&file), ["x:boolean"]);
    }

    #[test]
    fn grok_classifiers_read_log_lines() {
        let logs = classifier(
            "classification: app-log\ngrok: {pattern: '%{TIMESTAMP_ISO8601:at} %{LOGLEVEL:level} %{GREEDYDATA:message}'}",
        );
        let custom = vec![("logs".to_string(), logs)];
        let sample = "2024-01-01T10:00:00Z INFO started\n2024-01-01T10:00:01Z WARN slow disk\n";
        let file = schema(classify_text(sample, true, Compression::None, &custom));
        assert_eq!(
            (file.classification.as_str(), file.format.format),
            ("app-log", DataFormat::Grok)
        );
        assert_eq!(described(&file), ["at:string", "level:string", "message:string"]);
        assert!(
            file.format
                .grok
                .is_some_and(|g| g.pattern.starts_with("%{TIMESTAMP_ISO8601:at}"))
        );

        let Classified::Unclassified(reason) = classify_text(
            "2024-01-01T10:00:00Z INFO ok\nGARBAGE\n",
            true,
            Compression::None,
            &custom,
        ) else {
            panic!("a line that does not match");
        };
        assert!(
            reason.starts_with("classifier logs: line 2 does not match its grok pattern"),
            "{reason}"
        );
    }

    #[test]
    fn unrecognised_files_are_reported_with_every_reason() {
        let pipes = classifier("classification: partner-feed\ncsv: {delimiter: '|'}");
        let custom = vec![("pipes".to_string(), pipes)];
        let Classified::Unclassified(reason) =
            classify_text("just some prose\nwithout columns\n", true, Compression::None, &custom)
        else {
            panic!("prose is not data");
        };
        assert!(
            reason.starts_with("classifier pipes: delimiter '|' gives a single column; not recognised"),
            "{reason}"
        );

        let Classified::Unclassified(reason) = classify_text("a,b\n1,2\n3\n", true, Compression::None, &[]) else {
            panic!("ragged");
        };
        assert_eq!(
            reason,
            "CSV: ragged rows with delimiter ',': line 3 has 1 fields where line 1 has 2"
        );

        let Classified::Unclassified(reason) = classify_text("\n\n", true, Compression::None, &[]) else {
            panic!("blank");
        };
        assert!(reason.starts_with("no data"), "{reason}");
    }
}
