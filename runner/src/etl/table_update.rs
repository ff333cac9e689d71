//! The catalog side of a sink: the Table a sink names is created or updated with the output's
//! schema and partitions — or, when it is locked, the output must fit it before anything is
//! written.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::Schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kglue_crds::common::{Column, StorageSpec, TableRef};
use kglue_crds::glue_type::{GlueType, TypeChange};
use kglue_crds::job::WriteMode;
use kglue_crds::table::{PartitionSummary, TableUpdate};
use kglue_crds::{Table, TableSpec};

use super::sink::SinkPartition;
use crate::crawl::infer::from_arrow;
use crate::crawl::plan::object_name;

/// How many partitions a Table's summary names (the CRD's bound).
const NEWEST_PARTITIONS: usize = 10;

/// Why a sink's output does not go with its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink {sink}: table {table}: {problem}")]
pub struct TableMismatch {
    /// The sink.
    pub sink: String,
    /// `database.table`.
    pub table: String,
    /// What does not fit, naming the column.
    pub problem: String,
}

/// What the sink's output must look like: each column's Glue type, in output order, with
/// partition columns apart.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputShape {
    /// Data columns (not partition keys), in order.
    pub columns: Vec<(String, GlueType)>,
    /// Partition columns, outermost first.
    pub partition_keys: Vec<(String, GlueType)>,
}

impl OutputShape {
    /// The shape of an output schema given the sink's `partitionBy`.
    pub fn of(schema: &Schema, partition_by: &[String]) -> Self {
        let typed = |name: &str| {
            schema
                .field_with_name(name)
                .map(|f| from_arrow(f.data_type()))
                .unwrap_or(GlueType::String)
        };
        OutputShape {
            columns: schema
                .fields()
                .iter()
                .filter(|f| !partition_by.contains(f.name()))
                .map(|f| (f.name().clone(), from_arrow(f.data_type())))
                .collect(),
            partition_keys: partition_by.iter().map(|p| (p.clone(), typed(p))).collect(),
        }
    }
}

/// The types the output must be cast to so its files read as the existing table says: for each
/// output column the table has, the table's type. `Err` when a column cannot fit: the table is
/// locked and the output differs, or the types are incompatible and the write mode keeps old data
/// that the new type could not read.
pub fn conform(
    sink: &str,
    table_ref: &TableRef,
    existing: &Table,
    shape: &OutputShape,
    mode: WriteMode,
) -> Result<BTreeMap<String, GlueType>, TableMismatch> {
    let mismatch = |problem: String| TableMismatch {
        sink: sink.to_string(),
        table: format!("{}.{}", table_ref.database, table_ref.table),
        problem,
    };
    let spec = &existing.spec;
    let parse = |column: &Column| {
        GlueType::parse(&column.type_).map_err(|e| {
            mismatch(format!(
                "column {} has type {:?}, which does not parse: {e}",
                column.name, column.type_
            ))
        })
    };
    let table_keys: Vec<&str> = spec.partition_keys.iter().map(|c| c.name.as_str()).collect();
    let output_keys: Vec<&str> = shape.partition_keys.iter().map(|(n, _)| n.as_str()).collect();
    if table_keys != output_keys && (spec.schema_locked || mode != WriteMode::Overwrite) {
        return Err(mismatch(format!(
            "the table is partitioned by [{}] but the sink writes partitionBy [{}]",
            table_keys.join(", "),
            output_keys.join(", ")
        )));
    }
    let mut casts = BTreeMap::new();
    for (name, output_type) in shape.columns.iter().chain(&shape.partition_keys) {
        let declared = spec
            .columns
            .iter()
            .chain(&spec.partition_keys)
            .find(|c| c.name.eq_ignore_ascii_case(name));
        let Some(declared) = declared else {
            if spec.schema_locked {
                return Err(mismatch(format!(
                    "the table's schema is locked and has no column {name} (the output has it as {output_type})"
                )));
            }
            continue;
        };
        let table_type = parse(declared)?;
        match table_type.change_from(output_type) {
            TypeChange::Same | TypeChange::Widened => {
                casts.insert(name.clone(), table_type);
            }
            TypeChange::Incompatible if spec.schema_locked => {
                return Err(mismatch(format!(
                    "the table's schema is locked and column {name} is {table_type}, but the output has {output_type}, which does not fit"
                )));
            }
            TypeChange::Incompatible if mode == WriteMode::Overwrite => {}
            TypeChange::Incompatible => {
                return Err(mismatch(format!(
                    "column {name} is {table_type} in the table, but the output has {output_type}; the files already there could not be read with one type (use writeMode Overwrite to replace the data, or cast in the SQL)"
                )));
            }
        }
    }
    if spec.schema_locked {
        for column in &spec.columns {
            if !shape.columns.iter().any(|(n, _)| n.eq_ignore_ascii_case(&column.name)) {
                return Err(mismatch(format!(
                    "the table's schema is locked and the output lacks its column {}",
                    column.name
                )));
            }
        }
    }
    Ok(casts)
}

