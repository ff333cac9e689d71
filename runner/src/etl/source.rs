//! A job's sources: what to read (a catalog table or files at a location), which objects a run
//! reads (its bookmark decides), and their registration as tables of the run's SQL session.
//!
//! The runner lists every source itself, once per run: the listing is what the bookmark is
//! computed from, so the session must read exactly those objects — not a second, later listing
//! (brief §7: a long-lived list-files cache can also hide new files). Each source's store is
//! therefore wrapped in a [`SelectedStore`] that lists only the objects the run selected and is
//! registered under its own `kglue://source-N` URL; DataFusion's listing table does the rest
//! (partition values from Hive folders, partition pruning, splitting large files for parallel
//! scans), and the URL tells the run's metrics which source a scan belongs to.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{Compression, DataFormat, FormatSpec};
use kglue_crds::glue_type::GlueType;

use crate::crawl::text_type::infer_text;
use kglue_crds::job::SourceBookmark;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use super::bookmark::{self, Seen};
use super::inspect::{bad_json_line, compressions, panic_message};
use super::sized::{SizedByBytes, TextLayout};
use super::types::to_arrow;
use crate::crawl::infer::from_arrow;
use crate::crawl::listing::{Exclusions, ListingError, SkipReason, list_target};
use crate::storage::Location;

/// How many objects a source's schema is inferred from when no Table declares it.
const SCHEMA_SAMPLE_OBJECTS: usize = 16;

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's location could not be listed.
    #[error("source {source_name}: {error}")]
    Listing {
        /// The source.
        source_name: String,
        /// The listing error (names the location).
        error: ListingError,
    },
    /// The format cannot be read by jobs.
    #[error("source {source_name}: {reason}")]
    Unsupported {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// An object of a partitioned table is not inside `key=value` folders for the table's keys;
    /// reading on would silently drop it.
    #[error(
        "source {source_name}: object {url} is not in the table's partition folders ({expected}); move it or remove it from the location"
    )]
    OutsidePartitions {
        /// The source.
        source_name: String,
        /// The object.
        url: String,
        /// The folder pattern expected.
        expected: String,
    },
    /// A zero-byte object where the format has no empty files (Parquet): an upload cut short, or
    /// a file written by mistake. Text formats read it as no rows.
    #[error(
        "source {source_name}: object {url} is empty (0 bytes), which is not a {format:?} file; remove it or write it again"
    )]
    EmptyObject {
        /// The source.
        source_name: String,
        /// The object.
        url: String,
        /// The source's format.
        format: DataFormat,
    },
    /// The objects of a text source are not all in one compression (read from their bytes).
    #[error(
        "source {source_name}: its objects are in different compressions ({examples}); keep one compression per location, or declare it and land objects that match"
    )]
    MixedCompression {
        /// The source.
        source_name: String,
        /// An object of each compression found.
        examples: String,
    },
    /// An object's first bytes could not be read to tell its compression.
    #[error("source {source_name}: reading the start of {url}: {source}")]
    Sniff {
        /// The source.
        source_name: String,
        /// The location.
        url: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Nothing to read and nothing to infer a schema from.
    #[error(
        "source {source_name}: no objects at {location}, so there is no schema to read with; land data first or read a catalog table"
    )]
    NoObjects {
        /// The source.
        source_name: String,
        /// Its location.
        location: String,
    },
    /// The engine refused the source (schema inference, registration).
    #[error("source {source_name}: {message}")]
    Engine {
        /// The source.
        source_name: String,
        /// What the engine said.
        message: String,
    },
}

/// A source as the run reads it: where, in which format, with which schema.
#[derive(Debug, Clone)]
pub struct SourceInput {
    /// The source's name in the job (the SQL table name and bookmark key).
    pub name: String,
    /// Where its objects are.
    pub location: Location,
    /// The store that serves the location.
    pub store: Arc<dyn ObjectStore>,
    /// The Connection the store is reached through (an executor of a distributed run opens it).
    pub connection: Option<String>,
    /// Format and format options.
    pub format: FormatSpec,
    /// The columns of the data files, when a Table declares them; inferred from the data otherwise.
    pub file_schema: Option<SchemaRef>,
    /// Partition keys, outermost first, with their types; `None` for a storage source, whose Hive
    /// folders (if any) are detected from the listing.
    pub partition_keys: Option<Vec<Field>>,
}

