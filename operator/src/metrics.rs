//! Prometheus metrics of the operator, in the text exposition format served at `/metrics`.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kglue kind (`Table`, `Connection`, …).
    pub kind: String,
}

/// Labels of reconcile errors: the kind and what failed, so a dashboard can tell an unreachable
/// API server from a refused status write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kglue kind.
    pub kind: String,
    /// The error's class (see `controllers::Error::class`).
    pub error: String,
}

/// Labels of the stalled-object counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StalledLabels {
    /// The kglue kind.
    pub kind: String,
    /// The `Stalled` reason.
    pub reason: String,
}

/// Labels of run metrics: the kind (Job or Crawler) and the run's final or current state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Job, Crawler or Workflow.
    pub kind: String,
    /// The run state (`Succeeded`, `Failed`, …).
    pub state: String,
}

/// Labels of a session's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// The Session's namespace.
    pub namespace: String,
    /// Its name.
    pub session: String,
}

/// What a session's pod reports in `status.activity`, per session (see [`Metrics::session`]).
#[derive(Clone, Default)]
struct SessionGauges {
    queries: Family<SessionLabels, Gauge>,
    errors: Family<SessionLabels, Gauge>,
    rows: Family<SessionLabels, Gauge>,
    bytes: Family<SessionLabels, Gauge>,
}

/// Labels of trigger fires.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FireLabels {
    /// Scheduled, Conditional, OnDemand or Event.
    pub trigger_type: String,
}

/// Labels of API requests the operator makes: what a dashboard needs to see which resource a
/// burst of requests went to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The resource's API group (`kglue.dev`, `batch`; empty for the core group).
    pub group: String,
    /// The resource's plural, with its subresource (`jobs/status`); `nonresource` for paths such
    /// as `/version`.
    pub resource: String,
}

impl RequestLabels {
    /// The labels of a request with `method` to `path?query`, as Kubernetes' own audit names them.
    pub fn of(method: &str, path: &str, query: Option<&str>) -> Self {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // /api/v1/… (the core group) or /apis/<group>/<version>/…
        let (group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => ("", &[][..]),
        };
        let rest = match rest {
            ["namespaces", _namespace, inner @ ..] if !inner.is_empty() => inner,
            other => other,
        };
        let (resource, named) = match rest {
            [] => ("nonresource".to_string(), false),
            [plural] => (plural.to_string(), false),
            [plural, _name] => (plural.to_string(), true),
            [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
        };
        let watching = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = match (method, named) {
            ("GET", _) if watching => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "other",
        };
        RequestLabels {
            verb: verb.into(),
            group: group.into(),
            resource,
        }
    }
}

/// A client layer that counts every request `metrics` (by verb and resource) before sending it.
pub fn count_requests(
    metrics: std::sync::Arc<Metrics>,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<kube::client::Body>) -> http::Request<kube::client::Body> + Clone>
{
    tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        let uri = request.uri();
        metrics.api_request(RequestLabels::of(request.method().as_str(), uri.path(), uri.query()));
        request
    })
}

