//! One output file being written: Parquet through the async Arrow writer, CSV and JSON lines
//! encoded batch by batch, compressed as a whole, and streamed to the store in chunks.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::LineDelimitedWriter;
use kglue_crds::common::{Compression, CsvOptions, DataFormat, FormatSpec};
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression as ParquetCompression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// The largest dictionary page a Parquet column chunk builds before it falls back to plain
/// encoding. arrow-rs defaults to 1 MiB; then a high-cardinality column (a comment, a price)
/// interns hundreds of thousands of values per chunk before giving up, which took 38 % of the CPU
/// of the TPC-H lineitem benchmark (docs/benchmarks.md). 32 KiB keeps dictionaries for the
/// columns they suit (flags, codes, dates, a few thousand short strings), gives up early on the
/// others, and made that job 1.4× faster with 8 % smaller files.
pub const DICTIONARY_PAGE_LIMIT_BYTES: usize = 32 * 1024;

/// A failure while encoding or uploading one file.
pub(crate) type FileError = Box<dyn std::error::Error + Send + Sync>;

/// How output files are encoded, checked once per sink.
#[derive(Debug, Clone)]
pub(crate) enum OutputFormat {
    /// Parquet with these properties.
    Parquet(Arc<WriterProperties>),
    /// Delimited text.
    Csv(CsvSettings, TextCompression),
    /// JSON lines.
    Json(TextCompression),
}

/// The CSV options of the spec, as bytes.
#[derive(Debug, Clone)]
pub(crate) struct CsvSettings {
    header: bool,
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    null_value: Option<String>,
}

