//! References between objects, for every controller: the read step that finds which referenced
//! objects exist ([`find`], from the shared caches of [`crate::informers`]), the problems of those that do not ([`Found::missing`]), and the
//! watches that re-check the objects that refer to one when it changes ([`recheck`],
//! [`recheck_named`]). What each kind refers to is the API crate's
//! ([`kglue_crds::references::References`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use k8s_openapi::api::core::v1::ServiceAccount;
use kglue_crds::references::{Named, NamedKind, References};
use kglue_crds::{Classifier, Connection, Crawler, Database, Job, Workflow};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::problem::{Problem, Reason};
use crate::context::{Context, Error};
pub use crate::informers::{Changes, Informed, Watchable};

/// What exists of what an object refers to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// Per kind, the named objects that exist.
    pub named: BTreeMap<NamedKind, BTreeSet<String>>,
    /// `spec.databaseName` of every readable Database in the namespace (read when the object
    /// names a database).
    pub databases: BTreeSet<String>,
    /// `(databaseName, tableName)` of every readable Table in the namespace (read when the object
    /// names a table).
    pub tables: BTreeSet<(String, String)>,
    /// The ServiceAccount the object names, if it exists.
    pub service_accounts: BTreeSet<String>,
    /// The type (`s3`, `jdbc`) of every named Connection that exists and reads.
    pub connection_types: BTreeMap<String, &'static str>,
}

/// The reason of a missing object of `kind`.
pub fn not_found(kind: NamedKind) -> Reason {
    match kind {
        NamedKind::Connection => Reason::ConnectionNotFound,
        NamedKind::Classifier => Reason::ClassifierNotFound,
        NamedKind::Job => Reason::JobNotFound,
        NamedKind::Crawler => Reason::CrawlerNotFound,
        NamedKind::Workflow => Reason::WorkflowNotFound,
    }
}

impl Found {
    /// What was found of named objects, per kind (databases and tables: none).
    pub fn of_named(named: &[(NamedKind, &[&str])]) -> Self {
        Found {
            named: named
                .iter()
                .map(|(kind, names)| (*kind, names.iter().map(|n| n.to_string()).collect()))
                .collect(),
            ..Found::default()
        }
    }