/// Run durations: 1 s … ~9 h.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// A histogram factory; a named function so the family's type can be spelled.
fn duration_histogram() -> Histogram {
    // 1 ms … ~16 s: a reconcile is a few API calls; anything past seconds is worth seeing.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The operator's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    stalled: Family<StalledLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    leader: Gauge<i64, AtomicI64>,
    runs: Family<RunLabels, Counter>,
    run_duration: Family<RunLabels, Histogram, fn() -> Histogram>,
    fires: Family<FireLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    sessions: SessionGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `kglue_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kglue_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let stalled = Family::<StalledLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        let runs = Family::<RunLabels, Counter>::default();
        let run_duration =
            Family::<RunLabels, Histogram, fn() -> Histogram>::new_with_constructor(run_histogram as fn() -> Histogram);
        registry.register(
            "runs",
            "Runs (attempts) of Jobs and Crawlers, and Workflow runs, that reached a final state, per kind and state",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Wall time of finished attempts, from acceptance to final state, per kind and state",
            run_duration.clone(),
        );
        let fires = Family::<FireLabels, Counter>::default();
        registry.register("trigger_fires", "Times Triggers fired, per trigger type", fires.clone());
        registry.register("reconciles", "Reconciles started, per kind", reconciles.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API server, per verb and resource",
            requests.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed (and will be retried with backoff), per kind and error class",
            errors.clone(),
        );
        registry.register(
            "stalled",
            "Reconciles that found an object Stalled, per kind and reason",
            stalled.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took, per kind",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controllers, else 0",
            leader.clone(),
        );
        let sessions = SessionGauges::default();
        for (name, help, family) in [
            (
                "session_queries",
                "Statements a Session's pod served since it started (its status.activity.queries)",
                &sessions.queries,
            ),
            (
                "session_errors",
                "Statements of a Session that failed or were refused (status.activity.errors)",
                &sessions.errors,
            ),
            (
                "session_rows_returned",
                "Rows a Session returned to its clients (status.activity.rowsReturned)",
                &sessions.rows,
            ),
            (
                "session_bytes_scanned",
                "Bytes a Session read from object storage (status.activity.bytesScanned)",
                &sessions.bytes,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        Metrics {
            sessions,
            registry,
            reconciles,
            errors,
            stalled,
            duration,
            leader,
            runs,
            run_duration,
            fires,
            requests,
        }
    }

    /// Counts a reconcile of `kind` that took `elapsed`.
    pub fn reconciled(&self, kind: &str, elapsed: Duration) {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                error: error.into(),
            })
            .inc();
    }

    /// Counts a reconcile that found the object Stalled.
    pub fn found_stalled(&self, kind: &str, reason: &str) {
        self.stalled
            .get_or_create(&StalledLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts an attempt of a `kind` run that ended in `state` after `seconds`.
    pub fn run_finished(&self, kind: &str, state: &str, seconds: f64) {
        let labels = RunLabels {
            kind: kind.into(),
            state: state.into(),
        };
        self.runs.get_or_create(&labels).inc();
        self.run_duration.get_or_create(&labels).observe(seconds);
    }

    /// Counts a request to the API server.
    pub fn api_request(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a trigger fire.
    pub fn trigger_fired(&self, trigger_type: &str) {
        self.fires
            .get_or_create(&FireLabels {
                trigger_type: trigger_type.into(),
            })
            .inc();
    }

    /// Mirrors the activity a Session's pod reports (queries, errors, rows returned, bytes
    /// scanned), so one scrape of the operator shows every session; `None` (the Session is gone)
    /// removes its series.
    pub fn session(&self, namespace: &str, session: &str, activity: Option<&kglue_crds::session::SessionActivity>) {
        let labels = SessionLabels {
            namespace: namespace.into(),
            session: session.into(),
        };
        let gauges = &self.sessions;
        let families = [&gauges.queries, &gauges.errors, &gauges.rows, &gauges.bytes];
        match activity {
            Some(a) => {
                for (family, value) in families
                    .into_iter()
                    .zip([a.queries, a.errors, a.rows_returned, a.bytes_scanned])
                {
                    family.get_or_create(&labels).set(value);
                }
            }
            None => {
                for family in families {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_activity_is_mirrored_per_session_and_removed_with_it() {
        let metrics = Metrics::new();
        let activity = kglue_crds::session::SessionActivity {
            queries: 11,
            errors: 4,
            rows_returned: 6,
            bytes_scanned: 246,
            ..Default::default()
        };
        metrics.session("analytics", "adhoc", Some(&activity));
        let text = metrics.encode().expect("encodes");
        for line in [
            "kglue_operator_session_queries{namespace=\"analytics\",session=\"adhoc\"} 11",
            "kglue_operator_session_errors{namespace=\"analytics\",session=\"adhoc\"} 4",
            "kglue_operator_session_rows_returned{namespace=\"analytics\",session=\"adhoc\"} 6",
            "kglue_operator_session_bytes_scanned{namespace=\"analytics\",session=\"adhoc\"} 246",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        metrics.session("analytics", "adhoc", None);
        assert!(!metrics.encode().expect("encodes").contains("session=\"adhoc\""));
    }

    #[test]
    fn api_requests_are_labelled_by_verb_and_resource() {
        let kglue = "kglue.dev";
        let cases = [
            (
                "GET",
                "/apis/kglue.dev/v1alpha1/namespaces/ns/tables",
                None,
                "list",
                kglue,
                "tables",
            ),
            (
                "GET",
                "/apis/kglue.dev/v1alpha1/tables",
                Some("watch=true&resourceVersion=5"),
                "watch",
                kglue,
                "tables",
            ),
            (
                "GET",
                "/apis/kglue.dev/v1alpha1/namespaces/ns/jobs/j",
                None,
                "get",
                kglue,
                "jobs",
            ),
            (
                "PATCH",
                "/apis/kglue.dev/v1alpha1/namespaces/ns/jobs/j/status",
                Some("fieldManager=x"),
                "patch",
                kglue,
                "jobs/status",
            ),
            (
                "POST",
                "/apis/batch/v1/namespaces/ns/jobs",
                None,
                "create",
                "batch",
                "jobs",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods",
                Some("labelSelector=a%3Db"),
                "list",
                "",
                "pods",
            ),
            ("GET", "/api/v1/namespaces/ns", None, "get", "", "namespaces"),
            (
                "DELETE",
                "/api/v1/namespaces/ns/secrets/s",
                None,
                "delete",
                "",
                "secrets",
            ),
            ("GET", "/version", None, "list", "", "nonresource"),
        ];
        for (method, path, query, verb, group, resource) in cases {
            let labels = RequestLabels::of(method, path, query);
            assert_eq!(
                (labels.verb.as_str(), labels.group.as_str(), labels.resource.as_str()),
                (verb, group, resource),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn counters_and_histograms_are_encoded_per_kind() {
        let metrics = Metrics::new();
        metrics.reconciled("Table", Duration::from_millis(3));
        metrics.reconciled("Table", Duration::from_millis(5));
        metrics.reconcile_failed("Table", "Kube");
        metrics.found_stalled("Connection", "SecretNotFound");
        metrics.set_leader(true);
        metrics.run_finished("Job", "Succeeded", 3.5);
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains("kglue_operator_reconciles_total{kind=\"Table\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kglue_operator_reconcile_errors_total{kind=\"Table\",error=\"Kube\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kglue_operator_stalled_total{kind=\"Connection\",reason=\"SecretNotFound\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kglue_operator_reconcile_duration_seconds_count{kind=\"Table\"} 2"),
            "{text}"
        );
        assert!(text.contains("kglue_operator_leader 1"), "{text}");
        assert!(
            text.contains("kglue_operator_runs_total{kind=\"Job\",state=\"Succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kglue_operator_run_duration_seconds_count{kind=\"Job\",state=\"Succeeded\"} 1"),
            "{text}"
        );
    }
}