/// The objects of one source a run reads.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Every object at the location (markers and hidden files aside), in key order.
    pub listed: Vec<ObjectMeta>,
    /// Indices into `listed` of the objects this run reads.
    pub selected: Vec<usize>,
    /// When the listing started: the next bookmark's watermark.
    pub listed_at: Timestamp,
    /// The source's bookmark after this run, had it processed everything selected.
    pub next: SourceBookmark,
    /// New objects left for a later run, to keep the bookmark bounded (`bookmark::pick`).
    pub deferred: usize,
}

impl Selection {
    /// The objects this run reads.
    pub fn selected(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.selected.iter().map(|&i| &self.listed[i])
    }

    /// Bytes of the objects this run reads.
    pub fn selected_bytes(&self) -> u64 {
        self.selected().map(|m| m.size).sum()
    }

    /// The bookmark after this run, had it processed everything selected.
    pub fn next_bookmark(&self) -> SourceBookmark {
        self.next.clone()
    }
}

fn seen(meta: &ObjectMeta) -> Seen<'_> {
    Seen {
        key: meta.location.as_ref(),
        modified_micros: meta.last_modified.timestamp_micros(),
    }
}

/// Lists a source and picks the objects to read: all of them without a bookmark, otherwise those
/// the bookmark has not seen (`bookmark::pick`; `key_budget` is `Some` when the run moves the
/// bookmark).
pub async fn select(
    input: &SourceInput,
    bookmark: Option<&SourceBookmark>,
    band_seconds: i64,
    key_budget: Option<usize>,
) -> Result<Selection, SourceError> {
    let listed_at = Timestamp::now();
    let no_exclusions = Exclusions::new(&[]).map_err(|error| SourceError::Listing {
        source_name: input.name.clone(),
        error,
    })?;
    let listing = list_target(input.store.as_ref(), &input.location, &no_exclusions)
        .await
        .map_err(|error| SourceError::Listing {
            source_name: input.name.clone(),
            error,
        })?;
    // A zero-byte object of a text format is a file with no rows, left out as the crawler leaves
    // it; Parquet has no empty files, so one fails the run by name rather than vanish unread.
    if input.format.format == DataFormat::Parquet
        && let Some((meta, _)) = listing.skipped.iter().find(|(_, reason)| *reason == SkipReason::Empty)
    {
        return Err(SourceError::EmptyObject {
            source_name: input.name.clone(),
            url: input.location.url_of(&meta.location),
            format: input.format.format,
        });
    }
    let listed: Vec<ObjectMeta> = listing.objects.into_iter().map(|l| l.meta).collect();
    let seen_objects: Vec<Seen<'_>> = listed.iter().map(seen).collect();
    let picked = bookmark::pick(&seen_objects, bookmark, listed_at, band_seconds, key_budget);
    Ok(Selection {
        listed,
        selected: picked.selected,
        listed_at,
        next: picked.next,
        deferred: picked.deferred,
    })
}

/// The engine's settings every session that reads sources needs. A source reads the objects it
/// selected wherever they sit below its location: the engine's default (like Hive) skips files in
/// sub-folders that are not `key=value` partition folders (`2024/05/01/part.csv`), which read as
/// no rows at all while the bookmark moved past them.
pub fn reading_sources(mut config: SessionConfig) -> SessionConfig {
    config.options_mut().execution.listing_table_ignore_subdirectory = false;
    config
}

