//! Tests of the sink against a local filesystem store: every test reads the output back with
//! DataFusion and compares rows with the input.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};
use kglue_crds::common::{Compression, CsvOptions, DataFormat, FormatSpec};
use kglue_crds::job::WriteMode;
use object_store::local::LocalFileSystem;
use tempfile::TempDir;

use super::*;

/// A row as strings (`None` for NULL), in a fixed column order.
type Row = Vec<Option<String>>;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("day", DataType::Date32, true),
        Field::new("region", DataType::Utf8, true),
    ]))
}

/// `rows` rows starting at id `first`; region cycles through `regions`, day through two dates.
fn batch(first: i64, rows: usize, regions: &[Option<&str>]) -> RecordBatch {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| match i % 7 {
            0 => None,
            3 => Some(format!("quote \" comma , semi ; n{i}")),
            _ => Some(format!("name-{i}")),
        })
        .collect();
    let amounts: Vec<Option<f64>> = ids
        .iter()
        .map(|i| if i % 11 == 5 { None } else { Some(*i as f64 * 1.25) })
        .collect();
    // 2024-01-31 and 2024-02-01.
    let days: Vec<Option<i32>> = ids.iter().map(|i| Some(19753 + (i % 2) as i32)).collect();
    let region: Vec<Option<&str>> = ids.iter().map(|i| regions[*i as usize % regions.len()]).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(amounts)),
            Arc::new(Date32Array::from(days)),
            Arc::new(StringArray::from(region)),
        ],
    )
    .expect("batch")
}

/// A plan over `partitions` (each a list of batches), as a job's relation would be.
async fn plan_of(partitions: Vec<Vec<RecordBatch>>) -> (Arc<dyn ExecutionPlan>, Arc<TaskContext>) {
    plan_in(SessionContext::new(), partitions).await
}

async fn plan_in(ctx: SessionContext, partitions: Vec<Vec<RecordBatch>>) -> (Arc<dyn ExecutionPlan>, Arc<TaskContext>) {
    let schema = partitions
        .iter()
        .flatten()
        .next()
        .map(|b| b.schema())
        .unwrap_or_else(schema);
    let table = MemTable::try_new(schema, partitions).expect("table");
    let frame = ctx.read_table(Arc::new(table)).expect("frame");
    let plan = frame.create_physical_plan().await.expect("plan");
    (plan, ctx.task_ctx())
}

fn parquet() -> FormatSpec {
    FormatSpec {
        format: DataFormat::Parquet,
        compression: None,
        csv: None,
        json: None,
        grok: None,
        kafka: None,
    }
}

fn target(dir: &FsPath, format: FormatSpec, partition_by: &[&str], write_mode: WriteMode) -> SinkTarget {
    SinkTarget {
        name: "orders_out".to_string(),
        store: Arc::new(LocalFileSystem::new()),
        location: Location::from_directory(dir).expect("location"),
        format,
        partition_by: partition_by.iter().map(|s| s.to_string()).collect(),
        target_file_bytes: 128 * 1024 * 1024,
        write_mode,
        s3: None,
    }
}

/// One attempt of a run, as the job runner does it.
async fn run(
    target: &SinkTarget,
    partitions: Vec<Vec<RecordBatch>>,
    run_id: &str,
    limits: &WriteLimits,
) -> SinkOutcome {
    let (plan, task_ctx) = plan_of(partitions).await;
    clean_attempt(target, run_id).await.expect("clean");
    let staged = stage(target, plan, task_ctx, run_id, limits).await.expect("stage");
    commit(target, staged, run_id).await.expect("commit")
}

fn format_rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<Row> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let arrays: Vec<&ArrayRef> = columns
            .iter()
            .map(|c| batch.column_by_name(c).unwrap_or_else(|| panic!("column {c}")))
            .collect();
        let formatters: Vec<ArrayFormatter<'_>> = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                arrays
                    .iter()
                    .zip(&formatters)
                    .map(|(a, f)| (!a.is_null(row)).then(|| f.value(row).to_string()))
                    .map(|v| v.filter(|v| v != HIVE_DEFAULT_PARTITION))
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

const COLUMNS: [&str; 5] = ["id", "name", "amount", "day", "region"];

fn expected(partitions: &[Vec<RecordBatch>]) -> Vec<Row> {
    let all: Vec<RecordBatch> = partitions.iter().flatten().cloned().collect();
    format_rows(&all, &COLUMNS)
}

/// Partition columns as the reader declares them: folder values are strings.
fn partition_cols(names: &[&str]) -> Vec<(String, DataType)> {
    names.iter().map(|n| (n.to_string(), DataType::Utf8)).collect()
}

fn url(dir: &FsPath) -> String {
    format!("{}/", dir.display())
}

async fn collect(frame: DataFrame) -> Vec<RecordBatch> {
    frame.collect().await.expect("read back")
}

