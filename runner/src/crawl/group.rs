//! Grouping files into tables and partitions.
//!
//! Without settings, a folder is one table when everything below it has compatible schemas and
//! sits at the same depth: the folder levels below it are partitions (Hive-style `key=value`
//! folders give the key's name, others `partition_0`, `partition_1`, …). Otherwise its
//! sub-folders are examined the same way. Hive-style folders are always partitions, never
//! tables. `tableLevel` fixes the depth of table roots, and path templates such as
//! `{table}/{dt}/{region}/*` state the layout outright.

use std::collections::{BTreeMap, BTreeSet};

use kglue_crds::glue_type::GlueType;

use crate::crawl::text_type::infer_text;

use super::classify::FileSchema;
use super::infer::InferredColumn;

/// A file as grouping sees it.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Folders between the target and the file.
    pub folders: Vec<String>,
    /// The file name.
    pub file_name: String,
    /// The file's schema, when it was sampled and classified.
    pub schema: Option<FileSchema>,
}

impl FileEntry {
    fn path(&self) -> String {
        self.folders
            .iter()
            .chain([&self.file_name])
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Partition keys and values of one file, outermost first (`[("dt", "2024-01-01")]`).
type PartitionValues = Vec<(String, String)>;

/// Files assigned to tables: table root folders → (file index, its partition values).
type Assignment = BTreeMap<Vec<String>, Vec<(usize, PartitionValues)>>;

/// A path template: `{table}` marks the table folder, `{name}` a partition folder, `*` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Table,
    Partition(String),
    Literal(String),
    Files,
}

impl PathTemplate {
    /// Parses a template; it needs exactly one `{table}` and ends with `*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        for part in text.trim_matches('/').split('/') {
            segments.push(match part {
                "{table}" => Segment::Table,
                "*" => Segment::Files,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    Segment::Partition(p[1..p.len() - 1].into())
                }
                p if p.contains(['{', '}', '*']) => {
                    return Err(format!("path template {text:?}: cannot read segment {p:?}"));
                }
                p => Segment::Literal(p.into()),
            });
        }
        if segments.iter().filter(|s| **s == Segment::Table).count() != 1 {
            return Err(format!("path template {text:?} needs exactly one {{table}} segment"));
        }
        if segments.last() != Some(&Segment::Files) || segments.iter().filter(|s| **s == Segment::Files).count() != 1 {
            return Err(format!("path template {text:?} must end with a single * for the files"));
        }
        Ok(PathTemplate {
            segments,
            text: text.to_string(),
        })
    }

    /// For a file, the table root (folders up to and including `{table}`) and the partition keys
    /// and values, if the file's path fits the template.
    fn fit(&self, entry: &FileEntry) -> Option<(Vec<String>, PartitionValues)> {
        if entry.folders.len() + 1 != self.segments.len() {
            return None;
        }
        let mut root = Vec::new();
        let mut partitions = Vec::new();
        let mut past_table = false;
        for (segment, folder) in self.segments.iter().zip(&entry.folders) {
            match segment {
                Segment::Literal(literal) if literal != folder => return None,
                Segment::Literal(_) if !past_table => root.push(folder.clone()),
                Segment::Literal(_) => {}
                Segment::Table => {
                    root.push(folder.clone());
                    past_table = true;
                }
                Segment::Partition(name) => {
                    let value = match folder.split_once('=') {
                        Some((key, value)) if key == name => value.to_string(),
                        _ => folder.clone(),
                    };
                    partitions.push((name.clone(), value));
                }
                Segment::Files => return None,
            }
        }
        Some((root, partitions))
    }
}

/// How to group.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// The depth of table roots below the target (1 = the target's sub-folders).
    pub table_level: Option<usize>,
    /// Explicit layouts, tried in order.
    pub templates: Vec<PathTemplate>,
    /// Group files whose formats match even when their columns differ.
    pub combine_compatible_schemas: bool,
}