/// What the catalog holds after a sink committed: the table created, or updated with new columns,
/// the partition summary and who wrote it.
#[allow(clippy::too_many_arguments)]
pub fn updated_table(
    existing: Option<&Table>,
    table_ref: &TableRef,
    storage: &StorageSpec,
    shape: &OutputShape,
    mode: WriteMode,
    written: &[SinkPartition],
    added: usize,
    job: &str,
    run_id: &str,
    now: &Time,
) -> Table {
    let columns = |pairs: &[(String, GlueType)]| -> Vec<Column> {
        pairs
            .iter()
            .map(|(name, type_)| Column {
                name: name.clone(),
                type_: type_.to_string(),
                comment: None,
            })
            .collect()
    };
    let mut table = match existing {
        Some(table) => table.clone(),
        None => Table::new(
            &object_name(&table_ref.database, &table_ref.table),
            TableSpec {
                database_name: table_ref.database.clone(),
                table_name: table_ref.table.clone(),
                description: Some(format!("Written by job {job}.")),
                storage: storage.clone(),
                columns: Vec::new(),
                partition_keys: Vec::new(),
                schema_locked: false,
                parameters: BTreeMap::new(),
            },
        ),
    };
    let replace = existing.is_none() || mode == WriteMode::Overwrite;
    if !table.spec.schema_locked {
        if replace {
            table.spec.columns = columns(&shape.columns);
            table.spec.partition_keys = columns(&shape.partition_keys);
        } else {
            // Columns the output adds go after the table's own, as Glue appends them.
            for (name, type_) in &shape.columns {
                if !table.spec.columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
                    table.spec.columns.push(Column {
                        name: name.clone(),
                        type_: type_.to_string(),
                        comment: None,
                    });
                }
            }
        }
    }
    let status = table.status.get_or_insert_with(Default::default);
    if !table.spec.partition_keys.is_empty() {
        let previous = status.partitions.take().unwrap_or_default();
        let mut newest: Vec<String> = written.iter().map(|p| p.path.clone()).collect();
        newest.sort_by(|a, b| b.cmp(a));
        if !replace {
            newest.extend(previous.newest.iter().cloned());
            newest.sort_by(|a, b| b.cmp(a));
            newest.dedup();
        }
        newest.truncate(NEWEST_PARTITIONS);
        let count = if replace {
            written.len() as i64
        } else {
            previous.count + added as i64
        };
        status.partitions = Some(PartitionSummary {
            count,
            newest,
            index: None,
            deprecated: previous.deprecated,
        });
    }
    status.last_updated = Some(TableUpdate {
        by: format!("Job/{job}"),
        run_id: Some(run_id.to_string()),
        time: now.clone(),
    });
    table
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use kglue_crds::common::{DataFormat, FormatSpec};

    use super::*;

    fn table(columns: &[(&str, &str)], keys: &[(&str, &str)], locked: bool) -> Table {
        let col = |(n, t): &(&str, &str)| Column {
            name: n.to_string(),
            type_: t.to_string(),
            comment: None,
        };
        Table::new(
            "curated.orders",
            TableSpec {
                database_name: "curated".into(),
                table_name: "orders".into(),
                description: None,
                storage: storage(),
                columns: columns.iter().map(col).collect(),
                partition_keys: keys.iter().map(col).collect(),
                schema_locked: locked,
                parameters: BTreeMap::new(),
            },
        )
    }

    fn storage() -> StorageSpec {
        StorageSpec {
            location: "file:///data/orders/".into(),
            format: FormatSpec {
                format: DataFormat::Parquet,
                compression: None,
                csv: None,
                json: None,
                grok: None,
                kafka: None,
            },
            connection: None,
        }
    }

    fn reference() -> TableRef {
        TableRef {
            database: "curated".into(),
            table: "orders".into(),
        }
    }

    fn shape() -> OutputShape {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("day", DataType::Utf8, true),
        ]);
        OutputShape::of(&schema, &["day".to_string()])
    }

    #[test]
    fn output_is_cast_to_wider_table_types() {
        let existing = table(&[("id", "bigint"), ("amount", "double")], &[("day", "string")], false);
        let casts = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect("fits");
        assert_eq!(casts.get("id"), Some(&GlueType::BigInt));
    }

    #[test]
    fn a_locked_table_refuses_output_that_does_not_fit_naming_the_column() {
        let existing = table(
            &[("id", "int"), ("amount", "decimal(10,2)")],
            &[("day", "string")],
            true,
        );
        let error = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "sink out: table curated.orders: the table's schema is locked and column amount is decimal(10,2), but the output has double, which does not fit"
        );
        let existing = table(&[("id", "int")], &[("day", "string")], true);
        let error = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect_err("refused");
        assert!(error.problem.contains("has no column amount"), "{error}");
        let existing = table(
            &[("id", "int"), ("amount", "double"), ("note", "string")],
            &[("day", "string")],
            true,
        );
        let error = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect_err("refused");
        assert!(error.problem.contains("lacks its column note"), "{error}");
    }

    #[test]
    fn incompatible_types_need_overwrite_and_partition_keys_must_match() {
        let existing = table(&[("id", "string")], &[("day", "string")], false);
        // string holds an int: widened, fine.
        assert!(conform("out", &reference(), &existing, &shape(), WriteMode::Append).is_ok());
        let existing = table(&[("id", "date")], &[("day", "string")], false);
        let error = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect_err("refused");
        assert!(error.problem.contains("column id is date"), "{error}");
        assert!(conform("out", &reference(), &existing, &shape(), WriteMode::Overwrite).is_ok());
        let existing = table(&[("id", "int")], &[("month", "string")], false);
        let error = conform("out", &reference(), &existing, &shape(), WriteMode::Append).expect_err("refused");
        assert!(error.problem.contains("partitioned by [month]"), "{error}");
    }

    #[test]
    fn a_new_table_gets_the_output_schema_and_partition_summary() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("instant"));
        let written = vec![
            SinkPartition {
                path: "day=2024-01-01".into(),
                values: vec![("day".into(), Some("2024-01-01".into()))],
            },
            SinkPartition {
                path: "day=2024-01-02".into(),
                values: vec![("day".into(), Some("2024-01-02".into()))],
            },
        ];
        let created = updated_table(
            None,
            &reference(),
            &storage(),
            &shape(),
            WriteMode::Append,
            &written,
            2,
            "clean",
            "r1",
            &now,
        );
        assert_eq!(created.metadata.name.as_deref(), Some("curated.orders"));
        let columns: Vec<String> = created.spec.columns.iter().map(|c| c.to_string()).collect();
        assert_eq!(columns, ["id int", "amount double"]);
        assert_eq!(created.spec.partition_keys[0].to_string(), "day string");
        let summary = created
            .status
            .as_ref()
            .and_then(|s| s.partitions.clone())
            .expect("summary");
        assert_eq!((summary.count, summary.newest[0].as_str()), (2, "day=2024-01-02"));

        let again = updated_table(
            Some(&created),
            &reference(),
            &storage(),
            &shape(),
            WriteMode::Append,
            &written[1..],
            0,
            "clean",
            "r2",
            &now,
        );
        assert_eq!(again.partition_count(), Some(2), "no partition added");
        let update = again.status.and_then(|s| s.last_updated).expect("recorded");
        assert_eq!(
            (update.by.as_str(), update.run_id.as_deref()),
            ("Job/clean", Some("r2"))
        );
    }
}