async fn read_parquet(dir: &FsPath, partitioned_by: &[&str]) -> Vec<Row> {
    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default().table_partition_cols(partition_cols(partitioned_by));
    let frame = ctx.read_parquet(url(dir), options).await.expect("parquet table");
    format_rows(&collect(frame).await, &COLUMNS)
}

/// Every file below `dir`, relative to it, sorted.
fn files(dir: &FsPath) -> Vec<String> {
    fn walk(root: &FsPath, dir: &FsPath, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("below root").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn data_files(dir: &FsPath) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| !f.starts_with(STAGING_FOLDER))
        .collect()
}

fn parquet_metadata(path: PathBuf) -> parquet::file::metadata::ParquetMetaData {
    use parquet::file::reader::FileReader;
    let file = std::fs::File::open(&path).expect("open parquet");
    let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet reader");
    reader.metadata().clone()
}

fn input(regions: &[Option<&str>]) -> Vec<Vec<RecordBatch>> {
    vec![
        vec![batch(0, 40, regions), batch(40, 25, regions)],
        vec![batch(100, 30, regions)],
        vec![batch(200, 17, regions), batch(217, 3, regions)],
    ]
}

#[tokio::test]
async fn partitioned_parquet_is_laid_out_hive_style_and_reads_back_exactly() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["day", "region"], WriteMode::Append);
    let partitions = input(&[Some("EU"), Some("US"), Some("AS")]);
    let outcome = run(&target, partitions.clone(), "run-1", &WriteLimits::default()).await;

    assert_eq!(
        read_parquet(dir.path(), &["day", "region"]).await,
        expected(&partitions)
    );
    assert_eq!(outcome.rows, 115);
    let files = files(dir.path());
    assert_eq!(files.len() as u64, outcome.files);
    assert!(
        !dir.path().join(STAGING_FOLDER).exists(),
        "the staging folder is removed: {files:?}"
    );
    for file in &files {
        let (folders, name) = file.rsplit_once('/').expect("in a partition folder");
        let (day, region) = folders.split_once('/').expect("two levels");
        assert!(day == "day=2024-01-31" || day == "day=2024-02-01", "{file}");
        assert!(["region=EU", "region=US", "region=AS"].contains(&region), "{file}");
        assert!(
            name.starts_with("part-run-1-000") && name.ends_with(".parquet"),
            "{file}"
        );
    }
    let paths: Vec<String> = files
        .iter()
        .map(|f| format!("{}/{f}", target.location.prefix))
        .collect();
    let mut reported = outcome.paths.clone();
    reported.sort();
    assert_eq!(reported, paths, "the outcome lists the final objects");

    // Partition columns are in the folders only.
    let metadata = parquet_metadata(dir.path().join(&files[0]));
    let columns: Vec<&str> = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(columns, ["id", "name", "amount"]);

    assert_eq!(outcome.partitions.len(), 6);
    assert_eq!(outcome.partitions[0].path, "day=2024-01-31/region=AS");
    assert_eq!(
        outcome.partitions[0].values,
        [
            ("day".to_string(), Some("2024-01-31".to_string())),
            ("region".to_string(), Some("AS".to_string()))
        ]
    );
    assert_eq!(
        outcome.partitions_added, outcome.partitions,
        "all new on an empty location"
    );
    assert_eq!(
        outcome.bytes,
        files
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).expect("stat").len())
            .sum::<u64>()
    );
}

#[tokio::test]
async fn without_partition_by_files_go_at_the_root() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &[], WriteMode::Append);
    let partitions = input(&[Some("EU")]);
    let outcome = run(&target, partitions.clone(), "r7", &WriteLimits::default()).await;
    let files = files(dir.path());
    assert_eq!(
        files,
        [
            "part-r7-00000-00000.parquet",
            "part-r7-00001-00000.parquet",
            "part-r7-00002-00000.parquet"
        ]
    );
    assert!(outcome.partitions.is_empty());
    assert_eq!(read_parquet(dir.path(), &[]).await, expected(&partitions));
}

