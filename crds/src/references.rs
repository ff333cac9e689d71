//! What each kind refers to, with the field that makes each reference, so messages can name it:
//! other objects by their object name (Connections, Classifiers, Jobs, Crawlers, Workflows), and
//! catalog entries by their catalog names (a Database by `databaseName`, a Table by
//! `databaseName` and `tableName`). The operator checks that they exist and watches them by these
//! lists; the runner reaches storage through the same lists.

use crate::common::{DataFormat, ObservedStatus, StorageSpec, TableRef};
use crate::{Classifier, Connection, Crawler, Database, Job, Session, Table, Trigger, Workflow};

/// The kinds objects refer to by object name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamedKind {
    /// A Connection.
    Connection,
    /// A Classifier.
    Classifier,
    /// A Job.
    Job,
    /// A Crawler.
    Crawler,
    /// A Workflow.
    Workflow,
}

impl NamedKind {
    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            NamedKind::Connection => "Connection",
            NamedKind::Classifier => "Classifier",
            NamedKind::Job => "Job",
            NamedKind::Crawler => "Crawler",
            NamedKind::Workflow => "Workflow",
        }
    }
}

/// A kind that others refer to by object name.
pub trait Named {
    /// Which kind it is.
    const NAMED_KIND: NamedKind;
}

impl Named for Connection {
    const NAMED_KIND: NamedKind = NamedKind::Connection;
}
impl Named for Classifier {
    const NAMED_KIND: NamedKind = NamedKind::Classifier;
}
impl Named for Job {
    const NAMED_KIND: NamedKind = NamedKind::Job;
}
impl Named for Crawler {
    const NAMED_KIND: NamedKind = NamedKind::Crawler;
}
impl Named for Workflow {
    const NAMED_KIND: NamedKind = NamedKind::Workflow;
}

/// A reference to an object by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRef<'a> {
    /// The kind referred to.
    pub kind: NamedKind,
    /// The object's name, in the referrer's namespace.
    pub name: &'a str,
    /// The field that names it, e.g. `spec.sinks[1].storage.connection`.
    pub field: String,
    /// For a Connection: the type the field needs (`s3` for a storage location, `jdbc` for a
    /// database), so a Connection of the other type is reported.
    pub connection_type: Option<&'static str>,
}

/// What a kind's spec refers to. Every list is in spec order.
pub trait References {
    /// Every kind the spec can name objects of (what [`References::name_refs`] can hold).
    const NAMED: &'static [NamedKind] = &[];

    /// Whether the spec names a `databaseName` ([`References::database_refs`]).
    const NAMES_DATABASES: bool = false;

    /// Whether the spec can name a ServiceAccount ([`References::service_account`]).
    const NAMES_SERVICE_ACCOUNT: bool = false;

    /// The ServiceAccount the spec names (`spec.serviceAccountName`), if any.
    fn service_account(&self) -> Option<&str> {
        None
    }

    /// Every storage location the spec names, with its field (`spec.sinks[0].storage.location`).
    fn locations(&self) -> Vec<(String, &str)> {
        Vec::new()
    }

    /// Objects named in the spec.
    fn name_refs(&self) -> Vec<NameRef<'_>> {
        Vec::new()
    }

    /// The `databaseName`s the spec names, with their fields.
    fn database_refs(&self) -> Vec<(&str, String)> {
        Vec::new()
    }

    /// The Tables the spec must find, by catalog name, with their fields.
    fn table_refs(&self) -> Vec<(&TableRef, String)> {
        Vec::new()
    }

    /// The names of the objects of `kind` the spec names.
    fn names_of(&self, kind: NamedKind) -> Vec<NameRef<'_>> {
        self.name_refs().into_iter().filter(|r| r.kind == kind).collect()
    }

    /// Whether the spec names the object `name` of `kind`.
    fn refers_to(&self, kind: NamedKind, name: &str) -> bool {
        self.name_refs().iter().any(|r| r.kind == kind && r.name == name)
    }
}

fn named(kind: NamedKind, name: &str, field: String) -> NameRef<'_> {
    NameRef {
        kind,
        name,
        field,
        connection_type: None,
    }
}

/// A reference to a Connection that must be of `type_` (`s3` or `jdbc`).
fn connection<'a>(name: &'a str, field: String, type_: &'static str) -> NameRef<'a> {
    NameRef {
        connection_type: Some(type_),
        ..named(NamedKind::Connection, name, field)
    }
}

