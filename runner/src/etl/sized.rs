//! Statistics for text sources. DataFusion knows nothing of a CSV or JSON-lines file before it
//! reads it (`Statistics::new_unknown`), so a join between two of them keeps the order the SQL
//! wrote: `lineitem JOIN orders` built its hash table from all of lineitem, four times the size
//! of the other side, in memory. Each file's statistics here are its size in bytes and a number
//! of rows estimated from it, both inexact, so the planner builds on the smaller side as it does
//! for Parquet, whose footers say. Both are needed: operators such as a window drop the byte
//! size and keep the rows, and the planner compares rows when either side lacks bytes.
//!
//! The row estimate divides the file's size by the width a row of the table's schema takes as
//! text, from a typical width per type (as PostgreSQL's planner estimates tuple widths). It only
//! has to rank the two sides of a join, and a wrong ranking costs memory, never rows.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_plan::ExecutionPlan;
use object_store::{ObjectMeta, ObjectStore};

/// A text format whose files' statistics are estimated from their sizes (see the module's
/// comment); reading is the wrapped format's.
#[derive(Debug)]
pub struct SizedByBytes {
    format: Arc<dyn FileFormat>,
    layout: TextLayout,
}

/// How a text format lays out a row, for the width estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLayout {
    /// Values separated by one delimiter, a newline at the end.
    Delimited,
    /// One JSON object per line: every value is preceded by its quoted key.
    JsonLines,
}

impl SizedByBytes {
    /// `format` read as it reads, with statistics estimated for `layout`.
    pub fn new(format: Arc<dyn FileFormat>, layout: TextLayout) -> Self {
        Self { format, layout }
    }
}

/// The width in bytes a row of `schema` typically takes written as text in `layout`; at least 1.
pub fn estimated_row_width(schema: &SchemaRef, layout: TextLayout) -> usize {
    let values: usize = schema
        .fields()
        .iter()
        .map(|field| {
            let value = estimated_text_width(field.data_type());
            match layout {
                // The value and its delimiter.
                TextLayout::Delimited => value + 1,
                // "key":value, with quotes around strings.
                TextLayout::JsonLines => field.name().len() + 4 + value,
            }
        })
        .sum();
    values.max(1)
}

/// A typical width of one value of `data_type` as text: TPC-H's and the example pipeline's
/// columns are close to these (an integer key of six digits, a price with two decimals).
fn estimated_text_width(data_type: &DataType) -> usize {
    match data_type {
        DataType::Boolean => 5,
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 | DataType::Int64 | DataType::UInt64 => 7,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => 9,
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => 9,
        DataType::Date32 | DataType::Date64 => 10,
        DataType::Timestamp(..) => 20,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 20,
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => {
            // A few elements, each with its separator.
            4 * (estimated_text_width(item.data_type()) + 1)
        }
        DataType::Struct(fields) => fields
            .iter()
            .map(|f| f.name().len() + 4 + estimated_text_width(f.data_type()))
            .sum::<usize>()
            .max(2),
        _ => 10,
    }
}

#[async_trait]
impl FileFormat for SizedByBytes {
    fn get_ext(&self) -> String {
        self.format.get_ext()
    }

    fn get_ext_with_compression(&self, compression: &FileCompressionType) -> Result<String> {
        self.format.get_ext_with_compression(compression)
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        self.format.compression_type()
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[ObjectMeta],
    ) -> Result<SchemaRef> {
        self.format.infer_schema(state, store, objects).await
    }

