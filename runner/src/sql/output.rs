//! Answers as text: an aligned table with a row count (as psql prints), CSV with a header, or a
//! JSON array of objects.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;

use super::Answer;

/// How answers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table and the row count.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
}

/// The answer in `format`.
pub fn render(answer: &Answer, format: Format) -> Result<String, String> {
    // A statement without columns (CREATE VIEW) has nothing to print.
    if answer.schema.fields().is_empty() {
        return Ok(String::new());
    }
    match format {
        Format::Table => {
            let table =
                pretty_format_batches_with_schema(answer.schema.clone(), &answer.batches).map_err(|e| e.to_string())?;
            let rows = answer.rows();
            let noun = if rows == 1 { "row" } else { "rows" };
            Ok(format!("{table}\n({rows} {noun})\n"))
        }
        Format::Csv => {
            let mut buffer = Vec::new();
            {
                let mut writer = WriterBuilder::new().with_header(true).build(&mut buffer);
                let empty = RecordBatch::new_empty(answer.schema.clone());
                // An answer without rows still has its header.
                let batches: Vec<&RecordBatch> = if answer.batches.is_empty() {
                    vec![&empty]
                } else {
                    answer.batches.iter().collect()
                };
                for batch in batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
            }
            String::from_utf8(buffer).map_err(|e| e.to_string())
        }
        Format::Json => {
            let mut buffer = Vec::new();
            {
                let mut writer = ArrayWriter::new(&mut buffer);
                for batch in &answer.batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
                writer.finish().map_err(|e| e.to_string())?;
            }
            let mut text = String::from_utf8(buffer).map_err(|e| e.to_string())?;
            if text.is_empty() {
                text.push_str("[]");
            }
            text.push('\n');
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::sql::catalog::Reads;

    fn answer(rows: usize) -> Answer {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let ids: Vec<Option<i64>> = (0..rows as i64).map(Some).collect();
        let notes: Vec<Option<&str>> = (0..rows).map(|i| (i % 2 == 0).then_some("a,\"b\"")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(notes))],
        )
        .expect("a batch");
        Answer {
            schema,
            batches: if rows == 0 { Vec::new() } else { vec![batch] },
            reads: Some(Reads::default()),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn answers_print_in_each_format_with_or_without_rows() {
        assert_eq!(
            render(&answer(2), Format::Table).expect("table"),
            "+----+-------+\n| id | note  |\n+----+-------+\n| 0  | a,\"b\" |\n| 1  |       |\n+----+-------+\n(2 rows)\n"
        );
        assert_eq!(
            render(&answer(0), Format::Table).expect("table"),
            "+----+------+\n| id | note |\n+----+------+\n+----+------+\n(0 rows)\n"
        );
        assert_eq!(
            render(&answer(2), Format::Csv).expect("csv"),
            "id,note\n0,\"a,\"\"b\"\"\"\n1,\n"
        );
        assert_eq!(render(&answer(0), Format::Csv).expect("csv"), "id,note\n");
        assert_eq!(
            render(&answer(2), Format::Json).expect("json"),
            "[{\"id\":0,\"note\":\"a,\\\"b\\\"\"},{\"id\":1}]\n"
        );
        assert_eq!(render(&answer(0), Format::Json).expect("json"), "[]\n");
        let nothing = Answer {
            schema: Arc::new(Schema::empty()),
            ..answer(0)
        };
        for format in [Format::Table, Format::Csv, Format::Json] {
            assert_eq!(render(&nothing, format).expect("nothing"), "");
        }
    }
}