/// A storage's location, with its field, unless it is a database table's name.
fn file_location(storage: &StorageSpec, field: String) -> Option<(String, &str)> {
    (storage.format.format != DataFormat::Jdbc).then_some((field, storage.location.as_str()))
}

impl References for Job {
    const NAMED: &'static [NamedKind] = &[NamedKind::Connection];
    const NAMES_SERVICE_ACCOUNT: bool = true;

    fn service_account(&self) -> Option<&str> {
        self.spec.service_account_name.as_deref()
    }

    fn locations(&self) -> Vec<(String, &str)> {
        let sources = self.spec.sources.iter().enumerate().filter_map(|(i, source)| {
            file_location(source.storage.as_ref()?, format!("spec.sources[{i}].storage.location"))
        });
        let sinks =
            self.spec.sinks.iter().enumerate().filter_map(|(i, sink)| {
                file_location(sink.storage.as_ref()?, format!("spec.sinks[{i}].storage.location"))
            });
        sources.chain(sinks).collect()
    }

    /// The Connections of sources and sinks with their own storage.
    fn name_refs(&self) -> Vec<NameRef<'_>> {
        let sources = self.spec.sources.iter().enumerate().flat_map(|(i, source)| {
            let storage = source.storage.as_ref().and_then(|storage| {
                Some(connection(
                    storage.connection.as_deref()?,
                    format!("spec.sources[{i}].storage.connection"),
                    storage.format.format.connection_type(),
                ))
            });
            let query = source.jdbc.as_ref().and_then(|jdbc| {
                Some(connection(
                    jdbc.connection.as_deref()?,
                    format!("spec.sources[{i}].jdbc.connection"),
                    "jdbc",
                ))
            });
            storage.into_iter().chain(query)
        });
        let sinks = self.spec.sinks.iter().enumerate().filter_map(|(i, sink)| {
            let storage = sink.storage.as_ref()?;
            Some(connection(
                storage.connection.as_deref()?,
                format!("spec.sinks[{i}].storage.connection"),
                storage.format.format.connection_type(),
            ))
        });
        sources.chain(sinks).collect()
    }

    /// Table sources, and sinks that write only to a catalog table (a sink with `storage`
    /// creates its table).
    fn table_refs(&self) -> Vec<(&TableRef, String)> {
        let sources = self.spec.sources.iter().enumerate().filter_map(|(i, source)| {
            source
                .table
                .as_ref()
                .map(|table| (table, format!("spec.sources[{i}].table")))
        });
        let sinks = self
            .spec
            .sinks
            .iter()
            .enumerate()
            .filter_map(|(i, sink)| match (&sink.table, &sink.storage) {
                (Some(table), None) => Some((table, format!("spec.sinks[{i}].table"))),
                _ => None,
            });
        sources.chain(sinks).collect()
    }
}

impl Job {
    /// Every Table a run reads or writes through the catalog (sinks with `storage` included).
    pub fn catalog_tables(&self) -> impl Iterator<Item = &TableRef> {
        let sources = self.spec.sources.iter().filter_map(|s| s.table.as_ref());
        sources.chain(self.spec.sinks.iter().filter_map(|s| s.table.as_ref()))
    }
}

/// A Session names only its ServiceAccount: the databases it exposes need not exist yet (an
/// empty schema until they do), and its password Secret is waited for by the kubelet.
impl References for Session {
    const NAMES_SERVICE_ACCOUNT: bool = true;

    fn service_account(&self) -> Option<&str> {
        self.spec.service_account_name.as_deref()
    }
}

impl References for Crawler {
    const NAMED: &'static [NamedKind] = &[NamedKind::Classifier, NamedKind::Connection];
    const NAMES_DATABASES: bool = true;
    const NAMES_SERVICE_ACCOUNT: bool = true;

    fn service_account(&self) -> Option<&str> {
        self.spec.service_account_name.as_deref()
    }

