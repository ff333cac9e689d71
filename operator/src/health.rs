//! The HTTP endpoint for probes and scraping: `/healthz` (the process serves requests),
//! `/readyz` (startup finished: the client is configured and leader election is running; a
//! standby replica is ready too, so a rollout does not wait for it to lead) and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What the endpoint reports.
pub struct HealthState {
    /// Set once startup has finished.
    pub ready: AtomicBool,
    /// The metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl HealthState {
    /// A state that is not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        HealthState {
            ready: AtomicBool::new(false),
            metrics,
        }
    }
}

/// The answer to one request: pure, so it is tested without a socket.
pub fn respond(state: &HealthState, method: &Method, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
    }
    match path {
        "/healthz" | "/livez" => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if state.ready.load(Ordering::Acquire) => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, TEXT, "starting\n".into()),
        "/metrics" => match state.metrics.encode() {
            Ok(text) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{error}\n")),
        },
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Serves the endpoint on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: Arc<HealthState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Accept fails on resource exhaustion (EMFILE); keep serving rather than lose probes.
                tracing::warn!(%error, "accepting a health connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, content_type, body) = respond(&state, request.method(), request.uri().path());
                let response = Response::builder()
                    .status(status)
                    .header(hyper::header::CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)));
                async move {
                    Ok::<_, Infallible>(response.unwrap_or_else(|_| {
                        let mut fallback = Response::new(Full::new(Bytes::new()));
                        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        fallback
                    }))
                }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "health connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_ready_flag_and_metrics_are_text() {
        let state = HealthState::new(Arc::new(Metrics::new()));
        assert_eq!(respond(&state, &Method::GET, "/healthz").0, StatusCode::OK);
        assert_eq!(
            respond(&state, &Method::GET, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Release);
        assert_eq!(respond(&state, &Method::GET, "/readyz").0, StatusCode::OK);
        let (status, content_type, body) = respond(&state, &Method::GET, "/metrics");
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.contains("kglue_operator_leader"), "{body}");
        assert_eq!(respond(&state, &Method::GET, "/nope").0, StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&state, &Method::POST, "/healthz").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
