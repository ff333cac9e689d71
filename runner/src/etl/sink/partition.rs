//! Hive-style partition folders: which rows of a batch go to which folder, and how a value becomes
//! a folder name.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::HashMap;

/// The folder name Hive, Spark and Glue use for a NULL (or empty) partition value.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether Hive's `FileUtils.escapePathName` escapes `c`. NUL is added to Hive's list because an
/// object-store path cannot carry control characters at all.
fn escaped_by_hive(c: char) -> bool {
    matches!(
        c,
        '\u{00}'
            ..='\u{1F}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '\u{7F}'
                | '{'
                | '['
                | ']'
                | '^'
    )
}

/// Appends `s` to `out` escaped as Hive's `FileUtils.escapePathName` does, so Hive, Spark, Trino
/// and DataFusion (which percent-decode folder names) read the value back unchanged.
pub(crate) fn escape_path_name(s: &str, out: &mut String) {
    for c in s.chars() {
        if escaped_by_hive(c) {
            // Infallible: writing to a String.
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// A folder name's value as Hive's `FileUtils.unescapePathName` reads it back (`%XX` decoded).
pub(crate) fn unescape_path_name(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A partition as the catalog sees it: its folder relative to the sink's root and the value of
/// each partition column (`None` for NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionKey {
    /// `col=value/col2=value2`, escaped; empty without partition columns.
    pub rel: String,
    /// `(column, value)` in `partitionBy` order; the value unescaped, as arrow displays it.
    pub values: Vec<(String, Option<String>)>,
}

/// Splits batches by the values of the partition columns.
///
/// Rows are keyed by arrow's row format (one byte string per row for all partition columns),
/// looked up in a hash map that lives as long as the stream, so a folder name is formatted once
/// per distinct partition, never per row. Each batch is then reordered with a single `take` so
/// that every partition's rows are one contiguous slice.
pub(crate) struct Partitioner {
    columns: Vec<usize>,
    names: Vec<String>,
    data_columns: Vec<usize>,
    converter: Option<RowConverter>,
    ids: HashMap<Box<[u8]>, u32>,
    by_folder: HashMap<String, u32>,
    keys: Vec<PartitionKey>,
    /// Per partition id: its dense index in the batch being split, or `u32::MAX`.
    local_of: Vec<u32>,
    /// Per row of the batch being split: the dense index of its partition.
    row_group: Vec<u32>,
}

/// One partition's rows of a batch.
pub(crate) struct Piece {
    /// The partition id (an index into [`Partitioner::key`]).
    pub id: usize,
    /// Its rows, without the partition columns.
    pub batch: RecordBatch,
}

impl Partitioner {
    /// `columns`/`names`: the partition columns (index in the input, folder name), outermost
    /// first; `data_columns`: the input columns that go into the files.
    pub(crate) fn new(
        columns: Vec<usize>,
        names: Vec<String>,
        data_columns: Vec<usize>,
        types: Vec<datafusion::arrow::datatypes::DataType>,
    ) -> Result<Self, ArrowError> {
        let converter = if columns.is_empty() {
            None
        } else {
            Some(RowConverter::new(types.into_iter().map(SortField::new).collect())?)
        };
        let mut partitioner = Partitioner {
            columns,
            names,
            data_columns,
            converter,
            ids: HashMap::default(),
            by_folder: HashMap::default(),
            keys: Vec::new(),
            local_of: Vec::new(),
            row_group: Vec::new(),
        };
        if partitioner.converter.is_none() {
            // Without partition columns every row goes to the one partition at the root.
            partitioner.keys.push(PartitionKey {
                rel: String::new(),
                values: Vec::new(),
            });
            partitioner.local_of.push(u32::MAX);
        }
        Ok(partitioner)
    }

    /// The folder and values of partition `id`.
    pub(crate) fn key(&self, id: usize) -> &PartitionKey {
        &self.keys[id]
    }

    /// Splits `batch` into one piece per partition present in it, partition columns removed.
    pub(crate) fn split(&mut self, batch: &RecordBatch) -> Result<Vec<Piece>, ArrowError> {
        let data = batch.project(&self.data_columns)?;
        let Some(converter) = &self.converter else {
            return Ok(vec![Piece { id: 0, batch: data }]);
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let key_columns: Vec<ArrayRef> = self.columns.iter().map(|&c| batch.column(c).clone()).collect();
        let encoded = converter.convert_columns(&key_columns)?;

        // Pass 1: the partition of every row; new partitions get their folder name here.
        let mut present: Vec<usize> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        self.row_group.clear();
        self.row_group.reserve(rows);
        let mut formatters: Option<Vec<ArrayFormatter<'_>>> = None;
        let format_options = FormatOptions::default();
        let mut previous: Option<(&[u8], u32)> = None;
        for row in 0..rows {
            let bytes = encoded.row(row).data();
            let local = match previous {
                // Sorted or clustered input repeats the same key: skip the hash lookup.
                Some((last, local)) if last == bytes => local,
                _ => {
                    let id = match self.ids.get(bytes) {
                        Some(&id) => id as usize,
                        None => {
                            let formatters = match &mut formatters {
                                Some(f) => f,
                                None => formatters.insert(
                                    key_columns
                                        .iter()
                                        .map(|a| ArrayFormatter::try_new(a.as_ref(), &format_options))
                                        .collect::<Result<_, _>>()?,
                                ),
                            };
                            let key = format_key(&self.names, &key_columns, formatters, row);
                            // Different values can share a folder (NULL and '' both go to the
                            // default partition): they must share the partition, or their files
                            // would have the same names.
                            let id = match self.by_folder.get(&key.rel) {
                                Some(&id) => id as usize,
                                None => {
                                    let id = self.keys.len();
                                    self.by_folder.insert(key.rel.clone(), id as u32);
                                    self.keys.push(key);
                                    self.local_of.push(u32::MAX);
                                    id
                                }
                            };
                            self.ids.insert(bytes.into(), id as u32);
                            id
                        }
                    };
                    let local = match self.local_of[id] {
                        u32::MAX => {
                            let local = present.len() as u32;
                            self.local_of[id] = local;
                            present.push(id);
                            counts.push(0);
                            local
                        }
                        local => local,
                    };
                    previous = Some((bytes, local));
                    local
                }
            };
            counts[local as usize] += 1;
            self.row_group.push(local);
        }
        for &id in &present {
            self.local_of[id] = u32::MAX;
        }
        if present.len() == 1 {
            return Ok(vec![Piece {
                id: present[0],
                batch: data,
            }]);
        }

        // Pass 2: a counting sort of row numbers by partition, then one `take` for all columns.
        let mut offsets = Vec::with_capacity(counts.len());
        let mut next = 0u32;
        for &count in &counts {
            offsets.push(next);
            next += count;
        }
        let mut order = vec![0u32; rows];
        let mut cursor = offsets.clone();
        for (row, &local) in self.row_group.iter().enumerate() {
            let slot = &mut cursor[local as usize];
            order[*slot as usize] = row as u32;
            *slot += 1;
        }
        let sorted = take_record_batch(&data, &UInt32Array::from(order))?;
        Ok(present
            .iter()
            .zip(offsets.iter().zip(&counts))
            .map(|(&id, (&offset, &count))| Piece {
                id,
                batch: sorted.slice(offset as usize, count as usize),
            })
            .collect())
    }
}

/// The folder and values of the partition of `row`.
fn format_key(names: &[String], columns: &[ArrayRef], formatters: &[ArrayFormatter<'_>], row: usize) -> PartitionKey {
    let mut rel = String::new();
    let mut values = Vec::with_capacity(names.len());
    for ((name, column), formatter) in names.iter().zip(columns).zip(formatters) {
        if !rel.is_empty() {
            rel.push('/');
        }
        escape_path_name(name, &mut rel);
        rel.push('=');
        let value = if column.is_null(row) {
            None
        } else {
            Some(formatter.value(row).to_string())
        };
        // Hive and Spark give an empty string the NULL folder too: `col=` is not a folder name
        // other engines read back.
        match value.as_deref() {
            None | Some("") => rel.push_str(HIVE_DEFAULT_PARTITION),
            Some(v) => escape_path_name(v, &mut rel),
        }
        values.push((name.clone(), value.filter(|v| !v.is_empty())));
    }
    PartitionKey { rel, values }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape_path_name(s, &mut out);
        out
    }

    #[test]
    fn escaping_follows_hive() {
        assert_eq!(escaped("plain-value_1.2 x"), "plain-value_1.2 x");
        assert_eq!(
            escaped("a/b:c=d%e#f?g*h'i\"j\\k{l[m]n^o\u{7f}\u{01}"),
            "a%2Fb%3Ac%3Dd%25e%23f%3Fg%2Ah%27i%22j%5Ck%7Bl%5Bm%5Dn%5Eo%7F%01"
        );
        assert_eq!(escaped("é}"), "é}", "non-ASCII and '}}' stay as they are, as in Hive");
    }

    #[test]
    fn rows_are_grouped_with_one_folder_name_per_partition() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("day", DataType::Date32, true),
            Field::new("region", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
                Arc::new(Date32Array::from(vec![
                    Some(19753),
                    Some(19753),
                    None,
                    Some(19753),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("EU"),
                    Some("US"),
                    Some("EU"),
                    Some("EU"),
                    Some(""),
                ])),
            ],
        )
        .expect("batch");
        let mut partitioner = Partitioner::new(
            vec![1, 2],
            vec!["day".into(), "region".into()],
            vec![0],
            vec![DataType::Date32, DataType::Utf8],
        )
        .expect("partitioner");
        let pieces = partitioner.split(&batch).expect("split");
        let mut seen: Vec<(String, Vec<i64>)> = pieces
            .iter()
            .map(|p| {
                assert_eq!(p.batch.num_columns(), 1, "partition columns are not in the data");
                let ids = p.batch.column(0).as_any().downcast_ref::<Int64Array>().expect("ids");
                (partitioner.key(p.id).rel.clone(), ids.values().to_vec())
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("day=2024-01-31/region=EU".to_string(), vec![1, 4]),
                ("day=2024-01-31/region=US".to_string(), vec![2]),
                ("day=__HIVE_DEFAULT_PARTITION__/region=EU".to_string(), vec![3]),
                (
                    "day=__HIVE_DEFAULT_PARTITION__/region=__HIVE_DEFAULT_PARTITION__".to_string(),
                    vec![5]
                ),
            ]
        );
        let first = pieces.iter().find(|p| p.batch.num_rows() == 2).expect("EU piece");
        assert_eq!(
            partitioner.key(first.id).values,
            [
                ("day".to_string(), Some("2024-01-31".to_string())),
                ("region".to_string(), Some("EU".to_string()))
            ]
        );

        // The same keys in a later batch map to the same partitions.
        let again = partitioner.split(&batch.slice(0, 1)).expect("split");
        assert_eq!(again.len(), 1);
        assert_eq!(partitioner.key(again[0].id).rel, "day=2024-01-31/region=EU");
    }
}