#[tokio::test]
async fn values_are_escaped_and_null_goes_to_the_default_partition() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let regions = [Some("a/b:c=d%e"), None, Some("x y"), Some("100%"), Some("")];
    let partitions = input(&regions);
    let outcome = run(&target, partitions.clone(), "r1", &WriteLimits::default()).await;

    let folders: std::collections::BTreeSet<String> = files(dir.path())
        .iter()
        .map(|f| f.split_once('/').expect("folder").0.to_string())
        .collect();
    assert_eq!(
        folders.into_iter().collect::<Vec<_>>(),
        [
            "region=100%25",
            "region=__HIVE_DEFAULT_PARTITION__",
            "region=a%2Fb%3Ac%3Dd%25e",
            "region=x y"
        ]
    );
    let null = outcome
        .partitions
        .iter()
        .find(|p| p.path == "region=__HIVE_DEFAULT_PARTITION__")
        .expect("null partition");
    assert_eq!(null.values, [("region".to_string(), None)]);
    // DataFusion percent-decodes folder names; the default partition reads as NULL (format_rows),
    // and so does the empty string, as in Hive and Spark.
    let mut want = expected(&partitions);
    for row in &mut want {
        if row[4].as_deref() == Some("") {
            row[4] = None;
        }
    }
    want.sort();
    assert_eq!(read_parquet(dir.path(), &["region"]).await, want);

    // Listing finds the escaped names as they were written: overwriting and overwriting
    // partitions keep this run's files and remove the earlier run's.
    for (mode, run_id) in [(WriteMode::Overwrite, "r2"), (WriteMode::OverwritePartitions, "r3")] {
        let mut target = target.clone();
        target.write_mode = mode;
        let outcome = run(&target, partitions.clone(), run_id, &WriteLimits::default()).await;
        assert_eq!(outcome.objects_deleted, outcome.files, "{mode:?}");
        assert!(outcome.partitions_added.is_empty(), "{mode:?}");
        assert_eq!(read_parquet(dir.path(), &["region"]).await, want, "{mode:?}");
    }
}

#[tokio::test]
async fn files_roll_over_at_the_target_size() {
    let dir = TempDir::new().expect("tempdir");
    let mut target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    target.target_file_bytes = 1;
    let partitions = vec![(0..6).map(|i| batch(i * 10, 10, &[Some("EU"), Some("US")])).collect()];
    let outcome = run(&target, partitions.clone(), "r1", &WriteLimits::default()).await;
    // Each batch carries both regions; with a one-byte target every piece is a file of its own.
    assert_eq!(outcome.files, 12);
    let eu: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("region=EU/"))
        .collect();
    assert_eq!(eu.len(), 6);
    assert_eq!(eu[0], "region=EU/part-r1-00000-00000.parquet");
    assert_eq!(eu[5], "region=EU/part-r1-00000-00005.parquet");
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&partitions));

    // A target above the data keeps one file per partition and stream.
    let dir = TempDir::new().expect("tempdir");
    let target = super::tests::target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let outcome = run(&target, partitions, "r1", &WriteLimits::default()).await;
    assert_eq!(outcome.files, 2);
}

#[tokio::test]
async fn open_writers_are_bounded_least_recently_used_closed_first() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let regions: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let regions: Vec<Option<&str>> = regions.iter().map(|r| Some(r.as_str())).collect();
    // Rows of the ten partitions interleave within every batch.
    let partitions: Vec<Vec<RecordBatch>> = (0..2)
        .map(|p| (0..5).map(|b| batch(p * 1000 + b * 30, 30, &regions)).collect())
        .collect();
    let limits = WriteLimits {
        max_open_writers: 2,
        ..WriteLimits::default()
    };
    let (plan, task_ctx) = plan_of(partitions.clone()).await;
    let staged = stage(&target, plan, task_ctx, "r1", &limits).await.expect("stage");
    assert!(staged.peak_open_files <= 2, "peak {}", staged.peak_open_files);
    let outcome = commit(&target, staged, "r1").await.expect("commit");
    assert_eq!(outcome.partitions.len(), 10);
    assert!(outcome.files > 10, "closed files start new ones: {}", outcome.files);
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&partitions));

    // A bound below the number of streams still holds: streams wait for a free writer.
    let dir = TempDir::new().expect("tempdir");
    let target = super::tests::target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let limits = WriteLimits {
        max_open_writers: 1,
        ..WriteLimits::default()
    };
    let (plan, task_ctx) = plan_of(partitions.clone()).await;
    let staged = stage(&target, plan, task_ctx, "r1", &limits).await.expect("stage");
    assert_eq!(staged.peak_open_files, 1);
    commit(&target, staged, "r1").await.expect("commit");
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&partitions));
}

#[tokio::test]
async fn the_memory_budget_writes_row_groups_early() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let partitions = vec![(0..4).map(|i| batch(i * 50, 50, &[Some("EU")])).collect()];
    let limits = WriteLimits {
        max_buffered_bytes: 1,
        ..WriteLimits::default()
    };
    let (plan, task_ctx) = plan_of(partitions.clone()).await;
    let staged = stage(&target, plan, task_ctx, "r1", &limits).await.expect("stage");
    assert_eq!(staged.early_flushes, 4);
    commit(&target, staged, "r1").await.expect("commit");
    let files = files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(parquet_metadata(dir.path().join(&files[0])).num_row_groups(), 4);
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&partitions));
}

#[tokio::test]
async fn a_full_memory_pool_flushes_instead_of_failing() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let partitions = vec![(0..4).map(|i| batch(i * 50, 50, &[Some("EU")])).collect()];
    // A pool too small for even one batch's row group.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(64, 1.0)
        .build_arc()
        .expect("runtime");
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    let (plan, task_ctx) = plan_in(ctx, partitions.clone()).await;
    let staged = stage(&target, plan, Arc::clone(&task_ctx), "r1", &WriteLimits::default())
        .await
        .expect("stage");
    assert_eq!(staged.early_flushes, 4);
    assert_eq!(task_ctx.memory_pool().reserved(), 0, "the reservation is returned");
    commit(&target, staged, "r1").await.expect("commit");
    let files = files(dir.path());
    assert_eq!(parquet_metadata(dir.path().join(&files[0])).num_row_groups(), 4);
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&partitions));
}