/// Whole-file compression of text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextCompression {
    /// Plain text.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// bzip2 (`.bz2`).
    Bzip2,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`).
    Zstd,
}

impl TextCompression {
    fn suffix(self) -> &'static str {
        match self {
            TextCompression::None => "",
            TextCompression::Gzip => ".gz",
            TextCompression::Bzip2 => ".bz2",
            TextCompression::Xz => ".xz",
            TextCompression::Zstd => ".zst",
        }
    }
}

impl OutputFormat {
    /// The encoding `spec` asks for, or why a sink cannot write it.
    pub(crate) fn from_spec(spec: &FormatSpec) -> Result<Self, String> {
        match spec.format {
            DataFormat::Parquet => {
                let codec = match spec.compression {
                    None | Some(Compression::Snappy) => ParquetCompression::SNAPPY,
                    Some(Compression::None) => ParquetCompression::UNCOMPRESSED,
                    Some(Compression::Gzip) => ParquetCompression::GZIP(GzipLevel::default()),
                    Some(Compression::Zstd) => ParquetCompression::ZSTD(ZstdLevel::default()),
                    Some(Compression::Lz4) => ParquetCompression::LZ4_RAW,
                    Some(other) => {
                        return Err(format!(
                            "Parquet cannot use compression {other:?}; use None, Snappy, Gzip, Zstd or Lz4"
                        ));
                    }
                };
                let props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_created_by(format!("kglue {}", env!("CARGO_PKG_VERSION")))
                    .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT_BYTES)
                    .build();
                Ok(OutputFormat::Parquet(Arc::new(props)))
            }
            DataFormat::Csv => {
                let compression = text_compression(spec.compression)?;
                let options = spec.csv.clone().unwrap_or_default();
                Ok(OutputFormat::Csv(csv_settings(&options)?, compression))
            }
            DataFormat::Json => {
                if let Some(path) = spec.json.as_ref().and_then(|j| j.json_path.as_deref()) {
                    return Err(format!(
                        "a sink writes JSON lines (one record per line); jsonPath {path:?} describes another layout, unset it"
                    ));
                }
                Ok(OutputFormat::Json(text_compression(spec.compression)?))
            }
            other => Err(format!("a sink writes Parquet, Csv or Json, not {other:?}")),
        }
    }

    /// The file name extension, with the compression suffix of text files.
    pub(crate) fn extension(&self) -> String {
        match self {
            OutputFormat::Parquet(_) => "parquet".to_string(),
            OutputFormat::Csv(_, c) => format!("csv{}", c.suffix()),
            OutputFormat::Json(c) => format!("json{}", c.suffix()),
        }
    }
}

fn text_compression(compression: Option<Compression>) -> Result<TextCompression, String> {
    Ok(match compression {
        None | Some(Compression::None) => TextCompression::None,
        Some(Compression::Gzip) => TextCompression::Gzip,
        Some(Compression::Bzip2) => TextCompression::Bzip2,
        Some(Compression::Xz) => TextCompression::Xz,
        Some(Compression::Zstd) => TextCompression::Zstd,
        Some(other) => {
            return Err(format!(
                "text output cannot use compression {other:?}; use None, Gzip, Bzip2, Xz or Zstd"
            ));
        }
    })
}

fn csv_settings(options: &CsvOptions) -> Result<CsvSettings, String> {
    let byte = |name: &str, value: &Option<String>, default: Option<u8>| -> Result<Option<u8>, String> {
        match value.as_deref() {
            None => Ok(default),
            Some(s) if s.len() == 1 => Ok(s.bytes().next()),
            Some(s) => Err(format!(
                "csv {name} {s:?} must be one single-byte character to write files"
            )),
        }
    };
    Ok(CsvSettings {
        header: options.header.unwrap_or(true),
        delimiter: byte("delimiter", &options.delimiter, Some(b','))?.unwrap_or(b','),
        quote: byte("quote", &options.quote, Some(b'"'))?.unwrap_or(b'"'),
        escape: byte("escape", &options.escape, None)?,
        null_value: options.null_value.clone(),
    })
}

/// Accumulates compressed (or plain) output until it is handed to the upload.
enum Encoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Bzip2(bzip2::write::BzEncoder<Vec<u8>>),
    Xz(liblzma::write::XzEncoder<Vec<u8>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoder {
    fn new(compression: TextCompression) -> io::Result<Self> {
        Ok(match compression {
            TextCompression::None => Encoder::Plain(Vec::new()),
            TextCompression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            TextCompression::Bzip2 => {
                Encoder::Bzip2(bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default()))
            }
            TextCompression::Xz => Encoder::Xz(liblzma::write::XzEncoder::new(Vec::new(), 6)),
            TextCompression::Zstd => Encoder::Zstd(Box::new(zstd::stream::write::Encoder::new(Vec::new(), 3)?)),
        })
    }

    /// The output produced so far, leaving the encoder to go on appending.
    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Plain(v) => v,
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Bzip2(e) => e.get_mut(),
            Encoder::Xz(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        })
    }

    /// The rest of the output, with the compression trailer.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Plain(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(v) => v.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(v) => {
                v.extend_from_slice(buf);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Bzip2(e) => e.write_all(buf),
            Encoder::Xz(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush would cut compressed blocks short; output is taken by `take_output` instead.
        Ok(())
    }
}

/// A text file being written.
struct TextFile {
    csv: Option<CsvSettings>,
    encoder: Encoder,
    upload: BufWriter,
    bytes: u64,
    started: bool,
}

impl TextFile {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        match &self.csv {
            Some(settings) => {
                let mut builder = CsvWriterBuilder::new()
                    .with_header(settings.header && !self.started)
                    .with_delimiter(settings.delimiter)
                    .with_quote(settings.quote);
                if let Some(escape) = settings.escape {
                    builder = builder.with_escape(escape).with_double_quote(false);
                }
                if let Some(null) = &settings.null_value {
                    builder = builder.with_null(null.clone());
                }
                let mut writer = builder.build(&mut self.encoder);
                writer.write(batch)?;
            }
            None => {
                let mut writer = LineDelimitedWriter::new(&mut self.encoder);
                writer.write(batch)?;
                writer.finish()?;
            }
        }
        self.started = true;
        let chunk = self.encoder.take_output();
        self.send(chunk).await
    }

    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), FileError> {
        if !chunk.is_empty() {
            self.bytes += chunk.len() as u64;
            self.upload.put(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    async fn close(mut self) -> Result<u64, FileError> {
        let encoder = std::mem::replace(&mut self.encoder, Encoder::Plain(Vec::new()));
        let rest = encoder.finish()?;
        self.send(rest).await?;
        shutdown(&mut self.upload).await?;
        Ok(self.bytes)
    }
}

async fn shutdown(upload: &mut BufWriter) -> io::Result<()> {
    use tokio::io::AsyncWrite;
    futures::future::poll_fn(|cx| std::pin::Pin::new(&mut *upload).poll_shutdown(cx)).await
}

/// Rows gathered per Parquet write. A partitioned sink hands each file a few dozen rows of every
/// input batch (TPC-H lineitem by ship month: about 100 of each 8,192), and the Parquet writer
/// pays per call and per column (levels, statistics, page checks, a mini-batch of its own), so
/// small pieces are gathered first: 1,024 rows is its mini-batch (`write_batch_size`). Gathering
/// made the TPC-H transcode and curate jobs about a fifth faster (docs/benchmarks.md).
const PARQUET_WRITE_ROWS: usize = 1024;

/// Pieces a file holds before it copies them into one batch. Pieces are slices of the sink's
/// partitioned input batches, and a slice keeps its whole batch in memory; a partition that gets
/// a few rows now and then would otherwise keep up to [`PARQUET_WRITE_ROWS`] batches alive.
const GATHERED_PIECES: usize = 16;

/// A Parquet file being written: small pieces gathered into batches of about
/// [`PARQUET_WRITE_ROWS`] rows, then encoded.
struct ParquetFile {
    writer: AsyncArrowWriter<BufWriter>,
    schema: SchemaRef,
    gathered: Vec<RecordBatch>,
    gathered_rows: usize,
    /// The memory of the gathered rows themselves (not of the batches they are slices of).
    gathered_bytes: usize,
}

impl ParquetFile {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        if self.gathered.is_empty() && batch.num_rows() >= PARQUET_WRITE_ROWS {
            // Already large: encoded as it is, not copied.
            return Ok(self.writer.write(batch).await?);
        }
        self.gathered_rows += batch.num_rows();
        self.gathered_bytes += slice_bytes(batch);
        self.gathered.push(batch.clone());
        if self.gathered_rows >= PARQUET_WRITE_ROWS {
            let batch = self.take_gathered()?;
            self.writer.write(&batch).await?;
        } else if self.gathered.len() >= GATHERED_PIECES {
            let compact = self.take_gathered()?;
            self.gathered_rows = compact.num_rows();
            self.gathered_bytes = slice_bytes(&compact);
            self.gathered.push(compact);
        }
        Ok(())
    }

    /// The gathered rows as one batch of their own, leaving none gathered.
    fn take_gathered(&mut self) -> Result<RecordBatch, FileError> {
        let batch = concat_batches(&self.schema, &self.gathered)?;
        self.gathered.clear();
        self.gathered_rows = 0;
        self.gathered_bytes = 0;
        Ok(batch)
    }

    /// Encodes the rows still gathered.
    async fn write_gathered(&mut self) -> Result<(), FileError> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let batch = self.take_gathered()?;
        Ok(self.writer.write(&batch).await?)
    }
}

/// The bytes of `batch`'s own rows, not of the buffers it may be a slice of.
fn slice_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| column.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

enum Inner {
    Parquet(Box<ParquetFile>),
    Text(Box<TextFile>),
}

/// An output file being written. Dropping it without [`FileWriter::close`] loses the file.
pub(crate) struct FileWriter {
    inner: Inner,
    rows: u64,
}

impl FileWriter {
    /// Starts a file at `path`. Nothing reaches the store before the first part is full or the
    /// file is closed.
    pub(crate) fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
        format: &OutputFormat,
        schema: SchemaRef,
        upload_buffer_bytes: usize,
    ) -> Result<Self, FileError> {
        // Each part of a multipart upload is held in memory until sent; two in flight per file
        // keep an upload busy without letting many open files hold many parts each.
        let upload = BufWriter::with_capacity(store, path, upload_buffer_bytes).with_max_concurrency(2);
        let inner = match format {
            OutputFormat::Parquet(props) => Inner::Parquet(Box::new(ParquetFile {
                writer: AsyncArrowWriter::try_new(upload, Arc::clone(&schema), Some(props.as_ref().clone()))?,
                schema,
                gathered: Vec::new(),
                gathered_rows: 0,
                gathered_bytes: 0,
            })),
            OutputFormat::Csv(settings, compression) => Inner::Text(Box::new(TextFile {
                csv: Some(settings.clone()),
                encoder: Encoder::new(*compression)?,
                upload,
                bytes: 0,
                started: false,
            })),
            OutputFormat::Json(compression) => Inner::Text(Box::new(TextFile {
                csv: None,
                encoder: Encoder::new(*compression)?,
                upload,
                bytes: 0,
                started: false,
            })),
        };
        Ok(FileWriter { inner, rows: 0 })
    }

    /// Appends the rows of `batch`.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        match &mut self.inner {
            Inner::Parquet(p) => p.write(batch).await?,
            Inner::Text(t) => t.write(batch).await?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held in memory: the rows gathered and the row group in progress (text files hold
    /// none of note).
    pub(crate) fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Parquet(p) => p.gathered_bytes + p.writer.in_progress_size(),
            Inner::Text(_) => 0,
        }
    }

    /// The size the file would have if closed now, near enough to decide when to roll over.
    pub(crate) fn size(&self) -> u64 {
        match &self.inner {
            Inner::Parquet(p) => (p.writer.bytes_written() + p.writer.in_progress_size()) as u64,
            Inner::Text(t) => t.bytes,
        }
    }

    /// Writes out the rows gathered and the row group in progress, freeing their memory.
    pub(crate) async fn flush(&mut self) -> Result<(), FileError> {
        if let Inner::Parquet(p) = &mut self.inner {
            p.write_gathered().await?;
            if p.writer.in_progress_rows() > 0 {
                p.writer.flush().await?;
            }
        }
        Ok(())
    }

    /// Finishes the file; returns its size in bytes.
    pub(crate) async fn close(self) -> Result<u64, FileError> {
        match self.inner {
            Inner::Parquet(mut p) => {
                p.write_gathered().await?;
                p.writer.finish().await?;
                Ok(p.writer.bytes_written() as u64)
            }
            Inner::Text(t) => t.close().await,
        }
    }

    /// Gives up on the file, aborting a multipart upload that has started so it does not linger.
    pub(crate) async fn abort(self) {
        let mut upload = match self.inner {
            Inner::Parquet(p) => p.writer.into_inner(),
            Inner::Text(t) => t.upload,
        };
        // Best effort: the caller is already failing with the error that matters.
        let _ = upload.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use object_store::local::LocalFileSystem;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    /// A batch of the input size, ids `first..first + 8192`.
    fn input_batch(first: i64) -> RecordBatch {
        let ids: Vec<i64> = (first..first + 8192).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
        )
        .expect("batch")
    }

    fn gathered(file: &FileWriter) -> &ParquetFile {
        match &file.inner {
            Inner::Parquet(p) => p,
            Inner::Text(_) => panic!("a Parquet file"),
        }
    }

    /// Whether `piece`'s ids are stored inside `parent`'s buffer (a slice of it).
    fn shares_buffer(piece: &RecordBatch, parent: &RecordBatch) -> bool {
        let ids = |b: &RecordBatch| b.column(0).to_data().buffers()[0].clone();
        let (piece, parent) = (ids(piece), ids(parent));
        let start = parent.as_ptr() as usize;
        (start..start + parent.len()).contains(&(piece.as_ptr() as usize))
    }

    #[tokio::test]
    async fn small_pieces_are_gathered_compacted_and_written_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
        let format = OutputFormat::from_spec(&FormatSpec {
            format: DataFormat::Parquet,
            compression: None,
            csv: None,
            json: None,
            grok: None,
            kafka: None,
        })
        .expect("format");
        let mut file = FileWriter::open(
            Arc::clone(&store),
            Path::from("out.parquet"),
            &format,
            schema(),
            5 << 20,
        )
        .expect("open");
        let mut expected = Vec::new();

        // A partition that gets 5 rows of each input batch, as a rare partition does.
        let parents: Vec<RecordBatch> = (0..GATHERED_PIECES as i64 + 3).map(|n| input_batch(n * 8192)).collect();
        for (n, parent) in parents.iter().enumerate() {
            let piece = parent.slice(100, 5);
            expected.extend(100 + n as i64 * 8192..105 + n as i64 * 8192);
            file.write(&piece).await.expect("write");
            let held = gathered(&file);
            assert!(
                held.gathered.len() < GATHERED_PIECES,
                "pieces are compacted: {}",
                held.gathered.len()
            );
            if n == GATHERED_PIECES - 1 {
                assert_eq!(held.gathered.len(), 1);
                assert!(
                    parents.iter().all(|p| !shares_buffer(&held.gathered[0], p)),
                    "the compacted rows are a copy, no longer a slice of an input batch"
                );
            }
        }
        // What is counted is the rows held, not the input batches they are slices of.
        let held_rows = gathered(&file).gathered_rows;
        assert_eq!(held_rows, (GATHERED_PIECES + 3) * 5);
        assert!(
            (8 * held_rows..100 * held_rows).contains(&file.buffered()),
            "{} bytes counted for {held_rows} rows",
            file.buffered()
        );

        // A larger piece completes a write; a whole batch with nothing gathered goes as it is.
        file.write(&parents[0].slice(2000, 1500)).await.expect("write");
        expected.extend(2000..3500);
        assert!(gathered(&file).gathered.is_empty(), "the gathered rows were encoded");
        file.write(&parents[1]).await.expect("write");
        expected.extend(8192..16384);
        file.write(&parents[2].slice(7, 1)).await.expect("write");
        expected.push(16384 + 7);
        assert_eq!(file.rows(), expected.len() as u64);
        file.close().await.expect("close");

        let bytes = std::fs::read(dir.path().join("out.parquet")).expect("file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .expect("parquet")
            .build()
            .expect("reader");
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for batch in reader {
            let batch = batch.expect("batch");
            let id = batch.column(0).as_any().downcast_ref::<Int64Array>().expect("ids");
            let name = batch.column(1).as_any().downcast_ref::<StringArray>().expect("names");
            ids.extend(id.values().iter().copied());
            names.extend((0..name.len()).map(|i| name.value(i).to_string()));
        }
        assert_eq!(ids, expected, "every row once, in the order written");
        assert!(ids.iter().zip(&names).all(|(i, n)| *n == format!("name-{i}")));
    }
}