/// Settles the compression of a text source whose spec does not declare one, from the bytes of
/// the objects the run reads (or, reading none, those its schema is inferred from): one
/// compression for all of them, or an error naming one object of each.
pub async fn settle_compression(input: &mut SourceInput, selection: &Selection) -> Result<(), SourceError> {
    let text = matches!(input.format.format, DataFormat::Csv | DataFormat::Json);
    if !text || input.format.compression.is_some() {
        return Ok(());
    }
    let mut objects: Vec<&ObjectMeta> = selection.selected().collect();
    if objects.is_empty() {
        objects = schema_sample(selection);
    }
    let found = compressions(input.store.as_ref(), objects)
        .await
        .map_err(|source| SourceError::Sniff {
            source_name: input.name.clone(),
            url: input.location.to_string(),
            source: Box::new(source),
        })?;
    let mut kinds: Vec<(Compression, String)> = Vec::new();
    for (meta, compression) in found {
        if !kinds.iter().any(|(kind, _)| *kind == compression) {
            kinds.push((compression, input.location.url_of(&meta.location)));
        }
    }
    match kinds.as_slice() {
        [] => Ok(()),
        [(compression, _)] => {
            input.format.compression = Some(*compression);
            Ok(())
        }
        _ => Err(SourceError::MixedCompression {
            source_name: input.name.clone(),
            examples: kinds
                .iter()
                .map(|(kind, url)| format!("{url} is {kind:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The objects a source's schema is inferred from when the run reads none: the newest listed.
fn schema_sample(selection: &Selection) -> Vec<&ObjectMeta> {
    let mut sample: Vec<&ObjectMeta> = selection.listed.iter().collect();
    sample.sort_by_key(|m| std::cmp::Reverse(m.last_modified));
    sample.truncate(SCHEMA_SAMPLE_OBJECTS);
    sample
}

/// The DataFusion file format of a source.
pub fn file_format(name: &str, format: &FormatSpec) -> Result<Arc<dyn FileFormat>, SourceError> {
    let unsupported = |reason: &str| SourceError::Unsupported {
        source_name: name.to_string(),
        reason: reason.to_string(),
    };
    let compression = match format.compression {
        None | Some(Compression::None) => FileCompressionType::UNCOMPRESSED,
        Some(Compression::Gzip) => FileCompressionType::GZIP,
        Some(Compression::Bzip2) => FileCompressionType::BZIP2,
        Some(Compression::Xz) => FileCompressionType::XZ,
        Some(Compression::Zstd) => FileCompressionType::ZSTD,
        // Parquet's codecs live inside the file; the reader handles every one of them.
        Some(Compression::Snappy | Compression::Lz4) => FileCompressionType::UNCOMPRESSED,
    };
    match format.format {
        DataFormat::Parquet => Ok(Arc::new(ParquetFormat::default())),
        DataFormat::Csv => {
            let options = format.csv.clone().unwrap_or_default();
            let byte = |field: &str, value: &Option<String>, default: u8| -> Result<u8, SourceError> {
                match value.as_deref() {
                    None => Ok(default),
                    Some(text) if text.len() == 1 => Ok(text.as_bytes()[0]),
                    Some(text) => Err(unsupported(&format!(
                        "csv.{field} {text:?} must be a single one-byte character"
                    ))),
                }
            };
            let mut csv = CsvFormat::default()
                .with_has_header(options.header.unwrap_or(true))
                .with_delimiter(byte("delimiter", &options.delimiter, b',')?)
                .with_quote(byte("quote", &options.quote, b'"')?)
                .with_file_compression_type(compression);
            if options.escape.is_some() {
                csv = csv.with_escape(Some(byte("escape", &options.escape, b'\\')?));
            }
            if let Some(null) = &options.null_value {
                csv = csv.with_null_regex(Some(format!("^{}$", regex::escape(null))));
            }
            Ok(Arc::new(SizedByBytes::new(Arc::new(csv), TextLayout::Delimited)))
        }
        DataFormat::Json => {
            if format.json.as_ref().is_some_and(|j| j.json_path.is_some()) {
                return Err(unsupported(
                    "json.jsonPath is not supported by job sources yet: jobs read JSON lines (one record per line)",
                ));
            }
            Ok(Arc::new(SizedByBytes::new(
                Arc::new(JsonFormat::default().with_file_compression_type(compression)),
                TextLayout::JsonLines,
            )))
        }
        DataFormat::Kafka => Err(unsupported(
            "format Kafka is a topic: a streaming job reads it (spec.streaming), and `kglue sql` reads the files a streaming job writes",
        )),
        DataFormat::Avro | DataFormat::Orc | DataFormat::Grok | DataFormat::Jdbc => Err(unsupported(&format!(
            "format {:?} is not supported by job sources yet (Parquet, Csv and Json are); convert it with a crawler-backed table in one of those formats",
            format.format
        ))),
    }
}

/// Registers a source as table `input.name` of `ctx`, reading the `selection`'s chosen objects.
/// `index` makes the source's store URL unique within the run (`kglue://source-<index>`).
pub async fn register(
    ctx: &SessionContext,
    index: usize,
    input: &SourceInput,
    selection: &Selection,
) -> Result<(), SourceError> {
    let engine = |e: &dyn fmt::Display| SourceError::Engine {
        source_name: input.name.clone(),
        message: e.to_string(),
    };
    let format = file_format(&input.name, &input.format)?;
    let partition_keys = match &input.partition_keys {
        Some(keys) => {
            check_partition_folders(input, selection, keys)?;
            keys.clone()
        }
        None => detect_hive_partitions(input, selection),
    };
    let options = ListingOptions::new(format)
        .with_file_extension("")
        .with_table_partition_cols(
            partition_keys
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
        );

    let file_schema = match &input.file_schema {
        Some(schema) => schema.clone(),
        None => {
            // Infer from the objects being read, newest first, else from the newest objects at
            // all (a run with nothing new still needs the schema to plan its SQL).
            let mut sample: Vec<ObjectMeta> = selection.selected().cloned().collect();
            sample.sort_by_key(|m| std::cmp::Reverse(m.last_modified));
            sample.truncate(SCHEMA_SAMPLE_OBJECTS);
            if sample.is_empty() {
                sample = schema_sample(selection).into_iter().cloned().collect();
            }
            if sample.is_empty() {
                return Err(SourceError::NoObjects {
                    source_name: input.name.clone(),
                    location: input.location.to_string(),
                });
            }
            infer_schema(ctx, input, options.format.as_ref(), &sample).await?
        }
    };

    let url = mount(
        ctx,
        &format!("kglue://source-{index}"),
        input,
        selection.selected().cloned().collect(),
    )?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema);
    let table = ListingTable::try_new(config).map_err(|e| engine(&e))?;
    ctx.register_table(input.name.as_str(), Arc::new(table))
        .map_err(|e| engine(&e))?;
    Ok(())
}

/// The schema of a source's files from a sample of them. Files are inferred one by one and their
/// schemas merged by widening each column as the crawler does (an `int` column in one file and a
/// `double` in the next make a `double`), where the engine's own merge would refuse them.
async fn infer_schema(
    ctx: &SessionContext,
    input: &SourceInput,
    format: &dyn FileFormat,
    sample: &[ObjectMeta],
) -> Result<SchemaRef, SourceError> {
    let state = ctx.state();
    let mut schemas = Vec::new();
    for meta in sample {
        // A reader that panics on a corrupt object (the Parquet footer decoder can) fails the
        // run by the object's name like any other unreadable object.
        let inferred = AssertUnwindSafe(format.infer_schema(&state, &input.store, std::slice::from_ref(meta)))
            .catch_unwind()
            .await;
        let message = match inferred {
            Ok(Ok(schema)) => {
                schemas.push(schema);
                continue;
            }
            Ok(Err(error)) => error.to_string(),
            Err(panic) => format!("the reader failed: {}", panic_message(panic.as_ref())),
        };
        let url = input.location.url_of(&meta.location);
        let line = match input.format.format {
            DataFormat::Json => {
                let compression = input.format.compression.unwrap_or(Compression::None);
                bad_json_line(input.store.as_ref(), meta, compression).await
            }
            _ => None,
        };
        return Err(SourceError::Engine {
            source_name: input.name.clone(),
            message: match line {
                Some(line) => format!("cannot infer the schema of {url}: {line}"),
                None => format!("cannot infer the schema of {url}: {message}"),
            },
        });
    }
    let Some(first) = schemas.first().cloned() else {
        return Err(SourceError::NoObjects {
            source_name: input.name.clone(),
            location: input.location.to_string(),
        });
    };
    if schemas.iter().all(|s| s == &first) {
        return Ok(first);
    }
    let mut merged: Vec<(String, GlueType)> = Vec::new();
    for schema in &schemas {
        for field in schema.fields() {
            let glue = from_arrow(field.data_type());
            match merged.iter_mut().find(|(name, _)| name == field.name()) {
                Some((_, known)) => *known = known.widen(&glue),
                None => merged.push((field.name().clone(), glue)),
            }
        }
    }
    Ok(Arc::new(Schema::new(
        merged
            .into_iter()
            .map(|(name, glue)| Field::new(name, to_arrow(&glue), true))
            .collect::<Vec<_>>(),
    )))
}

/// The URL of source `index`'s store, as its scans report it.
pub fn store_url(index: usize) -> String {
    format!("kglue://source-{index}")
}

/// Registers `objects` of the source's store under `base` and returns the table URL of the
/// source's location there.
fn mount(
    ctx: &SessionContext,
    base: &str,
    input: &SourceInput,
    mut objects: Vec<ObjectMeta>,
) -> Result<ListingTableUrl, SourceError> {
    let engine = |e: &dyn fmt::Display| SourceError::Engine {
        source_name: input.name.clone(),
        message: e.to_string(),
    };
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let store = SelectedStore {
        inner: input.store.clone(),
        objects: Arc::new(objects),
    };
    let base_url = url::Url::parse(base).map_err(|e| engine(&e))?;
    ctx.register_object_store(&base_url, Arc::new(store));
    let prefix = input.location.prefix.as_ref();
    let table_url = if prefix.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{prefix}/")
    };
    ListingTableUrl::parse(&table_url).map_err(|e| engine(&e))
}

/// The `key=value` folders of an object below the location, as (key, value) pairs; `None` when a
/// folder is not of that form.
fn hive_folders(location: &Location, meta: &ObjectMeta) -> Option<Vec<(String, String)>> {
    let mut parts = location.relative(&meta.location)?;
    parts.pop();
    parts
        .into_iter()
        .map(|folder| folder.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Checks that every object a partitioned table reads sits in `key=value` folders for exactly the
/// table's keys: the engine skips other objects without a word.
fn check_partition_folders(input: &SourceInput, selection: &Selection, keys: &[Field]) -> Result<(), SourceError> {
    if keys.is_empty() {
        return Ok(());
    }
    let expected: Vec<&str> = keys.iter().map(|f| f.name().as_str()).collect();
    for meta in selection.selected() {
        let fits = hive_folders(&input.location, meta)
            .is_some_and(|folders| folders.iter().map(|(k, _)| k.as_str()).eq(expected.iter().copied()));
        if !fits {
            return Err(SourceError::OutsidePartitions {
                source_name: input.name.clone(),
                url: input.location.url_of(&meta.location),
                expected: expected.iter().map(|k| format!("{k}=…")).collect::<Vec<_>>().join("/"),
            });
        }
    }
    Ok(())
}

/// Hive partition keys of a storage source: when every object sits in `key=value` folders with
/// the same keys, those keys, typed from their values as the crawler types them.
fn detect_hive_partitions(input: &SourceInput, selection: &Selection) -> Vec<Field> {
    let mut keys: Option<Vec<String>> = None;
    let mut types: Vec<Option<GlueType>> = Vec::new();
    for meta in &selection.listed {
        let Some(folders) = hive_folders(&input.location, meta) else {
            return Vec::new();
        };
        let names: Vec<String> = folders.iter().map(|(k, _)| k.clone()).collect();
        match &keys {
            None => {
                types = vec![None; names.len()];
                keys = Some(names);
            }
            Some(known) if *known != names => return Vec::new(),
            Some(_) => {}
        }
        for (slot, (_, value)) in types.iter_mut().zip(&folders) {
            let value_type = infer_text(value).unwrap_or(GlueType::String);
            *slot = Some(match slot.take() {
                None => value_type,
                Some(known) => known.widen(&value_type),
            });
        }
    }
    keys.unwrap_or_default()
        .into_iter()
        .zip(types)
        .map(|(name, glue)| Field::new(name, to_arrow(&glue.unwrap_or(GlueType::String)), true))
        .collect()
}

/// A read-only view of a store that lists only chosen objects; reads go to the real store.
#[derive(Debug)]
struct SelectedStore {
    inner: Arc<dyn ObjectStore>,
    /// Sorted by key.
    objects: Arc<Vec<ObjectMeta>>,
}

impl fmt::Display for SelectedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SelectedStore({} objects of {})", self.objects.len(), self.inner)
    }
}

impl SelectedStore {
    fn read_only() -> object_store::Error {
        object_store::Error::NotSupported {
            source: "a job source is read-only".into(),
        }
    }

    fn below<'a>(&'a self, prefix: Option<&'a Path>) -> impl Iterator<Item = &'a ObjectMeta> + 'a {
        self.objects
            .iter()
            .filter(move |m| prefix.is_none_or(|p| m.location.prefix_matches(p)))
    }
}

#[async_trait]
impl ObjectStore for SelectedStore {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(Self::read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(Self::read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(Self::read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let found: Vec<object_store::Result<ObjectMeta>> = self.below(prefix).cloned().map(Ok).collect();
        stream::iter(found).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut common_prefixes = BTreeSet::new();
        let mut objects = Vec::new();
        for meta in self.below(prefix) {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(meta.clone());
            } else if parts.len() > depth + 1 {
                common_prefixes.insert(parts[..=depth].iter().cloned().collect::<Path>());
            }
        }
        Ok(ListResult {
            common_prefixes: common_prefixes.into_iter().collect(),
            objects,
        })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(Self::read_only())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(key),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[tokio::test]
    async fn the_selected_store_lists_only_its_objects_folder_by_folder() {
        let store = SelectedStore {
            inner: Arc::new(object_store::memory::InMemory::new()),
            objects: Arc::new(vec![
                meta("t/dt=1/a.csv", 1),
                meta("t/dt=1/b.csv", 1),
                meta("t/dt=2/c.csv", 1),
                meta("t/top.csv", 1),
            ]),
        };
        let root = store.list_with_delimiter(Some(&Path::from("t"))).await.expect("lists");
        assert_eq!(root.common_prefixes, [Path::from("t/dt=1"), Path::from("t/dt=2")]);
        assert_eq!(root.objects.len(), 1);
        let all: Vec<_> = store.list(Some(&Path::from("t/dt=1"))).collect().await;
        assert_eq!(all.len(), 2);
        assert!(
            store
                .put_opts(&Path::from("x"), PutPayload::default(), PutOptions::default())
                .await
                .is_err()
        );
    }

    #[test]
    fn hive_partitions_are_detected_and_typed_only_when_every_object_has_them() {
        let input = SourceInput {
            name: "orders".into(),
            location: "file:///data/orders/".parse().expect("location"),
            store: Arc::new(object_store::memory::InMemory::new()),
            connection: None,
            format: FormatSpec {
                format: DataFormat::Csv,
                compression: None,
                csv: None,
                json: None,
                grok: None,
                kafka: None,
            },
            file_schema: None,
            partition_keys: None,
        };
        let selection = |keys: &[&str]| Selection {
            listed: keys.iter().map(|k| meta(k, 1)).collect(),
            selected: vec![],
            listed_at: Timestamp::now(),
            next: SourceBookmark::default(),
            deferred: 0,
        };
        let fields = detect_hive_partitions(
            &input,
            &selection(&[
                "data/orders/dt=2024-01-01/n=1/a.csv",
                "data/orders/dt=2024-01-02/n=x/b.csv",
            ]),
        );
        let described: Vec<_> = fields
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(described, [("dt", DataType::Date32), ("n", DataType::Utf8)]);
        assert!(
            detect_hive_partitions(&input, &selection(&["data/orders/dt=1/a.csv", "data/orders/b.csv"])).is_empty()
        );
    }
}