fn text_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("day", DataType::Date32, true),
    ])
}

#[tokio::test]
async fn csv_honours_header_delimiter_null_value_and_gzip() {
    let dir = TempDir::new().expect("tempdir");
    let format = FormatSpec {
        format: DataFormat::Csv,
        compression: Some(Compression::Gzip),
        csv: Some(CsvOptions {
            delimiter: Some(";".to_string()),
            null_value: Some("\\N".to_string()),
            ..CsvOptions::default()
        }),
        json: None,
        grok: None,
        kafka: None,
    };
    let target = target(dir.path(), format, &["region"], WriteMode::Append);
    // Names are the only NULLs: DataFusion's CSV reader has no null value of its own, so the
    // marker is checked as text.
    let no_null_amounts = |b: RecordBatch| {
        let mut columns = b.columns().to_vec();
        columns[2] = Arc::new(Float64Array::from_iter_values(
            (0..b.num_rows()).map(|i| i as f64 + 0.5),
        ));
        RecordBatch::try_new(b.schema(), columns).expect("batch")
    };
    let partitions: Vec<Vec<RecordBatch>> = input(&[Some("EU"), Some("US")])
        .into_iter()
        .map(|p| p.into_iter().map(no_null_amounts).collect())
        .collect();
    run(&target, partitions.clone(), "r1", &WriteLimits::default()).await;

    let files = files(dir.path());
    assert!(files.iter().all(|f| f.ends_with(".csv.gz")), "{files:?}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join(&files[0])).expect("open"))
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(text.lines().next(), Some("id;name;amount;day"));
    assert!(
        text.lines().skip(1).all(|l| !l.starts_with("id;")),
        "one header per file"
    );
    assert!(text.contains(";\\N;"), "NULL is written as \\N:\n{text}");
    assert!(text.contains("\"quote \"\" comma , semi ; n"), "quoted: {text}");

    let ctx = SessionContext::new();
    let schema = text_schema();
    let options = CsvReadOptions::new()
        .has_header(true)
        .delimiter(b';')
        .schema(&schema)
        .file_extension(".csv.gz")
        .file_compression_type(FileCompressionType::GZIP)
        .table_partition_cols(partition_cols(&["region"]));
    let frame = ctx.read_csv(url(dir.path()), options).await.expect("csv table");
    let mut want = expected(&partitions);
    for row in &mut want {
        row[1].get_or_insert_with(|| "\\N".to_string());
    }
    want.sort();
    assert_eq!(format_rows(&collect(frame).await, &COLUMNS), want);
}

#[tokio::test]
async fn csv_without_header_and_with_an_escape_character() {
    let dir = TempDir::new().expect("tempdir");
    let format = FormatSpec {
        format: DataFormat::Csv,
        compression: None,
        csv: Some(CsvOptions {
            header: Some(false),
            escape: Some("\\".to_string()),
            ..CsvOptions::default()
        }),
        json: None,
        grok: None,
        kafka: None,
    };
    let target = target(dir.path(), format, &[], WriteMode::Append);
    let partitions = vec![vec![batch(0, 10, &[Some("EU")])]];
    run(&target, partitions, "r1", &WriteLimits::default()).await;
    let files = files(dir.path());
    assert_eq!(files, ["part-r1-00000-00000.csv"]);
    let text = std::fs::read_to_string(dir.path().join(&files[0])).expect("read");
    assert!(
        text.starts_with("0,,0.0,2024-01-31,EU\n"),
        "no header, empty NULLs: {text}"
    );
    assert!(
        text.contains("\"quote \\\" comma , semi ; n3\""),
        "escaped quote: {text}"
    );
}

#[tokio::test]
async fn json_lines_with_zstd_read_back() {
    let dir = TempDir::new().expect("tempdir");
    let format = FormatSpec {
        format: DataFormat::Json,
        compression: Some(Compression::Zstd),
        csv: None,
        json: None,
        grok: None,
        kafka: None,
    };
    let target = target(dir.path(), format, &["region"], WriteMode::Append);
    let partitions = input(&[Some("EU"), Some("US"), None]);
    run(&target, partitions.clone(), "r1", &WriteLimits::default()).await;
    let files = files(dir.path());
    assert!(files.iter().all(|f| f.ends_with(".json.zst")), "{files:?}");
    let text = zstd::decode_all(std::fs::File::open(dir.path().join(&files[0])).expect("open")).expect("zstd");
    let first = String::from_utf8(text).expect("utf-8");
    assert!(
        first.lines().next().is_some_and(|l| l.starts_with("{\"id\":")),
        "{first}"
    );

    let ctx = SessionContext::new();
    let schema = text_schema();
    let options = JsonReadOptions::default()
        .schema(&schema)
        .file_extension(".json.zst")
        .file_compression_type(FileCompressionType::ZSTD)
        .table_partition_cols(partition_cols(&["region"]));
    let frame = ctx.read_json(url(dir.path()), options).await.expect("json table");
    assert_eq!(format_rows(&collect(frame).await, &COLUMNS), expected(&partitions));
}

#[tokio::test]
async fn clean_attempt_removes_an_undecided_attempt_and_nothing_else() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let first = input(&[Some("EU"), Some("US")]);
    run(&target, first.clone(), "r1", &WriteLimits::default()).await;

    // Attempt 1 of run r2 staged and was killed before it decided to commit.
    let second = vec![
        vec![batch(500, 20, &[Some("EU"), Some("AS")])],
        vec![batch(600, 9, &[Some("US")])],
    ];
    let (plan, task_ctx) = plan_of(second.clone()).await;
    let staged = stage(&target, plan, task_ctx, "r2", &WriteLimits::default())
        .await
        .expect("stage");
    // It was killed while uploading a file: the local store's temporary `#<n>` file, which its
    // listings hide.
    let uploading = format!("/{}#1", staged.files[1].staging_path);
    std::fs::write(&uploading, b"half a file").expect("write an interrupted upload");
    // Another run is staging at the same time.
    std::fs::create_dir_all(dir.path().join("_kglue_staging/r3/region=EU")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("_kglue_staging/r3/region=EU/part-r3-00000-00000.parquet"),
        b"x",
    )
    .expect("write");

    let cleaned = clean_attempt(&target, "r2").await.expect("clean");
    assert_eq!(cleaned.staging_objects, staged.files.len() as u64);
    let left = files(dir.path());
    assert!(left.iter().all(|f| !f.contains("r2")), "{left:?}");
    assert!(left.contains(&"_kglue_staging/r3/region=EU/part-r3-00000-00000.parquet".to_string()));
    let r2 = dir.path().join("_kglue_staging/r2");
    assert!(
        !r2.exists(),
        "empty folders go too: {:?}",
        std::fs::read_dir(&r2).map(|d| d.map(|e| e.map(|e| e.path())).collect::<Vec<_>>())
    );
    assert_eq!(data_files(dir.path()).len(), 6, "r1's files stay: {left:?}");

    // The retry ends with both runs' rows exactly once.
    let outcome = run(&target, second.clone(), "r2", &WriteLimits::default()).await;
    assert_eq!(
        outcome
            .partitions_added
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        ["region=AS"]
    );
    std::fs::remove_dir_all(dir.path().join(STAGING_FOLDER)).expect("drop r3's staging");
    let mut want = expected(&first);
    want.extend(expected(&second));
    want.sort();
    assert_eq!(read_parquet(dir.path(), &["region"]).await, want);
}

