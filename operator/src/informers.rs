//! One watch and one in-memory cache per kglue kind, shared by every controller ([`Informers`]).
//!
//! A reconcile reads what an object refers to from these caches, never by listing the API server:
//! a namespace may hold thousands of Tables and Jobs, and a single Table write used to make every
//! Job that refers to it list every Table. Each cache is written before the change is handed on
//! (to the kind's own controller and to the controllers that re-check the objects referring to
//! it), so a reconcile that a change starts always reads a cache that holds that change.
//!
//! The lowest layer with [`crate::context`]: it depends on no other module of the operator.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kglue_crds::{Classifier, Connection, Crawler, Database, Job, Session, Table, Trigger, Workflow};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// A namespaced kind a controller can watch.
pub trait Watchable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<R> Watchable for R where
    R: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Which changes of an object a subscriber hears of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changes {
    /// Creations and every write, status included, not deletions: what the kind's own controller
    /// reconciles (a deleted object has nothing left to reconcile).
    Applied,
    /// Creations, deletions and spec changes (a new `metadata.generation`), not status writes:
    /// what a check of the objects referring to it depends on. A runner's catalog write changes a
    /// Table's spec once; the Table's own status write that follows re-checks nobody.
    Spec,
    /// Creations, deletions and every write: for kinds that act on another's run state (a
    /// Conditional Trigger on a Job's runs).
    All,
}

impl Changes {
    fn hears(self, event: &Seen) -> bool {
        match (self, event) {
            (Changes::Applied, Seen::Deleted) => false,
            (Changes::Spec, Seen::Written { spec_changed }) => *spec_changed,
            _ => true,
        }
    }
}

/// What happened to an object, as the subscribers are told.
enum Seen {
    Written { spec_changed: bool },
    Deleted,
}

/// The shared watch of one kind: its cache and the streams handed to controllers.
pub struct Informer<K: Watchable> {
    store: Store<DeserializeGuard<K>>,
    /// Taken when the watch starts.
    writer: Mutex<Option<Writer<DeserializeGuard<K>>>>,
    subscribers: Mutex<Vec<(Changes, UnboundedSender<DeserializeGuard<K>>)>>,
}

impl<K: Watchable> Default for Informer<K> {
    fn default() -> Self {
        let writer = Writer::default();
        Informer {
            store: writer.as_reader(),
            writer: Mutex::new(Some(writer)),
            subscribers: Mutex::new(Vec::new()),
        }
    }
}

impl<K: Watchable> Informer<K> {
    /// The cache (for a controller's reader).
    pub fn store(&self) -> Store<DeserializeGuard<K>> {
        self.store.clone()
    }

