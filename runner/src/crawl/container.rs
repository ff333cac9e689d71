//! Schemas of self-describing container files, read with the engine's own readers: a Parquet
//! file's footer (fetched by range, so a crawl never downloads the data) and an Avro file's
//! header.

use std::io::Cursor;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// How much of a Parquet file's tail is fetched first; most footers fit.
const FOOTER_PREFETCH: u64 = 64 * 1024;

/// A container file's schema and, when the format records it, its row count.
#[derive(Debug, Clone)]
pub struct ContainerSchema {
    /// The Arrow schema the engine reads the file with.
    pub schema: SchemaRef,
    /// Rows in the file (Parquet footers record it).
    pub rows: Option<i64>,
}

/// Why a container file's schema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The Parquet footer is missing or corrupt.
    #[error("corrupt Parquet file: {0}")]
    Parquet(String),
    /// The Avro header is corrupt.
    #[error("corrupt Avro file: {0}")]
    Avro(String),
    /// The store failed while reading the file.
    #[error("reading failed: {0}")]
    Read(#[from] object_store::Error),
}

/// Reads a Parquet file's schema from its footer: one ranged read of the tail, a second one only
/// when the footer is larger than the first read.
pub async fn parquet_schema(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<ContainerSchema, ContainerError> {
    let metadata = read_footer(store.as_ref(), meta, FOOTER_PREFETCH.min(meta.size)).await?;
    let file = metadata.file_metadata();
    let schema = parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map_err(|e| ContainerError::Parquet(e.to_string()))?;
    Ok(ContainerSchema {
        schema: Arc::new(schema),
        rows: Some(file.num_rows()),
    })
}

async fn read_footer(store: &dyn ObjectStore, meta: &ObjectMeta, tail: u64) -> Result<ParquetMetaData, ContainerError> {
    let bytes = store.get_range(&meta.location, meta.size - tail..meta.size).await?;
    let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
    match reader.try_parse_sized(&bytes, meta.size) {
        Ok(()) => reader.finish().map_err(|e| ContainerError::Parquet(e.to_string())),
        Err(ParquetError::NeedMoreData(needed)) if (needed as u64) > tail && (needed as u64) <= meta.size => {
            Box::pin(read_footer(store, meta, needed as u64)).await
        }
        Err(e) => Err(ContainerError::Parquet(e.to_string())),
    }
}

/// Reads an Avro object container file's schema from its header (`head`: the first bytes of the
/// file, enough to hold the header).
pub fn avro_schema(head: &[u8]) -> Result<ContainerSchema, ContainerError> {
    let reader = arrow_avro::reader::ReaderBuilder::new()
        .build(Cursor::new(head))
        .map_err(|e| ContainerError::Avro(e.to_string()))?;
    Ok(ContainerSchema {
        schema: reader.schema(),
        rows: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::DataType;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use parquet::file::properties::WriterProperties;

    use super::*;

    fn batch() -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        RecordBatch::try_from_iter([("id", ids), ("name", names)]).expect("batch")
    }

    async fn meta_of(store: &LocalFileSystem, file: &std::path::Path) -> ObjectMeta {
        store
            .head(&Path::from_absolute_path(file).expect("absolute"))
            .await
            .expect("exists")
    }

    #[tokio::test]
    async fn reads_a_parquet_footer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("part-0.parquet");
        // A long key-value entry makes the footer bigger than the first ranged read.
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                "padding".into(),
                "x".repeat(100_000),
            )]))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).expect("create"),
            batch().schema(),
            Some(properties),
        )
        .expect("writer");
        writer.write(&batch()).expect("write");
        writer.close().expect("close");

        let store = Arc::new(LocalFileSystem::new());
        let meta = meta_of(&store, &file).await;
        let schema = parquet_schema(store, &meta).await.expect("valid footer");
        assert_eq!(schema.rows, Some(3));
        let fields: Vec<(&str, &DataType)> = schema
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(fields, [("id", &DataType::Int64), ("name", &DataType::Utf8)]);
    }

    #[tokio::test]
    async fn a_corrupt_parquet_footer_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("broken.parquet");
        std::fs::write(&file, b"PAR1 this is not a parquet footer at all PAR1").expect("write");
        let store = Arc::new(LocalFileSystem::new());
        let meta = meta_of(&store, &file).await;
        let error = parquet_schema(store, &meta).await.expect_err("corrupt").to_string();
        assert!(error.starts_with("corrupt Parquet file:"), "{error}");
    }

    #[test]
    fn reads_an_avro_header() {
        let mut writer =
            arrow_avro::writer::AvroWriter::new(Vec::<u8>::new(), batch().schema().as_ref().clone()).expect("writer");
        writer.write(&batch()).expect("write");
        writer.finish().expect("finish");
        let bytes = writer.into_inner();
        let schema = avro_schema(&bytes).expect("valid header");
        let names: Vec<&str> = schema.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name"]);

        let error = avro_schema(b"Obj\x01garbage").expect_err("corrupt").to_string();
        assert!(error.starts_with("corrupt Avro file:"), "{error}");
    }
}