/// A run that decided to commit moved one file into place and was killed; settling finishes it
/// from what the location holds, for each write mode, and settling again changes nothing.
#[tokio::test]
async fn settle_finishes_a_commit_cut_short_and_is_idempotent() {
    for mode in [WriteMode::Append, WriteMode::Overwrite, WriteMode::OverwritePartitions] {
        let dir = TempDir::new().expect("tempdir");
        let target = target(dir.path(), parquet(), &["region"], mode);
        let first = input(&[Some("EU"), Some("US")]);
        run(&target, first.clone(), "r1", &WriteLimits::default()).await;

        let second = vec![
            vec![batch(500, 20, &[Some("EU"), Some("AS")])],
            vec![batch(600, 9, &[Some("EU")])],
        ];
        let (plan, task_ctx) = plan_of(second.clone()).await;
        let staged = stage(&target, plan, task_ctx, "r2", &WriteLimits::default())
            .await
            .expect("stage");
        let half = &staged.files[0];
        std::fs::create_dir_all(dir.path().join(&half.partition)).expect("mkdir");
        std::fs::rename(format!("/{}", half.staging_path), format!("/{}", half.final_path)).expect("move one file");

        settle(&target, "r2").await.expect("settle");
        let after = files(dir.path());
        settle(&target, "r2").await.expect("settle again");
        assert_eq!(files(dir.path()), after, "{mode:?}: settling twice changes nothing");
        assert!(!dir.path().join(STAGING_FOLDER).exists(), "{mode:?}: {after:?}");

        let mut want = expected(&second);
        match mode {
            WriteMode::Append => want.extend(expected(&first)),
            // r1's US partition is not one r2 wrote, so it stays.
            WriteMode::OverwritePartitions => want.extend(
                expected(&first)
                    .into_iter()
                    .filter(|row| row.iter().any(|value| value.as_deref() == Some("US"))),
            ),
            WriteMode::Overwrite => {}
            WriteMode::Upsert => panic!("Upsert is for database tables"),
        }
        want.sort();
        assert_eq!(read_parquet(dir.path(), &["region"]).await, want, "{mode:?}");
    }
}