/// A file that belongs to a table but disagrees with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The file, relative to the target.
    pub file: String,
    /// What it holds that the table does not.
    pub message: String,
}

/// One table found in a target.
#[derive(Debug, Clone, PartialEq)]
pub struct TableGroup {
    /// The table's root folder relative to the target (empty: the target itself).
    pub root: Vec<String>,
    /// The table's schema, merged over its sampled files.
    pub schema: FileSchema,
    /// Partition keys, outermost first, with types inferred from their values.
    pub partition_keys: Vec<InferredColumn>,
    /// The partitions as values per key, in order.
    pub partitions: BTreeSet<Vec<String>>,
    /// How many files belong to the table.
    pub files: usize,
    /// Sampled files that do not fit the table's format.
    pub conflicts: Vec<Conflict>,
    /// For each column and each type it was seen with, the first file that held it: what a
    /// drift message names as the object that disagrees.
    pub column_examples: Vec<(String, GlueType, String)>,
}

/// The grouping of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grouping {
    /// The tables, by root folder.
    pub tables: Vec<TableGroup>,
    /// Files that belong to no table, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Groups `entries` (the files of one target, in key order) into tables.
pub fn group(entries: &[FileEntry], options: &GroupOptions) -> Grouping {
    let mut grouping = Grouping::default();
    // Each table: root → (files with their partition values).
    let mut assigned = Assignment::new();
    if !options.templates.is_empty() {
        for (i, entry) in entries.iter().enumerate() {
            match options.templates.iter().find_map(|t| t.fit(entry)) {
                Some((root, partitions)) => assigned.entry(root).or_default().push((i, partitions)),
                None => grouping
                    .skipped
                    .push((entry.path(), "fits none of the path templates".into())),
            }
        }
    } else if let Some(level) = options.table_level {
        for (i, entry) in entries.iter().enumerate() {
            if entry.folders.len() < level {
                grouping
                    .skipped
                    .push((entry.path(), format!("sits above table level {level}")));
                continue;
            }
            let (root, rest) = entry.folders.split_at(level);
            assigned
                .entry(root.to_vec())
                .or_default()
                .push((i, partition_values(rest)));
        }
    } else {
        let indices: Vec<usize> = (0..entries.len()).collect();
        find_roots(entries, &indices, 0, options, &mut assigned, &mut grouping.skipped);
    }
    for (root, files) in assigned {
        match build_table(entries, root, &files) {
            Ok(table) => grouping.tables.push(table),
            Err(reason) => grouping
                .skipped
                .extend(files.iter().map(|(i, _)| (entries[*i].path(), reason.clone()))),
        }
    }
    grouping
}

/// Partition keys and values of folders below a table root.
fn partition_values(folders: &[String]) -> PartitionValues {
    folders
        .iter()
        .enumerate()
        .map(|(i, folder)| match folder.split_once('=') {
            Some((key, value)) if !key.is_empty() => (key.to_string(), value.to_string()),
            _ => (positional_key(i), folder.clone()),
        })
        .collect()
}

/// The key a crawler names a partition level whose folders are bare values (`2024/05/`) rather
/// than `key=value`: `partition_<level>`, counting from 0 as Glue does. Readers take a key of that
/// name at that level to mean folders named by the value alone.
pub fn positional_key(level: usize) -> String {
    format!("partition_{level}")
}

fn is_hive(folder: &str) -> bool {
    folder.split_once('=').is_some_and(|(key, _)| !key.is_empty())
}

