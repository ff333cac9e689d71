//! The node agent's kubelet API: the part of the kubelet's HTTPS server that the API server calls
//! for `kubectl logs`, `GET /containerLogs/<namespace>/<pod>/<container>` (plus `/healthz`).
//!
//! The API server finds it through the Node's `status.addresses` (InternalIP `127.0.0.1`) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`. It listens on 127.0.0.1 only, so nothing off this
//! machine reaches it. Its serving certificate is self-signed, made at start (the API server of
//! `kglue-cluster` does not verify kubelet certificates: it has no `--kubelet-certificate-authority`).
//! Callers must present a client certificate signed by the cluster CA (the API server's is its
//! `--kubelet-client-certificate`); every such certificate may read every log, there is no further
//! authorization.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::logs::{Index, LogError, Options};

/// A TLS handshake that takes longer than this is dropped (a stuck client holds no task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why the kubelet API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port} for the kubelet API: {source}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The serving certificate could not be made.
    #[error("cannot make the kubelet API's serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration was refused (a bad client CA, say).
    #[error("kubelet API TLS setup: {0}")]
    Tls(String),
}

/// The bound, not yet serving, kubelet API.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    port: u16,
}

impl Server {
    /// Binds `127.0.0.1:port` (0: a free port) and makes a self-signed serving certificate for
    /// `127.0.0.1`, `localhost` and the node's name. `client_ca` (DER certificates) are the CAs a
    /// caller's client certificate must chain to; with none, callers are not authenticated.
    pub async fn bind(port: u16, node_name: &str, client_ca: Option<&[Vec<u8>]>) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|source| ServerError::Bind { port, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { port, source })?
            .port();
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string(), node_name.to_string()];
        let certified = rcgen::generate_simple_self_signed(names)?;
        let chain = vec![certified.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| ServerError::Tls(e.to_string());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls)?;
        let builder = match client_ca {
            Some(cas) if !cas.is_empty() => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots.add(CertificateDer::from(ca.clone())).map_err(tls)?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ServerError::Tls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => {
                tracing::warn!("the kubeconfig names no CA: the kubelet API will not authenticate its callers");
                builder.with_no_client_auth()
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(tls)?;
        // The API server speaks HTTP/1.1 to kubelets for logs; this server has no HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Server {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            port,
        })
    }

    /// The port it listens on (the one to publish in the Node's `daemonEndpoints`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the task is dropped; each connection gets its own task.
    pub async fn serve(self, index: Index) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(%error, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let index = index.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::info!(%peer, %error, "kubelet API: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "kubelet API: TLS handshake timed out");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |request| {
                    let index = index.clone();
                    async move { Ok::<_, Infallible>(handle(&index, &request)) }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, %error, "kubelet API: connection ended with an error");
                }
            });
        }
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    let body = Full::new(Bytes::from(message))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Routes one request.
fn handle(index: &Index, request: &Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let path = request.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(
            StatusCode::NOT_FOUND,
            format!("{path}: kglue-node-agent serves only /containerLogs/<namespace>/<pod>/<container> and /healthz"),
        );
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [namespace, pod, container] = parts[..] else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected /containerLogs/<namespace>/<pod>/<container>",
        );
    };
    let options = match parse_options(request.uri().query().unwrap_or("")) {
        Ok(options) => options,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let stream = match index.open(namespace, pod, container, &options) {
        Ok(stream) => stream,
        Err(error) => {
            let status = match error {
                LogError::NoPod(_) | LogError::NoContainer { .. } => StatusCode::NOT_FOUND,
                LogError::Waiting { .. } | LogError::NoPrevious { .. } => StatusCode::BAD_REQUEST,
                LogError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::info!(pod = %format!("{namespace}/{pod}"), container, %error, "kubelet API: logs refused");
            return text(status, error.to_string());
        }
    };
    tracing::debug!(pod = %format!("{namespace}/{pod}"), container, ?options, "kubelet API: serving logs");
    // Chunked: each piece goes out as soon as it is read, which is what `follow` needs. When the
    // client goes away hyper drops the body, and with it the stream.
    let chunks = futures::stream::unfold(stream, |mut stream| async move {
        stream.next_chunk().await.map(|chunk| (chunk.map(Frame::data), stream))
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The kubelet's query parameters. `timestamps` is accepted and ignored: the log lines carry no
/// time, and inventing one would be wrong. `sinceSeconds`/`sinceTime` are ignored for the same
/// reason (everything is returned). `stream` other than `All` is refused: stdout and stderr share
/// one file.
pub fn parse_options(query: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = || match value {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("{key}: expected true or false, got {other:?}")),
        };
        let count = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: expected a non-negative integer, got {value:?}"))
        };
        match key {
            "follow" => options.follow = flag()?,
            "previous" => options.previous = flag()?,
            "timestamps" => {
                flag()?;
            }
            "tailLines" => options.tail_lines = Some(count()?),
            "limitBytes" => options.limit_bytes = Some(count()?),
            "stream" if value == "All" => {}
            "stream" => {
                return Err(format!(
                    "unable to return the given log stream: {value:?}: kglue-node-agent writes stdout and stderr to one file"
                ));
            }
            _ => {}
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options() {
        let options =
            parse_options("follow=true&tailLines=1&limitBytes=10&timestamps=true&sinceSeconds=5").expect("valid");
        assert_eq!(
            options,
            Options {
                follow: true,
                previous: false,
                tail_lines: Some(1),
                limit_bytes: Some(10),
            }
        );
        assert!(parse_options("tailLines=-1").is_err());
        assert!(parse_options("stream=Stderr").is_err());
        assert!(parse_options("stream=All&previous=true").expect("valid").previous);
    }
}