#[tokio::test]
async fn overwrite_replaces_everything_and_an_empty_result_empties_the_location() {
    let dir = TempDir::new().expect("tempdir");
    let mut target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    run(&target, input(&[Some("EU"), Some("US")]), "r1", &WriteLimits::default()).await;
    std::fs::create_dir_all(dir.path().join("_kglue_staging/other")).expect("mkdir");
    std::fs::write(
        dir.path().join("_kglue_staging/other/part-other-00000-00000.parquet"),
        b"x",
    )
    .expect("write");

    target.write_mode = WriteMode::Overwrite;
    let second = vec![vec![batch(1000, 12, &[Some("EU"), Some("AS")])]];
    let outcome = run(&target, second.clone(), "r2", &WriteLimits::default()).await;
    assert_eq!(outcome.objects_deleted, 6, "r1's six files");
    assert_eq!(
        outcome
            .partitions_added
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        ["region=AS"]
    );
    assert!(
        !dir.path().join("region=US").exists(),
        "the old partition folder is gone"
    );
    assert!(
        dir.path()
            .join("_kglue_staging/other/part-other-00000-00000.parquet")
            .exists()
    );
    std::fs::remove_dir_all(dir.path().join(STAGING_FOLDER)).expect("drop the other staging");
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&second));

    // Overwrite with no rows leaves nothing, as Spark does.
    let outcome = run(&target, vec![vec![]], "r3", &WriteLimits::default()).await;
    assert_eq!(outcome.files, 0);
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_retried_overwrite_whose_commit_was_cut_short_ends_with_one_runs_data() {
    let dir = TempDir::new().expect("tempdir");
    let mut target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    run(&target, input(&[Some("EU"), Some("US")]), "r1", &WriteLimits::default()).await;

    // Attempt 1 of r2 moved every file into place and was killed before deleting r1's.
    target.write_mode = WriteMode::Overwrite;
    let second = vec![vec![batch(1000, 12, &[Some("EU"), Some("AS")])]];
    let (plan, task_ctx) = plan_of(second.clone()).await;
    let staged = stage(&target, plan, task_ctx, "r2", &WriteLimits::default())
        .await
        .expect("stage");
    for file in &staged.files {
        std::fs::create_dir_all(dir.path().join(&file.partition)).expect("mkdir");
        std::fs::rename(format!("/{}", file.staging_path), format!("/{}", file.final_path)).expect("move");
    }
    assert_eq!(
        read_parquet(dir.path(), &["region"]).await.len(),
        115 + 12,
        "old and new side by side, nothing lost"
    );

    let outcome = run(&target, second.clone(), "r2", &WriteLimits::default()).await;
    assert_eq!(outcome.objects_deleted, 6);
    assert_eq!(read_parquet(dir.path(), &["region"]).await, expected(&second));
    assert!(!dir.path().join(STAGING_FOLDER).exists());
}

#[tokio::test]
async fn text_files_roll_over_with_a_header_each() {
    let dir = TempDir::new().expect("tempdir");
    let format = FormatSpec {
        format: DataFormat::Csv,
        compression: None,
        csv: None,
        json: None,
        grok: None,
        kafka: None,
    };
    let mut target = target(dir.path(), format, &[], WriteMode::Append);
    target.target_file_bytes = 200;
    let partitions = vec![(0..5).map(|i| batch(i * 10, 10, &[Some("EU")])).collect()];
    let outcome = run(&target, partitions.clone(), "r1", &WriteLimits::default()).await;
    assert_eq!(outcome.files, 5);
    for file in files(dir.path()) {
        let text = std::fs::read_to_string(dir.path().join(&file)).expect("read");
        assert_eq!(text.lines().next(), Some("id,name,amount,day,region"), "{file}");
    }
    let ctx = SessionContext::new();
    let schema = schema();
    let frame = ctx
        .read_csv(url(dir.path()), CsvReadOptions::new().schema(&schema))
        .await
        .expect("csv table");
    // Without a null value, a NULL is an empty field, which the reader takes for NULL.
    assert_eq!(format_rows(&collect(frame).await, &COLUMNS), expected(&partitions));
}

#[tokio::test]
async fn overwrite_partitions_replaces_only_the_partitions_written() {
    let dir = TempDir::new().expect("tempdir");
    let mut target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let first = input(&[Some("EU"), Some("US")]);
    run(&target, first.clone(), "r1", &WriteLimits::default()).await;

    target.write_mode = WriteMode::OverwritePartitions;
    let second = vec![
        vec![batch(1000, 12, &[Some("EU"), Some("AS")])],
        vec![batch(2000, 3, &[Some("EU")])],
    ];
    let outcome = run(&target, second.clone(), "r2", &WriteLimits::default()).await;
    assert_eq!(outcome.objects_deleted, 3, "r1's EU files, one per stream");
    assert_eq!(
        outcome
            .partitions_added
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        ["region=AS"]
    );
    let mut want: Vec<Row> = expected(&first)
        .into_iter()
        .filter(|r| r[4].as_deref() == Some("US"))
        .collect();
    want.extend(expected(&second));
    want.sort();
    assert_eq!(read_parquet(dir.path(), &["region"]).await, want);
}