    async fn infer_stats(
        &self,
        _state: &dyn Session,
        _store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<Statistics> {
        // Compressed files are smaller than what they hold; a ranking of the sides of a join
        // between sources compressed alike still holds.
        let size = usize::try_from(object.size).unwrap_or(usize::MAX);
        let rows = size / estimated_row_width(&table_schema, self.layout);
        Ok(Statistics::new_unknown(&table_schema)
            .with_total_byte_size(Precision::Inexact(size))
            .with_num_rows(Precision::Inexact(rows)))
    }

    async fn create_physical_plan(&self, state: &dyn Session, conf: FileScanConfig) -> Result<Arc<dyn ExecutionPlan>> {
        self.format.create_physical_plan(state, conf).await
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        self.format.file_source(table_schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::file_format::csv::CsvFormat;
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// The table a hash join builds on when `big` (4,000 wide rows) is joined, as the SQL writes
    /// it, to the latest version of each row of `small` (1,000 narrow rows), as curate does: the
    /// window over `small` keeps its row count and drops its byte size.
    async fn build_side(sized: bool) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: String = std::iter::once("k,v,note\n".to_string())
            .chain((0..4000).map(|i| format!("{},{i},a note about line {i}\n", i % 1000)))
            .collect();
        let small: String = std::iter::once("k,version\n".to_string())
            .chain((0..1000).map(|i| format!("{i},1\n")))
            .collect();
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        for (name, body) in [("big", big), ("small", small)] {
            let folder = dir.path().join(name);
            std::fs::create_dir(&folder).expect("folder");
            std::fs::write(folder.join(format!("{name}.csv")), body).expect("write");
            let csv: Arc<dyn FileFormat> = Arc::new(CsvFormat::default().with_has_header(true));
            let format: Arc<dyn FileFormat> = if sized {
                Arc::new(SizedByBytes::new(csv, TextLayout::Delimited))
            } else {
                csv
            };
            let url = ListingTableUrl::parse(format!("{}/", folder.display())).expect("url");
            let config = ListingTableConfig::new(url)
                .with_listing_options(ListingOptions::new(format).with_file_extension(".csv"))
                .infer_schema(&ctx.state())
                .await
                .expect("schema");
            ctx.register_table(name, Arc::new(ListingTable::try_new(config).expect("table")))
                .expect("register");
        }
        let plan = ctx
            .sql(
                "SELECT * FROM big JOIN (
                   SELECT * FROM (
                     SELECT k, row_number() OVER (PARTITION BY k ORDER BY version DESC) AS n FROM small
                   ) WHERE n = 1
                 ) latest ON big.k = latest.k",
            )
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plan");
        let text = displayable(plan.as_ref()).indent(true).to_string();
        // The join's first child, printed first below it, is the side it builds on.
        let join = text.find("HashJoinExec").expect("a hash join");
        let scan = text[join..].find("DataSourceExec").expect("a scan below the join");
        let line = text[join + scan..].lines().next().unwrap_or_default();
        ["small.csv", "big.csv"]
            .into_iter()
            .find(|file| line.contains(file))
            .map_or_else(|| line.to_string(), |file| file.trim_end_matches(".csv").to_string())
    }

    #[tokio::test]
    async fn a_join_of_text_sources_builds_on_the_smaller_side() {
        assert_eq!(build_side(true).await, "small");
        // What the statistics change: without them the join builds on the side the SQL names
        // first, however large.
        assert_eq!(build_side(false).await, "big");
    }

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn a_row_width_counts_each_value_and_its_delimiter_or_key() {
        let two = schema(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("day", DataType::Date32, true),
        ]);
        assert_eq!(estimated_row_width(&two, TextLayout::Delimited), 8 + 11);
        // "id":1234567, "day":"2024-01-01"
        assert_eq!(
            estimated_row_width(&two, TextLayout::JsonLines),
            (2 + 4 + 7) + (3 + 4 + 10)
        );
        assert_eq!(estimated_row_width(&schema(vec![]), TextLayout::Delimited), 1);
    }

    #[test]
    fn a_wider_schema_gives_fewer_rows_for_the_same_bytes() {
        let narrow = schema(vec![Field::new("k", DataType::Int64, false)]);
        let wide = schema(
            (0..16)
                .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
                .collect(),
        );
        assert!(
            estimated_row_width(&wide, TextLayout::Delimited)
                > 10 * estimated_row_width(&narrow, TextLayout::Delimited)
        );
    }
}