    fn locations(&self) -> Vec<(String, &str)> {
        let targets = self
            .spec
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| (format!("spec.targets[{i}].path"), target.path.as_str()));
        let state = self
            .spec
            .state
            .iter()
            .map(|state| ("spec.state.location".to_string(), state.location.as_str()));
        targets.chain(state).collect()
    }

    /// Its Classifiers, then the Connections of its targets and of its state location.
    fn name_refs(&self) -> Vec<NameRef<'_>> {
        let classifiers = self
            .spec
            .classifiers
            .iter()
            .enumerate()
            .map(|(i, name)| named(NamedKind::Classifier, name, format!("spec.classifiers[{i}]")));
        let targets = self.spec.targets.iter().enumerate().filter_map(|(i, target)| {
            target
                .connection
                .as_deref()
                .map(|name| connection(name, format!("spec.targets[{i}].connection"), "s3"))
        });
        let databases = self.spec.jdbc_targets.iter().enumerate().map(|(i, target)| {
            connection(
                &target.connection_name,
                format!("spec.jdbcTargets[{i}].connectionName"),
                "jdbc",
            )
        });
        let state = self
            .spec
            .state
            .as_ref()
            .and_then(|s| s.connection.as_deref())
            .map(|name| connection(name, "spec.state.connection".into(), "s3"));
        classifiers.chain(targets).chain(databases).chain(state).collect()
    }

    fn database_refs(&self) -> Vec<(&str, String)> {
        vec![(self.spec.database_name.as_str(), "spec.databaseName".into())]
    }
}

impl References for Table {
    const NAMED: &'static [NamedKind] = &[NamedKind::Connection];
    const NAMES_DATABASES: bool = true;

    fn locations(&self) -> Vec<(String, &str)> {
        file_location(&self.spec.storage, "spec.storage.location".to_string())
            .into_iter()
            .collect()
    }

    fn name_refs(&self) -> Vec<NameRef<'_>> {
        let storage = &self.spec.storage;
        storage
            .connection
            .as_deref()
            .map(|name| {
                connection(
                    name,
                    "spec.storage.connection".into(),
                    storage.format.format.connection_type(),
                )
            })
            .into_iter()
            .collect()
    }

    fn database_refs(&self) -> Vec<(&str, String)> {
        vec![(self.spec.database_name.as_str(), "spec.databaseName".into())]
    }
}

impl References for Trigger {
    const NAMED: &'static [NamedKind] = &[
        NamedKind::Job,
        NamedKind::Crawler,
        NamedKind::Workflow,
        NamedKind::Connection,
    ];

    /// The Jobs and Crawlers its predicate waits for, the Jobs, Crawlers and Workflows its
    /// actions start, and an Event trigger's Connection.
    fn locations(&self) -> Vec<(String, &str)> {
        self.spec
            .event
            .iter()
            .map(|event| ("spec.event.location".to_string(), event.location.as_str()))
            .collect()
    }

    fn name_refs(&self) -> Vec<NameRef<'_>> {
        let mut refs = Vec::new();
        for (i, condition) in self.spec.predicate.iter().flat_map(|p| p.conditions.iter()).enumerate() {
            if let Some(job) = &condition.job {
                refs.push(named(
                    NamedKind::Job,
                    job,
                    format!("spec.predicate.conditions[{i}].job"),
                ));
            }
            if let Some(crawler) = &condition.crawler {
                refs.push(named(
                    NamedKind::Crawler,
                    crawler,
                    format!("spec.predicate.conditions[{i}].crawler"),
                ));
            }
        }
        for (i, action) in self.spec.actions.iter().enumerate() {
            let fields = [
                (NamedKind::Job, &action.job, "job"),
                (NamedKind::Crawler, &action.crawler, "crawler"),
                (NamedKind::Workflow, &action.workflow, "workflow"),
            ];
            for (kind, name, field) in fields {
                if let Some(name) = name {
                    refs.push(named(kind, name, format!("spec.actions[{i}].{field}")));
                }
            }
        }
        if let Some(connection) = self.spec.event.as_ref().and_then(|e| e.connection.as_deref()) {
            refs.push(self::connection(connection, "spec.event.connection".into(), "s3"));
        }
        refs
    }
}

impl References for Workflow {
    const NAMED: &'static [NamedKind] = &[NamedKind::Job, NamedKind::Crawler];

    /// Each node's Job or Crawler.
    fn name_refs(&self) -> Vec<NameRef<'_>> {
        let mut refs = Vec::new();
        for (i, node) in self.spec.nodes.iter().enumerate() {
            if let Some(job) = &node.job {
                refs.push(named(NamedKind::Job, job, format!("spec.nodes[{i}].job")));
            }
            if let Some(crawler) = &node.crawler {
                refs.push(named(NamedKind::Crawler, crawler, format!("spec.nodes[{i}].crawler")));
            }
        }
        refs
    }
}