#[tokio::test]
async fn append_reports_only_new_partitions_as_added() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let first = vec![vec![batch(0, 10, &[Some("EU")])]];
    let outcome = run(&target, first.clone(), "r1", &WriteLimits::default()).await;
    assert_eq!(outcome.partitions_added.len(), 1);

    let second = vec![vec![batch(100, 10, &[Some("EU"), Some("US")])]];
    let outcome = run(&target, second.clone(), "r2", &WriteLimits::default()).await;
    assert_eq!(
        outcome.partitions.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["region=EU", "region=US"]
    );
    assert_eq!(
        outcome
            .partitions_added
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        ["region=US"]
    );
    assert_eq!(outcome.objects_deleted, 0);
    let mut want = expected(&first);
    want.extend(expected(&second));
    want.sort();
    assert_eq!(read_parquet(dir.path(), &["region"]).await, want);
}

#[tokio::test]
async fn bad_partition_columns_and_run_ids_are_named() {
    let dir = TempDir::new().expect("tempdir");
    let (plan, task_ctx) = plan_of(input(&[Some("EU")])).await;
    let unknown = target(dir.path(), parquet(), &["region", "country"], WriteMode::Append);
    let error = stage(
        &unknown,
        Arc::clone(&plan),
        Arc::clone(&task_ctx),
        "r1",
        &WriteLimits::default(),
    )
    .await
    .expect_err("unknown column");
    let message = error.to_string();
    assert!(
        matches!(error, SinkError::UnknownPartitionColumn { ref column, .. } if column == "country"),
        "{message}"
    );
    assert!(
        message.contains("orders_out") && message.contains("country"),
        "{message}"
    );

    let everything = target(
        dir.path(),
        parquet(),
        &["id", "name", "amount", "day", "region"],
        WriteMode::Append,
    );
    let error = stage(
        &everything,
        Arc::clone(&plan),
        Arc::clone(&task_ctx),
        "r1",
        &WriteLimits::default(),
    )
    .await
    .expect_err("no data columns");
    assert!(matches!(error, SinkError::NoDataColumns { .. }), "{error}");

    let fine = target(dir.path(), parquet(), &["region"], WriteMode::Append);
    let error = stage(
        &fine,
        Arc::clone(&plan),
        Arc::clone(&task_ctx),
        "../r1",
        &WriteLimits::default(),
    )
    .await
    .expect_err("bad run id");
    assert!(matches!(error, SinkError::InvalidRunId { .. }), "{error}");
    assert!(files(dir.path()).is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_nested_partition_column_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let ctx = SessionContext::new();
    let frame = ctx
        .sql("SELECT 1 AS id, make_array(1, 2) AS tags")
        .await
        .expect("query");
    let plan = frame.create_physical_plan().await.expect("plan");
    let target = target(dir.path(), parquet(), &["tags"], WriteMode::Append);
    let error = stage(&target, plan, ctx.task_ctx(), "r1", &WriteLimits::default())
        .await
        .expect_err("nested");
    assert!(
        matches!(error, SinkError::NestedPartitionColumn { ref column, .. } if column == "tags"),
        "{error}"
    );
}

#[tokio::test]
async fn a_failing_plan_stages_nothing_that_commit_could_see() {
    let dir = TempDir::new().expect("tempdir");
    let ctx = SessionContext::new();
    let frame = ctx
        .sql("SELECT CAST(v AS INT) AS n, 'EU' AS region FROM (VALUES ('1'), ('x')) AS t(v)")
        .await
        .expect("query");
    let plan = frame.create_physical_plan().await.expect("plan");
    let target = target(dir.path(), parquet(), &["region"], WriteMode::Overwrite);
    let error = stage(&target, plan, ctx.task_ctx(), "r1", &WriteLimits::default())
        .await
        .expect_err("cast fails");
    assert!(matches!(error, SinkError::Execute { .. }), "{error}");
    assert!(error.to_string().contains("orders_out"), "{error}");
    assert!(data_files(dir.path()).is_empty());
    clean_attempt(&target, "r1").await.expect("clean");
    assert!(files(dir.path()).is_empty());
}

/// Throughput of partitioned Parquet writing on lineitem-like rows (84 month partitions, rows in
/// no particular order). Run with `cargo test --release -p kglue-runner --lib
/// etl::sink::tests::throughput -- --ignored --nocapture`; `KGLUE_SINK_BENCH_ROWS` sets the size.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check"]
async fn throughput_of_partitioned_parquet() {
    let rows: usize = std::env::var("KGLUE_SINK_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let schema = Arc::new(Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, false),
        Field::new("l_partkey", DataType::Int64, false),
        Field::new("l_quantity", DataType::Float64, false),
        Field::new("l_extendedprice", DataType::Float64, false),
        Field::new("l_shipdate", DataType::Date32, false),
        Field::new("l_comment", DataType::Utf8, false),
        Field::new("ship_month", DataType::Utf8, false),
    ]));
    let months: Vec<String> = (0..84)
        .map(|m| format!("{}-{:02}", 1992 + m / 12, m % 12 + 1))
        .collect();
    let batch_rows = 8192;
    let streams = 4;
    let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); streams];
    let mut start = 0usize;
    while start < rows {
        let n = batch_rows.min(rows - start);
        let ids: Vec<i64> = (start..start + n).map(|i| i as i64).collect();
        // A multiplicative hash scatters months the way a scan of lineitem does.
        let month = |i: &i64| ((*i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % 84;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.iter().map(|i| i / 4).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i * 7 % 200_000).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| (i % 50) as f64).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| (i % 100_000) as f64 * 1.01).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                ids.iter().map(|i| 8036 + (month(i) * 30) as i32).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("carefully final deposits {}", i % 997)),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| months[month(i)].as_str()),
            )),
        ];
        partitions[(start / batch_rows) % streams].push(RecordBatch::try_new(schema.clone(), columns).expect("batch"));
        start += n;
    }
    // The grouping alone, on one thread, to see its share of the time.
    let began = std::time::Instant::now();
    let mut partitioner = super::partition::Partitioner::new(
        vec![6],
        vec!["ship_month".into()],
        (0..6).collect(),
        vec![DataType::Utf8],
    )
    .expect("partitioner");
    let mut pieces = 0;
    for batch in partitions.iter().flatten() {
        pieces += partitioner.split(batch).expect("split").len();
    }
    let grouping = began.elapsed();
    println!(
        "grouping: {pieces} pieces in {grouping:.2?} ({:.0} rows/s)",
        rows as f64 / grouping.as_secs_f64()
    );

    let dir = TempDir::new().expect("tempdir");
    let partition_by: &[&str] = if std::env::var("KGLUE_SINK_BENCH_UNPARTITIONED").is_ok() {
        &[]
    } else {
        &["ship_month"]
    };
    let target = target(dir.path(), parquet(), partition_by, WriteMode::Overwrite);
    let (plan, task_ctx) = plan_of(partitions).await;
    let began = std::time::Instant::now();
    let limits = WriteLimits {
        max_open_writers: std::env::var("KGLUE_SINK_BENCH_OPEN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(WriteLimits::default().max_open_writers),
        ..WriteLimits::default()
    };
    let staged = stage(&target, plan, task_ctx, "bench", &limits).await.expect("stage");
    println!(
        "peak open files {}, early flushes {}",
        staged.peak_open_files, staged.early_flushes
    );
    let staging = began.elapsed();
    let outcome = commit(&target, staged, "bench").await.expect("commit");
    let total = began.elapsed();
    println!(
        "{} rows, {} partitions, {} files, {} MiB: stage {:.2?} ({:.0} rows/s), commit {:.2?}",
        outcome.rows,
        outcome.partitions.len(),
        outcome.files,
        outcome.bytes / (1024 * 1024),
        staging,
        outcome.rows as f64 / staging.as_secs_f64(),
        total - staging
    );
    assert_eq!(outcome.rows, rows as u64);
    assert_eq!(outcome.partitions.len(), if partition_by.is_empty() { 0 } else { 84 });
}

