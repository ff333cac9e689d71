//! Table: nested column types parse (`InvalidColumnType`), its Database exists
//! (`DatabaseNotFound`), and the Connection of its storage exists (`ConnectionNotFound`).

use kglue_crds::Table;
use kglue_crds::glue_type::validate_columns;
use kglue_crds::references::NamedKind;

use super::pipeline::{Problem, Reason, Reconcile};
use super::refs::Found;

impl Reconcile for Table {
    type Refs = Found;

    fn validate(&self, found: &Found) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (field, columns) in [
            ("spec.columns", &self.spec.columns),
            ("spec.partitionKeys", &self.spec.partition_keys),
        ] {
            if let Err(error) = validate_columns(columns) {
                problems.push(Problem::new(
                    Reason::InvalidColumnType,
                    format!("{field}: {error}; write a Glue/Hive type such as struct<a:int,b:array<string>>"),
                ));
            }
        }
        problems.extend(found.missing_databases(self));
        problems.extend(found.missing(self, NamedKind::Connection));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Table {
        serde_saphyr::from_str(yaml).expect("a Table")
    }

    const TABLE: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {name: t, namespace: ns}
spec:
  databaseName: sales
  tableName: orders
  storage: {location: "s3://b/orders/", format: Parquet, connection: lake}
  columns:
    - {name: id, type: bigint}
    - {name: items, type: "array<struct<sku:string,quantity:int>>"}
  partitionKeys:
    - {name: dt, type: date}
"#;

    fn refs(databases: &[&str], connections: &[&str]) -> Found {
        Found {
            databases: databases.iter().map(|s| s.to_string()).collect(),
            named: [(
                NamedKind::Connection,
                connections.iter().map(|s| s.to_string()).collect(),
            )]
            .into(),
            ..Found::default()
        }
    }

    #[test]
    fn a_table_with_its_database_and_connection_is_valid() {
        assert_eq!(table(TABLE).validate(&refs(&["sales"], &["lake"])), vec![]);
    }

    #[test]
    fn a_missing_database_or_connection_is_named() {
        let problems = table(TABLE).validate(&refs(&["other"], &[]));
        let reasons: Vec<Reason> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [Reason::DatabaseNotFound, Reason::ConnectionNotFound]);
        assert!(problems[0].message.contains("\"sales\""), "{}", problems[0].message);
        assert!(
            problems[1]
                .message
                .contains("spec.storage.connection names Connection \"lake\"")
        );
    }

    #[test]
    fn a_location_through_a_database_connection_is_a_type_mismatch() {
        let mut found = refs(&["sales"], &["lake"]);
        found.connection_types.insert("lake".into(), "jdbc");
        let problems = table(TABLE).validate(&found);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::ConnectionTypeMismatch);
        assert_eq!(
            problems[0].message,
            "spec.storage.connection names Connection \"lake\", which is a jdbc connection: a storage location needs an s3 Connection"
        );
    }

    #[test]
    fn a_nested_type_that_does_not_parse_is_invalid_column_type() {
        let bad = table(&TABLE.replace("struct<sku:string,quantity:int>", "struct<sku string>"));
        let problems = bad.validate(&refs(&["sales"], &["lake"]));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::InvalidColumnType);
        assert!(
            problems[0].message.contains("spec.columns: column \"items\""),
            "{}",
            problems[0].message
        );
    }
}