    /// One problem per object of `kind` that `object` names and that does not exist, in spec
    /// order; for Connections, also one per field that names a Connection of the wrong type (a
    /// database's for a storage location, or the other way round).
    pub fn missing<K: References>(&self, object: &K, kind: NamedKind) -> Vec<Problem> {
        let empty = BTreeSet::new();
        let found = self.named.get(&kind).unwrap_or(&empty);
        let mut problems = missing(
            object.names_of(kind).into_iter().map(|r| (r.name, r.field)),
            found,
            not_found(kind),
            kind.as_str(),
        );
        if kind == NamedKind::Connection {
            for reference in object.names_of(kind) {
                if let (Some(type_), Some(needed)) =
                    (self.connection_types.get(reference.name), reference.connection_type)
                    && *type_ != needed
                {
                    let what = if needed == "jdbc" {
                        "a database needs a jdbc Connection"
                    } else {
                        "a storage location needs an s3 Connection"
                    };
                    problems.push(Problem::new(
                        Reason::ConnectionTypeMismatch,
                        format!(
                            "{} names Connection {:?}, which is a {type_} connection: {what}",
                            reference.field, reference.name
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// The problem of a `spec.serviceAccountName` that names no ServiceAccount of the namespace.
    pub fn missing_service_account<K: References>(&self, object: &K) -> Option<Problem> {
        let name = object.service_account()?;
        (!self.service_accounts.contains(name)).then(|| {
            Problem::new(
                Reason::ServiceAccountNotFound,
                format!(
                    "spec.serviceAccountName names ServiceAccount {name:?}, which does not exist in this namespace; create it with the runner's Role bound to it (kglue-operator runner-rbac --name {name} -n NAMESPACE prints all three) or remove the field to run as the default runner account"
                ),
            )
        })
    }

    /// One problem per `databaseName` of `object` that no Database declares.
    pub fn missing_databases<K: References>(&self, object: &K) -> Vec<Problem> {
        object
            .database_refs()
            .into_iter()
            .filter(|(name, _)| !self.databases.contains(*name))
            .map(|(name, field)| database_not_found(&field, name))
            .collect()
    }

    /// One problem per Table of `object` that no Table in the namespace declares.
    pub fn missing_tables<K: References>(&self, object: &K) -> Vec<Problem> {
        object
            .table_refs()
            .into_iter()
            .filter(|(table, _)| !self.tables.contains(&(table.database.clone(), table.table.clone())))
            .map(|(table, field)| {
                Problem::new(
                    Reason::TableNotFound,
                    format!(
                        "{field} names {}.{}, but no Table in this namespace has that databaseName and tableName; create the Table (or run the Crawler that creates it) or fix the name",
                        table.database, table.table
                    ),
                )
            })
            .collect()
    }
}

/// The problem of a `databaseName` no Database in the namespace declares.
pub fn database_not_found(field: &str, database_name: &str) -> Problem {
    Problem::new(
        Reason::DatabaseNotFound,
        format!(
            "{field} is {database_name:?}, but no Database in this namespace has spec.databaseName {database_name:?}; create that Database or fix the name"
        ),
    )
}

/// Which of the objects `object` refers to exist in `namespace`, from the shared caches.
pub fn find<K: References>(ctx: &Context, namespace: &str, object: &K) -> Found {
    let informers = &ctx.informers;
    let mut found = Found::default();
    for reference in object.name_refs() {
        let name = reference.name;
        // Existence is all that is asked: a malformed object still exists.
        let exists = match reference.kind {
            NamedKind::Connection => match informers.connections.get(namespace, name) {
                Some(guard) => {
                    if let Ok(connection) = &guard.0 {
                        found.connection_types.insert(name.to_string(), connection.spec.kind());
                    }
                    true
                }
                None => false,
            },
            NamedKind::Classifier => informers.classifiers.get(namespace, name).is_some(),
            NamedKind::Job => informers.jobs.get(namespace, name).is_some(),
            NamedKind::Crawler => informers.crawlers.get(namespace, name).is_some(),
            NamedKind::Workflow => informers.workflows.get(namespace, name).is_some(),
        };
        let names = found.named.entry(reference.kind).or_default();
        if exists {
            names.insert(name.to_string());
        }
    }
    if !object.database_refs().is_empty() {
        found.databases = informers
            .databases
            .readable(namespace, |db| db.spec.database_name.clone());
    }
    if !object.table_refs().is_empty() {
        found.tables = informers
            .tables
            .readable(namespace, |t| (t.spec.database_name.clone(), t.spec.table_name.clone()));
    }
    found
}

/// The read step of a kind: what its spec refers to, read from the API. The only step that calls
/// the API.
pub trait ReadRefs<K>: Sized + Send + Sync {
    /// Reads what `object` refers to in `namespace`.
    fn read(object: &K, ctx: &Context, namespace: &str) -> impl Future<Output = Result<Self, Error>> + Send;
}

/// A kind that refers to nothing reads nothing.
impl<K: Sync> ReadRefs<K> for () {
    async fn read(_object: &K, _ctx: &Context, _namespace: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// The read step of every kind whose references are all by name or catalog name.
impl<K: References + Sync> ReadRefs<K> for Found {
    async fn read(object: &K, ctx: &Context, namespace: &str) -> Result<Found, Error> {
        find_with_account(ctx, namespace, object).await
    }
}

/// [`find`], and whether the ServiceAccount the object names exists: a GET of its metadata, only
/// for objects that name one (ServiceAccounts are not cached: a cluster holds many, and few are
/// named).
pub async fn find_with_account<K: References>(ctx: &Context, namespace: &str, object: &K) -> Result<Found, Error> {
    let mut found = find(ctx, namespace, object);
    if let Some(name) = object.service_account() {
        let accounts: Api<ServiceAccount> = ctx.api(namespace);
        if accounts.get_metadata_opt(name).await?.is_some() {
            found.service_accounts.insert(name.to_string());
        }
    }
    Ok(found)
}

/// One problem per name in `wanted` that is not in `found`, in `wanted`'s order.
pub fn missing<'a>(
    wanted: impl IntoIterator<Item = (&'a str, String)>,
    found: &BTreeSet<String>,
    reason: Reason,
    kind: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, field) in wanted {
        if !found.contains(name) && seen.insert(name.to_string()) {
            problems.push(Problem::new(
                reason,
                format!(
                    "{field} names {kind} {name:?}, which does not exist in this namespace; create it or fix the name"
                ),
            ));
        }
    }
    problems
}

/// The objects in `store` in `namespace` for which `refers` holds: the mapper of a watch on a
/// referenced kind.
pub fn referrers<K>(
    store: &Store<DeserializeGuard<K>>,
    namespace: Option<&str>,
    refers: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|guard| guard.meta().namespace.as_deref() == namespace)
        .filter(|guard| guard.0.as_ref().is_ok_and(&refers))
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}

/// Watches that re-check the objects of a controller when something they refer to changes.
pub trait Rechecks: Sized {
    /// The kind the controller reconciles.
    type Kind: References + Watchable;

    /// Adds a subscription to the shared watch of `R`: when an `R` changes in a way `changes`
    /// hears of, the objects `k` for which `refers(k, name, r)` holds are reconciled again (`r`
    /// is `None` when the `R` cannot be read as its kind; it still has a name).
    fn recheck<R: Informed>(
        self,
        ctx: &Context,
        changes: Changes,
        refers: impl Fn(&Self::Kind, &str, Option<&R>) -> bool + Send + Sync + 'static,
    ) -> Self;

    /// [`Rechecks::recheck`] on a kind outside kglue (a Connection's Secret), through a watch of
    /// its own.
    fn recheck_watched<R: Watchable>(
        self,
        ctx: &Context,
        refers: impl Fn(&Self::Kind, &str, Option<&R>) -> bool + Send + Sync + 'static,
    ) -> Self;

    /// [`Rechecks::recheck`] for a kind referred to by object name: the objects that name the
    /// changed `R`. Jobs, Crawlers and Workflows are heard of at every write, since the kinds that
    /// name them act on their runs; Connections and Classifiers only when they come, go or change
    /// their spec.
    fn recheck_named<R: Named + Informed>(self, ctx: &Context) -> Self {
        let changes = match R::NAMED_KIND {
            NamedKind::Connection | NamedKind::Classifier => Changes::Spec,
            NamedKind::Job | NamedKind::Crawler | NamedKind::Workflow => Changes::All,
        };
        self.recheck::<R>(ctx, changes, |k, name, _| k.refers_to(R::NAMED_KIND, name))
    }

    /// Every watch the kind's references need ([`References::NAMED`],
    /// [`References::NAMES_DATABASES`]).
    fn recheck_references(self, ctx: &Context) -> Self {
        let mut controller = self;
        for kind in <Self::Kind as References>::NAMED {
            controller = match kind {
                NamedKind::Connection => controller.recheck_named::<Connection>(ctx),
                NamedKind::Classifier => controller.recheck_named::<Classifier>(ctx),
                NamedKind::Job => controller.recheck_named::<Job>(ctx),
                NamedKind::Crawler => controller.recheck_named::<Crawler>(ctx),
                NamedKind::Workflow => controller.recheck_named::<Workflow>(ctx),
            };
        }
        if <Self::Kind as References>::NAMES_DATABASES {
            controller = controller.recheck_databases(ctx);
        }
        if <Self::Kind as References>::NAMES_SERVICE_ACCOUNT {
            controller =
                controller.recheck_watched::<ServiceAccount>(ctx, |k, name, _| k.service_account() == Some(name));
        }
        controller
    }

    /// [`Rechecks::recheck`] on Databases, for a kind that names a `databaseName`.
    fn recheck_databases(self, ctx: &Context) -> Self {
        self.recheck::<Database>(ctx, Changes::Spec, |k, _, database| {
            database.is_some_and(|db| k.database_refs().iter().any(|(name, _)| *name == db.spec.database_name))
        })
    }
}

/// The mapper of a re-check: the objects of `store` in the changed object's namespace that refer
/// to it.
fn referring<K: Watchable, R: Watchable>(
    store: Store<DeserializeGuard<K>>,
    refers: impl Fn(&K, &str, Option<&R>) -> bool + Send + Sync + 'static,
) -> impl Fn(DeserializeGuard<R>) -> Vec<ObjectRef<DeserializeGuard<K>>> + Send + Sync + 'static {
    move |changed: DeserializeGuard<R>| {
        let name = changed.name_any();
        let object = changed.0.as_ref().ok();
        referrers(&store, changed.namespace().as_deref(), |k: &K| refers(k, &name, object))
    }
}

impl<K: References + Watchable> Rechecks for Controller<DeserializeGuard<K>> {
    type Kind = K;

    fn recheck<R: Informed>(
        self,
        ctx: &Context,
        changes: Changes,
        refers: impl Fn(&K, &str, Option<&R>) -> bool + Send + Sync + 'static,
    ) -> Self {
        let mapper = referring(self.store(), refers);
        self.watches_stream(R::informer(&ctx.informers).subscribe(changes), mapper)
    }

    fn recheck_watched<R: Watchable>(
        self,
        ctx: &Context,
        refers: impl Fn(&K, &str, Option<&R>) -> bool + Send + Sync + 'static,
    ) -> Self {
        let mapper = referring(self.store(), refers);
        self.watches(ctx.watch_api::<DeserializeGuard<R>>(), Default::default(), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_are_reported_once_in_order() {
        let found = ["b".to_string()].into_iter().collect();
        let problems = missing(
            [
                ("a", "spec.x[0]".to_string()),
                ("b", "spec.x[1]".to_string()),
                ("a", "spec.x[2]".to_string()),
            ],
            &found,
            Reason::ClassifierNotFound,
            "Classifier",
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("spec.x[0] names Classifier \"a\""));
    }
}