impl References for Database {}
impl References for Connection {}
impl References for Classifier {}

/// The status part every kind shares (`observedGeneration`, conditions), as last written.
pub trait Observed {
    /// `status.observedGeneration` and `status.conditions`, if there is a status.
    fn observed(&self) -> Option<&ObservedStatus>;
}

macro_rules! observed_in_field {
    ($($kind:ty),*) => {$(
        impl Observed for $kind {
            fn observed(&self) -> Option<&ObservedStatus> {
                self.status.as_ref().map(|s| &s.observed)
            }
        }
    )*};
}
observed_in_field!(Database, Table, Crawler, Job, Trigger, Workflow, Session);

macro_rules! observed_is_status {
    ($($kind:ty),*) => {$(
        impl Observed for $kind {
            fn observed(&self) -> Option<&ObservedStatus> {
                self.status.as_ref()
            }
        }
    )*};
}
observed_is_status!(Connection, Classifier);

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Job",
            "metadata": {"name": "clean", "namespace": "ns"},
            "spec": {
                "sources": [
                    {"name": "orders", "table": {"database": "raw", "table": "orders"}},
                    {"name": "extra", "storage": {"location": "s3://b/extra/", "format": "Json", "connection": "lake"}}
                ],
                "sql": "CREATE VIEW out AS SELECT * FROM orders",
                "sinks": [
                    {"name": "out", "table": {"database": "curated", "table": "out"}},
                    {"name": "report", "storage": {"location": "s3://b/report/", "format": "Csv", "connection": "reports"},
                     "table": {"database": "curated", "table": "report"}}
                ]
            }
        }))
        .expect("a Job")
    }

    #[test]
    fn a_jobs_references_name_their_fields() {
        let job = job();
        let refs = job.name_refs();
        let connections: Vec<(&str, &str)> = refs.iter().map(|r| (r.name, r.field.as_str())).collect();
        assert_eq!(
            connections,
            [
                ("lake", "spec.sources[1].storage.connection"),
                ("reports", "spec.sinks[1].storage.connection")
            ]
        );
        let tables: Vec<String> = job
            .table_refs()
            .iter()
            .map(|(t, f)| format!("{}.{} {f}", t.database, t.table))
            .collect();
        assert_eq!(
            tables,
            ["raw.orders spec.sources[0].table", "curated.out spec.sinks[0].table"]
        );
        assert_eq!(
            job.catalog_tables().count(),
            3,
            "a sink with storage still names its table"
        );
        assert!(job.refers_to(NamedKind::Connection, "reports"));
        assert!(!job.refers_to(NamedKind::Job, "reports"));
    }

    #[test]
    fn a_triggers_references_cover_predicate_actions_and_event() {
        let trigger: Trigger = serde_json::from_value(serde_json::json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {
                "type": "Event",
                "event": {"location": "s3://landing/orders/", "connection": "lake"},
                "predicate": {"conditions": [{"job": "a", "state": "Succeeded"}, {"crawler": "c", "state": "Succeeded"}]},
                "actions": [{"job": "b"}, {"workflow": "w"}]
            }
        }))
        .expect("a Trigger");
        let refs: Vec<(NamedKind, &str, String)> = trigger
            .name_refs()
            .into_iter()
            .map(|r| (r.kind, r.name, r.field))
            .collect();
        assert_eq!(
            refs,
            [
                (NamedKind::Job, "a", "spec.predicate.conditions[0].job".to_string()),
                (
                    NamedKind::Crawler,
                    "c",
                    "spec.predicate.conditions[1].crawler".to_string()
                ),
                (NamedKind::Job, "b", "spec.actions[0].job".to_string()),
                (NamedKind::Workflow, "w", "spec.actions[1].workflow".to_string()),
                (NamedKind::Connection, "lake", "spec.event.connection".to_string()),
            ]
        );
        assert_eq!(trigger.names_of(NamedKind::Job).len(), 2);
        assert!(
            trigger.name_refs().iter().all(|r| Trigger::NAMED.contains(&r.kind)),
            "NAMED lists every kind a Trigger names, so the operator watches them all"
        );
        let job = job();
        assert!(job.name_refs().iter().all(|r| Job::NAMED.contains(&r.kind)));
    }
}
