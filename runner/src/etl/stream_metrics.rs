//! A stream's Prometheus metrics (`kglue_stream_*`, labelled with the Job's name), served at
//! `/metrics` by a streaming attempt (`--metrics-address`, set by the operator) and by
//! `kglue run --metrics-address` (docs/streaming.md, "Metrics").

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::stream::BatchReport;

/// A partition of the topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: String,
}

/// The stream's figures since the process started.
pub struct StreamMetrics {
    registry: Registry,
    batches: Counter,
    records: Counter,
    bad_records: Counter,
    bytes: Counter,
    batch_seconds: Histogram,
    lag: Family<PartitionLabels, Gauge>,
    last_batch: Gauge<f64, AtomicU64>,
    outage: Gauge,
}

impl StreamMetrics {
    /// The metrics of Job `job`'s stream.
    pub fn new(job: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "kglue_stream",
            [("kglue_job".into(), job.to_string().into())].into_iter(),
        );
        let metrics = StreamMetrics {
            batches: Counter::default(),
            records: Counter::default(),
            bad_records: Counter::default(),
            bytes: Counter::default(),
            // 50 ms to about 14 min.
            batch_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 15)),
            lag: Family::default(),
            last_batch: Gauge::default(),
            outage: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("batches", "Batches committed", metrics.batches.clone());
        registry.register(
            "records",
            "Records read by committed batches, bad ones included",
            metrics.records.clone(),
        );
        registry.register(
            "bad_records",
            "Records sent to the dead-letter location",
            metrics.bad_records.clone(),
        );
        registry.register("bytes", "Bytes of record values committed", metrics.bytes.clone());
        registry.register(
            "batch_duration_seconds",
            "Seconds from a batch's window start to its commit",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "lag_records",
            "Records of a partition behind its end, as of the newest batch",
            metrics.lag.clone(),
        );
        registry.register(
            "last_batch_timestamp_seconds",
            "When the newest batch committed (Unix time)",
            metrics.last_batch.clone(),
        );
        registry.register(
            "outage",
            "1 while Kafka cannot be reached or read (waited out, nothing lost)",
            metrics.outage.clone(),
        );
        StreamMetrics { registry, ..metrics }
    }

    /// A batch committed.
    pub fn batch(&self, report: &BatchReport) {
        self.batches.inc();
        self.records.inc_by(report.records);
        self.bad_records.inc_by(report.bad_records);
        self.bytes.inc_by(report.bytes);
        self.batch_seconds.observe(report.seconds);
        for (partition, lag) in &report.lag {
            self.lag
                .get_or_create(&PartitionLabels {
                    partition: partition.to_string(),
                })
                .set(*lag);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_batch.set(now);
        self.outage.set(0);
    }

    /// Kafka failed (`Some`) or answers again (`None`).
    pub fn problem(&self, problem: Option<&str>) {
        self.outage.set(i64::from(problem.is_some()));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves `/metrics` (and `/healthz`) on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<StreamMetrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: keep serving rather than lose the endpoint.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, body) = match request.uri().path() {
                    "/metrics" => (StatusCode::OK, metrics.encode()),
                    "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                    _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                if status == StatusCode::OK {
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                }
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `address` and serves the metrics there in the background; the address bound (port 0
/// picks a free one) or why it could not be bound.
pub async fn start(address: &str, metrics: Arc<StreamMetrics>) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("--metrics-address {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--metrics-address {address}: {e}"))?;
    tokio::spawn(serve(listener, metrics));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_batch_counts_and_sets_the_lag_per_partition() {
        let metrics = StreamMetrics::new("clicks");
        let report = BatchReport {
            batch: 3,
            run_id: "clicks-b3".into(),
            records: 120,
            bad_records: 2,
            bytes: 4096,
            offsets: BTreeMap::from([(0, 60), (1, 62)]),
            lag: BTreeMap::from([(0, 5), (1, 0)]),
            seconds: 1.5,
            result: serde_json::from_value(serde_json::json!({
                "job": "clicks", "runId": "clicks-b3", "attempt": 0, "outcome": "Succeeded",
                "durationSeconds": 1.5, "metrics": {}, "bookmarkOption": "Disable"
            }))
            .expect("a run result"),
        };
        metrics.problem(Some("broker down"));
        assert!(metrics.encode().contains("kglue_stream_outage{kglue_job=\"clicks\"} 1"));
        metrics.batch(&report);
        let text = metrics.encode();
        for line in [
            "kglue_stream_batches_total{kglue_job=\"clicks\"} 1",
            "kglue_stream_records_total{kglue_job=\"clicks\"} 120",
            "kglue_stream_bad_records_total{kglue_job=\"clicks\"} 2",
            "kglue_stream_bytes_total{kglue_job=\"clicks\"} 4096",
            "kglue_stream_lag_records{kglue_job=\"clicks\",partition=\"0\"} 5",
            "kglue_stream_lag_records{kglue_job=\"clicks\",partition=\"1\"} 0",
            "kglue_stream_batch_duration_seconds_count{kglue_job=\"clicks\"} 1",
            "kglue_stream_outage{kglue_job=\"clicks\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