    /// The object `name` in `namespace`, malformed or not, if the cache holds it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<DeserializeGuard<K>>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Every object of `namespace` the cache holds, shared, not cloned.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<DeserializeGuard<K>>> {
        self.store
            .state()
            .into_iter()
            .filter(|guard| guard.meta().namespace.as_deref() == Some(namespace))
            .collect()
    }

    /// `key` of every object of `namespace` that can be read as `K`.
    pub fn readable<T: Ord>(&self, namespace: &str, key: impl Fn(&K) -> T) -> std::collections::BTreeSet<T> {
        self.in_namespace(namespace)
            .iter()
            .filter_map(|guard| guard.0.as_ref().ok().map(&key))
            .collect()
    }

    /// A stream of the `changes` from now on, each after the cache holds it. Subscribe before
    /// [`Informer::run`] starts, so the first listing reaches every subscriber.
    pub fn subscribe(
        &self,
        changes: Changes,
    ) -> impl Stream<Item = Result<DeserializeGuard<K>, watcher::Error>> + Send + use<K> {
        let (sender, receiver) = unbounded();
        lock(&self.subscribers).push((changes, sender));
        receiver.map(Ok)
    }

    /// Hands `object` to every subscriber that hears of `seen`, forgetting the ones that are gone.
    fn publish(&self, object: &DeserializeGuard<K>, seen: &Seen) {
        lock(&self.subscribers)
            .retain(|(changes, sender)| !changes.hears(seen) || sender.unbounded_send(object.clone()).is_ok());
    }

    /// Watches `api` until the stream ends (it does not on its own: the watch retries with
    /// backoff), filling the cache and telling the subscribers.
    pub async fn run(&self, api: Api<DeserializeGuard<K>>) {
        let Some(writer) = lock(&self.writer).take() else {
            tracing::warn!(kind = %K::kind(&()), "the shared watch was started twice; the second does nothing");
            return;
        };
        // The last version of each object the subscribers were told of, to tell a spec change
        // from a status write, and to report objects that went while the watch was down.
        let mut known: HashMap<ObjectRef<DeserializeGuard<K>>, Arc<DeserializeGuard<K>>> = HashMap::new();
        let events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(object)) => {
                    let key = ObjectRef::from_obj(&object);
                    let previous = self.store.get(&key).and_then(|now| known.insert(key, now));
                    let spec_changed = previous.is_none_or(|p| p.meta().generation != object.meta().generation);
                    self.publish(&object, &Seen::Written { spec_changed });
                }
                Ok(watcher::Event::Delete(object)) => {
                    known.remove(&ObjectRef::from_obj(&object));
                    self.publish(&object, &Seen::Deleted);
                }
                Ok(watcher::Event::InitDone) => {
                    // A fresh listing (the start, or after the watch fell behind): every object
                    // is new to the kind's controller; to the others, those created, changed or
                    // deleted since the last listing.
                    let listed: HashMap<_, _> = self
                        .store
                        .state()
                        .into_iter()
                        .map(|object| (ObjectRef::from_obj(object.as_ref()), object))
                        .collect();
                    for (key, object) in &listed {
                        let spec_changed = known
                            .get(key)
                            .is_none_or(|p| p.meta().generation != object.meta().generation);
                        self.publish(object, &Seen::Written { spec_changed });
                    }
                    for (key, gone) in &known {
                        if !listed.contains_key(key) {
                            self.publish(gone, &Seen::Deleted);
                        }
                    }
                    known = listed;
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(error) => tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff"),
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a subscriber panicked while holding it; the list is still valid.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shared watch of every kglue kind.
#[derive(Default)]
pub struct Informers {
    /// Every Database.
    pub databases: Informer<Database>,
    /// Every Table.
    pub tables: Informer<Table>,
    /// Every Classifier.
    pub classifiers: Informer<Classifier>,
    /// Every Connection.
    pub connections: Informer<Connection>,
    /// Every Crawler.
    pub crawlers: Informer<Crawler>,
    /// Every Job.
    pub jobs: Informer<Job>,
    /// Every Trigger.
    pub triggers: Informer<Trigger>,
    /// Every Workflow.
    pub workflows: Informer<Workflow>,
    /// Every Session.
    pub sessions: Informer<Session>,
}

impl Informers {
    /// Returns once every cache holds its first listing. Until then a reconcile would find
    /// nothing of a kind not listed yet and report its objects' references as missing (and a run
    /// request refused for it would be lost), so the controllers wait for this.
    pub async fn wait_until_ready(&self) {
        // An error only means the watch ended before its first listing (a shutdown).
        let _ = futures::join!(
            self.databases.store.wait_until_ready(),
            self.tables.store.wait_until_ready(),
            self.classifiers.store.wait_until_ready(),
            self.connections.store.wait_until_ready(),
            self.crawlers.store.wait_until_ready(),
            self.jobs.store.wait_until_ready(),
            self.triggers.store.wait_until_ready(),
            self.workflows.store.wait_until_ready(),
            self.sessions.store.wait_until_ready(),
        );
    }

    /// Runs every watch, in `namespace` or all namespaces, until the future is dropped.
    pub async fn run(&self, client: &Client, namespace: Option<&str>) {
        fn api<K: Watchable>(client: &Client, namespace: Option<&str>) -> Api<DeserializeGuard<K>> {
            match namespace {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            }
        }
        futures::join!(
            self.databases.run(api(client, namespace)),
            self.tables.run(api(client, namespace)),
            self.classifiers.run(api(client, namespace)),
            self.connections.run(api(client, namespace)),
            self.crawlers.run(api(client, namespace)),
            self.jobs.run(api(client, namespace)),
            self.triggers.run(api(client, namespace)),
            self.workflows.run(api(client, namespace)),
            self.sessions.run(api(client, namespace)),
        );
    }
}

/// A kglue kind with a shared watch.
pub trait Informed: Watchable {
    /// Its informer.
    fn informer(informers: &Informers) -> &Informer<Self>;
}

macro_rules! informed {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Informed for $kind {
            fn informer(informers: &Informers) -> &Informer<Self> {
                &informers.$field
            }
        })*
    };
}

informed!(
    Database => databases,
    Table => tables,
    Classifier => classifiers,
    Connection => connections,
    Crawler => crawlers,
    Job => jobs,
    Trigger => triggers,
    Workflow => workflows,
    Session => sessions,
);
