//! Where a sink may write: inside its Connection's `allowedWritePrefixes`, and, when it replaces
//! data (`Overwrite`, `OverwritePartitions`), never over a location the run reads or another
//! Table's location. Checked for every sink before anything is read or written, so one mistake in
//! a location cannot delete another dataset.

use kglue_crds::connection::ConnectionSpec;
use kglue_crds::job::{JobSink, WriteMode};
use kglue_crds::protocol::storage::Location;
use kglue_crds::table::Table;

/// What a sink's location is compared with.
pub struct Scope<'a> {
    /// `(source name, location)` of every source of the run.
    pub sources: Vec<(&'a str, &'a Location)>,
    /// Every Table of the catalog.
    pub tables: Vec<&'a Table>,
}

/// Why `sink` may not write `location` (reached through `connection`), if so.
pub fn refusal(
    sink: &JobSink,
    location: &Location,
    connection: Option<(&str, &ConnectionSpec)>,
    scope: &Scope<'_>,
) -> Option<String> {
    let url = location.url_of(&location.prefix);
    if let Some((name, spec)) = connection
        && !spec.allowed_write_prefixes.is_empty()
        && !spec
            .allowed_write_prefixes
            .iter()
            .any(|prefix| prefix.parse::<Location>().is_ok_and(|p| p.holds(location)))
    {
        return Some(format!(
            "writes {url}, outside what Connection {name:?} allows (spec.allowedWritePrefixes: {}); write under one of them or widen the list",
            spec.allowed_write_prefixes.join(", ")
        ));
    }
    if sink.write_mode == WriteMode::Append {
        return None;
    }
    let mode = format!("{:?}", sink.write_mode);
    if let Some((source, read)) = scope.sources.iter().find(|(_, read)| location.holds(read)) {
        return Some(format!(
            "replaces what is under {url} ({mode}), which holds source {source:?} at {}: the write would delete what the run reads; write elsewhere, or Append",
            read.url_of(&read.prefix)
        ));
    }
    let own = sink.table.as_ref();
    let other = scope.tables.iter().find(|table| {
        let is_own = own.is_some_and(|r| r.database == table.spec.database_name && r.table == table.spec.table_name);
        !is_own
            && table
                .spec
                .storage
                .location
                .parse::<Location>()
                .is_ok_and(|theirs| location.holds(&theirs))
    });
    other.map(|table| {
        format!(
            "replaces what is under {url} ({mode}), which holds Table {}.{} at {}: the write would delete that Table's data; give the sink a location of its own",
            table.spec.database_name, table.spec.table_name, table.spec.storage.location
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(yaml: &str) -> JobSink {
        serde_saphyr::from_str(yaml).expect("a sink")
    }

    fn table(database: &str, name: &str, location: &str) -> Table {
        serde_saphyr::from_str(&format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {{name: {database}.{name}}}\nspec: {{databaseName: {database}, tableName: {name}, storage: {{location: \"{location}\", format: Parquet}}, columns: [{{name: id, type: bigint}}]}}\n"
        ))
        .expect("a Table")
    }

    fn at(url: &str) -> Location {
        url.parse().expect("a location")
    }

    #[test]
    fn a_connection_scopes_where_its_sinks_write() {
        let connection: ConnectionSpec =
            serde_saphyr::from_str("s3: {}\nallowedWritePrefixes: [\"s3://lake/curated/\", \"s3://lake/tmp/\"]\n")
                .expect("a Connection");
        let scope = Scope {
            sources: vec![],
            tables: vec![],
        };
        let out = sink("name: out\nstorage: {location: \"s3://lake/curated/orders/\", format: Parquet}\n");
        assert_eq!(
            refusal(
                &out,
                &at("s3://lake/curated/orders/"),
                Some(("lake", &connection)),
                &scope
            ),
            None
        );
        let message =
            refusal(&out, &at("s3://lake/raw/orders/"), Some(("lake", &connection)), &scope).expect("refused");
        assert!(
            message.starts_with("writes s3://lake/raw/orders, outside what Connection \"lake\" allows (spec.allowedWritePrefixes: s3://lake/curated/, s3://lake/tmp/)"),
            "{message}"
        );
        assert!(refusal(&out, &at("s3://lake/curatedx/"), Some(("lake", &connection)), &scope).is_some());
    }

    #[test]
    fn a_replacing_sink_may_not_hold_a_source_or_another_table() {
        let raw = at("s3://lake/raw/orders/");
        let others = [
            table("curated", "orders", "s3://lake/curated/orders/"),
            table("curated", "customers", "s3://lake/curated/customers/"),
        ];
        let scope = Scope {
            sources: vec![("orders", &raw)],
            tables: others.iter().collect(),
        };
        let overwrite = sink("name: out\ntable: {database: curated, table: orders}\nwriteMode: Overwrite\n");
        assert_eq!(
            refusal(&overwrite, &at("s3://lake/curated/orders/"), None, &scope),
            None,
            "its own Table"
        );
        let message = refusal(&overwrite, &at("s3://lake/curated/"), None, &scope).expect("refused");
        assert!(
            message.contains("holds Table curated.customers at s3://lake/curated/customers/"),
            "{message}"
        );
        let message = refusal(&overwrite, &at("s3://lake/"), None, &scope).expect("refused");
        assert!(
            message.contains("holds source \"orders\" at s3://lake/raw/orders"),
            "{message}"
        );
        let append = sink("name: out\ntable: {database: curated, table: orders}\nwriteMode: Append\n");
        assert_eq!(
            refusal(&append, &at("s3://lake/"), None, &scope),
            None,
            "appending deletes nothing"
        );
    }
}