/// Decides the table roots below the folder at `depth` holding `files`.
fn find_roots(
    entries: &[FileEntry],
    files: &[usize],
    depth: usize,
    options: &GroupOptions,
    assigned: &mut Assignment,
    skipped: &mut Vec<(String, String)>,
) {
    let Some(&first) = files.first() else {
        return;
    };
    let root: Vec<String> = entries[first].folders[..depth].to_vec();
    let same_depth = files
        .iter()
        .all(|&i| entries[i].folders.len() == entries[first].folders.len());
    let children: BTreeSet<&str> = files
        .iter()
        .filter_map(|&i| entries[i].folders.get(depth).map(String::as_str))
        .collect();
    let hive_children = !children.is_empty() && children.iter().all(|c| is_hive(c));
    if hive_children || (same_depth && compatible(entries, files, options)) {
        let table = files
            .iter()
            .map(|&i| (i, partition_values(&entries[i].folders[depth..])))
            .collect();
        assigned.insert(root, table);
        return;
    }
    for child in children {
        let below: Vec<usize> = files
            .iter()
            .copied()
            .filter(|&i| entries[i].folders.get(depth).map(String::as_str) == Some(child))
            .collect();
        find_roots(entries, &below, depth + 1, options, assigned, skipped);
    }
    for &i in files.iter().filter(|&&i| entries[i].folders.len() == depth) {
        skipped.push((
            entries[i].path(),
            "sits beside folders that are separate tables; move it into a folder of its own".into(),
        ));
    }
}

/// Whether the sampled files share a format and similar columns (at least 70% of the column
/// names in common, as Glue's similarity threshold; any columns with `combineCompatibleSchemas`).
fn compatible(entries: &[FileEntry], files: &[usize], options: &GroupOptions) -> bool {
    let schemas: Vec<&FileSchema> = files.iter().filter_map(|&i| entries[i].schema.as_ref()).collect();
    let Some(first) = schemas.first() else {
        return true;
    };
    schemas.iter().all(|s| {
        same_format(s, first) && (options.combine_compatible_schemas || similarity(&s.columns, &first.columns) >= 0.7)
    })
}

fn same_format(a: &FileSchema, b: &FileSchema) -> bool {
    a.classification == b.classification
        && a.format.format == b.format.format
        && a.format.csv.as_ref().map(|c| &c.delimiter) == b.format.csv.as_ref().map(|c| &c.delimiter)
}

fn similarity(a: &[InferredColumn], b: &[InferredColumn]) -> f64 {
    let names =
        |columns: &[InferredColumn]| -> BTreeSet<String> { columns.iter().map(|c| c.name.to_lowercase()).collect() };
    let (a, b) = (names(a), names(b));
    let union = a.union(&b).count();
    if union == 0 {
        1.0
    } else {
        a.intersection(&b).count() as f64 / union as f64
    }
}

fn build_table(
    entries: &[FileEntry],
    root: Vec<String>,
    files: &[(usize, PartitionValues)],
) -> Result<TableGroup, String> {
    let sampled: Vec<(&FileEntry, &FileSchema)> = files
        .iter()
        .filter_map(|(i, _)| entries[*i].schema.as_ref().map(|schema| (&entries[*i], schema)))
        .collect();
    let Some((_, first)) = sampled.first() else {
        return Err("no file of its table could be classified".into());
    };
    let mut schema = (*first).clone();
    let mut conflicts = Vec::new();
    let mut column_examples: Vec<(String, GlueType, String)> = Vec::new();
    for (entry, other) in &sampled {
        if !same_format(other, &schema) {
            conflicts.push(Conflict {
                file: entry.path(),
                message: format!(
                    "holds {} where the table is {}",
                    other.classification, schema.classification
                ),
            });
            continue;
        }
        merge_columns(&mut schema.columns, &other.columns);
        for column in &other.columns {
            if !column_examples
                .iter()
                .any(|(name, type_, _)| *name == column.name && *type_ == column.type_)
            {
                column_examples.push((column.name.clone(), column.type_.clone(), entry.path()));
            }
        }
    }
    // Partition keys come from the first file; files whose folders name other keys conflict.
    let keys: Vec<String> = files[0].1.iter().map(|(key, _)| key.clone()).collect();
    let mut partitions = BTreeSet::new();
    let mut key_types: Vec<Option<GlueType>> = vec![None; keys.len()];
    for (i, values) in files {
        let names: Vec<&String> = values.iter().map(|(key, _)| key).collect();
        if names.iter().copied().ne(keys.iter()) {
            conflicts.push(Conflict {
                file: entries[*i].path(),
                message: format!("lies in partition folders {names:?} where the table's keys are {keys:?}"),
            });
            continue;
        }
        for ((_, value), type_) in values.iter().zip(key_types.iter_mut()) {
            let inferred = infer_text(value).unwrap_or(GlueType::String);
            *type_ = Some(match type_.take() {
                Some(existing) => existing.widen(&inferred),
                None => inferred,
            });
        }
        partitions.insert(values.iter().map(|(_, value)| value.clone()).collect());
    }
    let partition_keys = keys
        .into_iter()
        .zip(key_types)
        .map(|(name, type_)| InferredColumn {
            name,
            type_: type_.unwrap_or(GlueType::String),
        })
        .collect();
    Ok(TableGroup {
        root,
        schema,
        partition_keys,
        partitions,
        files: files.len(),
        conflicts,
        column_examples,
    })
}

