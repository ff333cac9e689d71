//! What every reconcile shares: the API client, the Event recorder, the metrics, the watched
//! namespace and the run settings ([`Context`]), and what can make a reconcile fail ([`Error`]).
//! The lowest layer of the operator: it depends on no other module but the metrics, the settings
//! and the shared watches ([`crate::informers`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};

use crate::informers::Informers;
use crate::metrics::Metrics;
use crate::settings::RunnerSettings;

/// What can make a reconcile fail (and be retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace (every kglue kind is namespaced).
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// A short class for the error metric's label.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "ApiError",
            Error::Kube(_) => "ClientError",
            Error::NoNamespace(_) => "NoNamespace",
        }
    }
}

/// The object an acting module acts on, after its conditions are written.
pub struct ActOn<'a> {
    /// The shared context.
    pub ctx: &'a Context,
    /// The object's namespace.
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// Why it cannot act (it is Stalled: the problems' messages), if so.
    pub blocked: Option<String>,
    /// The first problem's reason (the Stalled condition's), when `blocked`.
    pub blocked_reason: Option<&'static str>,
}

/// What a kind does after its conditions are written (runs, fires, workflow runs); returns when
/// to look again without a watch event.
pub type Act = for<'a> fn(ActOn<'a>) -> futures::future::BoxFuture<'a, Result<Option<std::time::Duration>, Error>>;

/// When `meta`'s object was created (now, if the API server has not said).
pub fn created(meta: &kube::api::ObjectMeta) -> k8s_openapi::jiff::Timestamp {
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(k8s_openapi::jiff::Timestamp::now)
}

/// Whether `error` is the API server's answer with HTTP status `code`.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on the reconciled objects.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for the exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The namespace watched, or all.
    pub namespace: Option<String>,
    /// How runs are launched; `None` turns runs off (start requests stay pending).
    pub runner: Option<RunnerSettings>,
    /// The shared watch and cache of every kglue kind: reconciles read what an object refers to
    /// from it, never by listing the API server.
    pub informers: Informers,
    /// How many objects of one kind are reconciled at once.
    pub concurrency: u16,
    /// The local folders `file://` locations may use (`--allow-local-path`); empty: none.
    pub local_paths: Vec<std::path::PathBuf>,
}

/// How many objects of one kind are reconciled at once, unless set otherwise: enough to keep a
/// few API round trips in flight, few enough that a burst of changes cannot flood the API server.
pub const DEFAULT_CONCURRENCY: u16 = 8;

impl Context {
    /// A context; `namespace` restricts every watch to one namespace.
    pub fn new(client: Client, metrics: Arc<Metrics>, namespace: Option<String>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            namespace,
            runner: None,
            informers: Informers::default(),
            concurrency: DEFAULT_CONCURRENCY,
            local_paths: Vec::new(),
        }
    }

    /// The same context, launching runs with `settings`.
    pub fn with_runner(mut self, settings: RunnerSettings) -> Self {
        self.runner = Some(settings);
        self
    }

    /// The same context, reconciling at most `concurrency` objects of one kind at once (0: no
    /// limit).
    pub fn with_concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The same context, letting `file://` locations use `paths`.
    pub fn with_local_paths(mut self, paths: Vec<std::path::PathBuf>) -> Self {
        self.local_paths = paths;
        self
    }

    /// An API handle for watching `K` in the watched namespace(s).
    pub fn watch_api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// An API handle for `K` in `namespace`.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The object `name` of `K` in `namespace` as the API server has it now (not the watch cache:
    /// a decision must start from the last committed status), with its API handle. `None` when
    /// runs are off (`--no-runs`: nothing could answer a start) or the object is gone.
    pub async fn fresh<K>(&self, namespace: &str, name: &str) -> Result<Option<(Api<K>, K)>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if self.runner.is_none() {
            return Ok(None);
        }
        let api: Api<K> = self.api(namespace);
        Ok(api.get_opt(name).await?.map(|object| (api, object)))
    }

    /// Counts a failure of `key` and returns how many there were in a row.
    pub fn record_failure(&self, key: &str) -> u32 {
        // A poisoned lock only means another reconcile panicked while counting; the map is still
        // a valid map of counters.
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset_failures(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}