#[tokio::test]
async fn high_cardinality_columns_give_up_dictionaries_early() {
    let dir = TempDir::new().expect("tempdir");
    let target = target(dir.path(), parquet(), &[], WriteMode::Append);
    // 100,000 distinct names (over 1 MiB of dictionary in all), two regions.
    let batches: Vec<RecordBatch> = (0..50)
        .map(|i| batch(i * 2000, 2000, &[Some("EU"), Some("US")]))
        .collect();
    run(&target, vec![batches], "r1", &WriteLimits::default()).await;
    let files = data_files(dir.path());
    assert!(!files.is_empty());
    // The dictionary page comes first in a column chunk: its size is the gap to the data pages.
    let largest_dictionary_page = |column: usize| {
        let mut largest = 0;
        for file in &files {
            for group in parquet_metadata(dir.path().join(file)).row_groups() {
                let chunk = group.column(column);
                if let Some(start) = chunk.dictionary_page_offset() {
                    largest = largest.max(chunk.data_page_offset() - start);
                }
            }
        }
        largest
    };
    let names = largest_dictionary_page(1);
    assert!(
        names <= super::file::DICTIONARY_PAGE_LIMIT_BYTES as i64 + 1024,
        "the names' dictionary stops at the limit: {names} bytes"
    );
    assert!(largest_dictionary_page(4) > 0, "regions keep their dictionary");
}