/// Adds `other`'s columns to `columns`: common ones widened, new ones appended.
pub fn merge_columns(columns: &mut Vec<InferredColumn>, other: &[InferredColumn]) {
    for column in other {
        match columns.iter_mut().find(|c| c.name.eq_ignore_ascii_case(&column.name)) {
            Some(existing) => existing.type_ = existing.type_.widen(&column.type_),
            None => columns.push(column.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use kglue_crds::common::{DataFormat, FormatSpec};

    use super::*;

    fn csv_schema(columns: &[(&str, &str)]) -> FileSchema {
        FileSchema {
            classification: "csv".into(),
            classifier: None,
            format: FormatSpec {
                format: DataFormat::Csv,
                compression: None,
                csv: None,
                json: None,
                grok: None,
                kafka: None,
            },
            columns: columns
                .iter()
                .map(|(n, t)| InferredColumn {
                    name: n.to_string(),
                    type_: GlueType::parse(t).expect(t),
                })
                .collect(),
        }
    }

    fn json_schema() -> FileSchema {
        FileSchema {
            classification: "json".into(),
            format: FormatSpec {
                format: DataFormat::Json,
                compression: None,
                csv: None,
                json: None,
                grok: None,
                kafka: None,
            },
            ..csv_schema(&[("x", "int")])
        }
    }

    fn entry(path: &str, schema: Option<FileSchema>) -> FileEntry {
        let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
        let file_name = parts.pop().expect("a file name");
        FileEntry {
            folders: parts,
            file_name,
            schema,
        }
    }

    fn summary(grouping: &Grouping) -> Vec<String> {
        grouping
            .tables
            .iter()
            .map(|t| {
                let keys: Vec<String> = t
                    .partition_keys
                    .iter()
                    .map(|k| format!("{}:{}", k.name, k.type_))
                    .collect();
                format!(
                    "/{} keys={} partitions={} files={}",
                    t.root.join("/"),
                    keys.join(","),
                    t.partitions.len(),
                    t.files
                )
            })
            .collect()
    }

    #[test]
    fn hive_folders_are_partitions_of_one_table() {
        let orders = csv_schema(&[("id", "int"), ("amount", "double")]);
        let entries = vec![
            entry("dt=2024-01-01/region=eu/part-0.csv", Some(orders.clone())),
            entry("dt=2024-01-01/region=us/part-0.csv", Some(orders.clone())),
            entry("dt=2024-01-02/region=eu/part-0.csv", None),
        ];
        let grouping = group(&entries, &GroupOptions::default());
        assert_eq!(
            summary(&grouping),
            ["/ keys=dt:date,region:string partitions=3 files=3"]
        );
    }

    #[test]
    fn folders_with_different_schemas_are_separate_tables() {
        let entries = vec![
            entry("customers/part-0.json", Some(json_schema())),
            entry(
                "orders/2024/01/part-0.csv",
                Some(csv_schema(&[("id", "int"), ("amount", "double"), ("day", "date")])),
            ),
            entry(
                "orders/2024/02/part-0.csv",
                Some(csv_schema(&[
                    ("id", "bigint"),
                    ("amount", "double"),
                    ("day", "date"),
                    ("note", "string"),
                ])),
            ),
        ];
        let grouping = group(&entries, &GroupOptions::default());
        assert_eq!(
            summary(&grouping),
            [
                "/customers keys= partitions=1 files=1",
                // "01" keeps its leading zero: a string, as Glue types it.
                "/orders keys=partition_0:int,partition_1:string partitions=2 files=2"
            ]
        );
        let orders = &grouping.tables[1];
        let columns: Vec<String> = orders
            .schema
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.type_))
            .collect();
        // 3 of 4 column names in common: similar enough to be one table, columns merged.
        assert_eq!(columns, ["id:bigint", "amount:double", "day:date", "note:string"]);
    }

    #[test]
    fn dissimilar_columns_split_a_folder_unless_combined() {
        let entries = vec![
            entry("a/x.csv", Some(csv_schema(&[("id", "int"), ("name", "string")]))),
            entry("b/y.csv", Some(csv_schema(&[("sku", "string"), ("qty", "int")]))),
        ];
        assert_eq!(
            summary(&group(&entries, &GroupOptions::default())),
            ["/a keys= partitions=1 files=1", "/b keys= partitions=1 files=1"]
        );
        let combined = GroupOptions {
            combine_compatible_schemas: true,
            ..GroupOptions::default()
        };
        assert_eq!(
            summary(&group(&entries, &combined)),
            ["/ keys=partition_0:string partitions=2 files=2"]
        );
    }

    #[test]
    fn table_level_fixes_the_roots() {
        let schema = csv_schema(&[("id", "int")]);
        let entries = vec![
            entry("top.csv", Some(schema.clone())),
            entry("sales/orders/year=2024/a.csv", Some(schema.clone())),
            entry("sales/orders/year=2025/b.csv", Some(schema.clone())),
            entry("sales/returns/year=2024/c.csv", Some(schema)),
        ];
        let grouping = group(
            &entries,
            &GroupOptions {
                table_level: Some(2),
                ..GroupOptions::default()
            },
        );
        assert_eq!(
            summary(&grouping),
            [
                "/sales/orders keys=year:int partitions=2 files=2",
                "/sales/returns keys=year:int partitions=1 files=1"
            ]
        );
        assert_eq!(
            grouping.skipped,
            [("top.csv".to_string(), "sits above table level 2".to_string())]
        );
    }

    #[test]
    fn path_templates_state_the_layout() {
        let schema = csv_schema(&[("id", "int")]);
        let entries = vec![
            entry("raw/events/2024-01-01/eu/a.csv", Some(schema.clone())),
            entry("raw/events/2024-01-02/us/b.csv", Some(schema.clone())),
            entry("raw/clicks/2024-01-01/eu/c.csv", Some(schema.clone())),
            entry("raw/misc/d.csv", Some(schema)),
        ];
        let template = PathTemplate::parse("raw/{table}/{dt}/{region}/*").expect("valid");
        let grouping = group(
            &entries,
            &GroupOptions {
                templates: vec![template],
                ..GroupOptions::default()
            },
        );
        assert_eq!(
            summary(&grouping),
            [
                "/raw/clicks keys=dt:date,region:string partitions=1 files=1",
                "/raw/events keys=dt:date,region:string partitions=2 files=2"
            ]
        );
        assert_eq!(
            grouping.skipped,
            [(
                "raw/misc/d.csv".to_string(),
                "fits none of the path templates".to_string()
            )]
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(
            PathTemplate::parse("{dt}/*")
                .expect_err("no table")
                .contains("exactly one {table}")
        );
        assert!(
            PathTemplate::parse("{table}/{dt}")
                .expect_err("no files")
                .contains("must end with a single *")
        );
        assert!(
            PathTemplate::parse("{table}/x{y}/*")
                .expect_err("bad segment")
                .contains("cannot read segment")
        );
    }

    #[test]
    fn a_file_of_another_format_in_a_partition_is_a_conflict_naming_it() {
        let entries = vec![
            entry("dt=2024-01-01/a.csv", Some(csv_schema(&[("id", "int")]))),
            entry("dt=2024-01-02/b.json", Some(json_schema())),
        ];
        let grouping = group(&entries, &GroupOptions::default());
        assert_eq!(grouping.tables.len(), 1);
        assert_eq!(
            grouping.tables[0].conflicts,
            [Conflict {
                file: "dt=2024-01-02/b.json".into(),
                message: "holds json where the table is csv".into()
            }]
        );
    }

    #[test]
    fn files_beside_table_folders_are_reported() {
        let entries = vec![
            entry("readme.json", Some(json_schema())),
            entry("a/x.csv", Some(csv_schema(&[("id", "int")]))),
        ];
        let grouping = group(&entries, &GroupOptions::default());
        assert_eq!(summary(&grouping), ["/a keys= partitions=1 files=1"]);
        assert_eq!(grouping.skipped.len(), 1);
        assert!(
            grouping.skipped[0]
                .1
                .contains("beside folders that are separate tables")
        );
    }

    /// File paths as a listing gives them: a few folder levels of `key=value`, plain, empty-key
    /// (`=x`), empty-value (`k=`) and odd folders, each file sampled as CSV, JSON or not at all.
    fn listing() -> impl proptest::strategy::Strategy<Value = Vec<FileEntry>> {
        use proptest::prelude::*;
        let folder = prop_oneof![
            "(dt|region|k)=[0-9a-z=%. -]{0,6}",
            "[a-z0-9]{1,4}",
            "=[a-z]{0,3}",
            "\\PC{0,5}",
        ];
        let file = (
            proptest::collection::vec(folder, 0..5),
            "[a-z]{1,3}\\.(csv|json)",
            0..3u8,
        )
            .prop_map(|(folders, file_name, kind)| FileEntry {
                folders,
                file_name,
                schema: match kind {
                    0 => None,
                    1 => Some(json_schema()),
                    _ => Some(csv_schema(&[("id", "int"), ("amount", "double")])),
                },
            });
        proptest::collection::vec(file, 0..24).prop_map(|mut entries| {
            // A listing is in key order.
            entries.sort_by_key(|e| e.path());
            entries
        })
    }

    proptest::proptest! {
        // The partition-path reading of a crawl (table roots, `key=value` and plain partition
        // folders, path templates): any listing is grouped without a panic, and every file ends
        // in exactly one table or is reported skipped with a reason: nothing is dropped.
        #[test]
        fn any_listing_is_grouped_and_every_file_accounted_for(entries in listing(), level in proptest::option::of(0usize..4), template in proptest::option::of("(\\{table\\}|\\{dt\\}|[a-z]{1,3}|\\*|\\PC{0,3})(/(\\{table\\}|\\{dt\\}|[a-z]{1,3}|\\*|\\PC{0,3})){0,3}")) {
            let templates = template.and_then(|t| PathTemplate::parse(&t).ok()).into_iter().collect();
            let options = GroupOptions { table_level: level, templates, combine_compatible_schemas: false };
            let grouping = group(&entries, &options);
            let grouped: usize = grouping.tables.iter().map(|t| t.files).sum();
            proptest::prop_assert_eq!(grouped + grouping.skipped.len(), entries.len(), "{:?}", grouping);
            for table in &grouping.tables {
                for partition in &table.partitions {
                    proptest::prop_assert_eq!(partition.len(), table.partition_keys.len());
                }
            }
        }

        // Any template text is read or refused with a message naming it.
        #[test]
        fn any_path_template_is_read_or_refused(text in "\\PC{0,40}") {
            if let Err(message) = PathTemplate::parse(&text) {
                proptest::prop_assert!(message.contains("path template"), "{}", message);
            }
        }
    }
}
