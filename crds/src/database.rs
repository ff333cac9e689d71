//! `Database`: a namespace of tables in the catalog (Glue's Data Catalog database).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{CATALOG_NAME_PATTERN, ObservedStatus, STORAGE_URL_PATTERN};

/// A catalog database.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus",
    shortname = "kgdb",
    category = "kglue",
    doc = "A catalog database (Glue Data Catalog database): a named group of Tables with a default location.",
    printcolumn = r#"{"name": "Database", "type": "string", "jsonPath": ".spec.databaseName"}"#,
    printcolumn = r#"{"name": "Tables", "type": "integer", "jsonPath": ".status.tables"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The database name engines see (`SELECT … FROM <databaseName>.<table>`): lowercase letters,
    /// digits and underscores. Immutable: Tables refer to it.
    #[x_kube(validation = Rule::new("self == oldSelf").message("databaseName is immutable: Tables refer to it; create a new Database instead"))]
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub database_name: String,
    /// What the database holds.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The default location of the database's tables (`s3://bucket/prefix/`): a crawler or job that
    /// creates a table without a location puts it under `<locationUri>/<table>/`.
    #[schemars(pattern(STORAGE_URL_PATTERN), length(max = 2048))]
    pub location_uri: Option<String>,
    /// Free-form key-value properties, as in Glue.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// What the operator observed of a Database.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// The number of Tables in the namespace that belong to this database.
    pub tables: Option<i32>,
}
