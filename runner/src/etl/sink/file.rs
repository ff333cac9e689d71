//! One output file being written: Parquet through the async Arrow writer, CSV and JSON lines
//! encoded batch by batch, compressed as a whole, and streamed to the store in chunks.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
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

enum Inner {
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
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
            OutputFormat::Parquet(props) => Inner::Parquet(Box::new(AsyncArrowWriter::try_new(
                upload,
                schema,
                Some(props.as_ref().clone()),
            )?)),
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
            Inner::Parquet(w) => w.write(batch).await?,
            Inner::Text(t) => t.write(batch).await?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held in memory for the row group in progress (text files hold none of note).
    pub(crate) fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Parquet(w) => w.in_progress_size(),
            Inner::Text(_) => 0,
        }
    }

    /// The size the file would have if closed now, near enough to decide when to roll over.
    pub(crate) fn size(&self) -> u64 {
        match &self.inner {
            Inner::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
            Inner::Text(t) => t.bytes,
        }
    }

    /// Writes out the row group in progress, freeing its memory.
    pub(crate) async fn flush(&mut self) -> Result<(), FileError> {
        if let Inner::Parquet(w) = &mut self.inner
            && w.in_progress_rows() > 0
        {
            w.flush().await?;
        }
        Ok(())
    }

    /// Finishes the file; returns its size in bytes.
    pub(crate) async fn close(self) -> Result<u64, FileError> {
        match self.inner {
            Inner::Parquet(mut w) => {
                w.finish().await?;
                Ok(w.bytes_written() as u64)
            }
            Inner::Text(t) => t.close().await,
        }
    }

    /// Gives up on the file, aborting a multipart upload that has started so it does not linger.
    pub(crate) async fn abort(self) {
        let mut upload = match self.inner {
            Inner::Parquet(w) => w.into_inner(),
            Inner::Text(t) => t.upload,
        };
        // Best effort: the caller is already failing with the error that matters.
        let _ = upload.abort().await;
    }
}
