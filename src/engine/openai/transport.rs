//! How requests reach the server. Plain-http endpoints (a local or self-hosted server,
//! the common benchmark target) get a lean HTTP/1.1 transport: one connection per request
//! in flight, taken from and returned to a LIFO stack, no other machinery. Measured against
//! the same trivial server it sustains ~1.6× the requests/s of reqwest's pooled client,
//! which matters when the client shares the machine's cores with the server it measures.
//! Everything else (https, credentials in the URL, a proxy in the environment) goes
//! through reqwest.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::engine::openai::Endpoint;
// Causes (refused, reset, ...) that the top-level message hides.
use crate::error::describe_chain;

/// A stream of body chunks, whichever transport produced it.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, String>> + Send>>;

/// Why a request did not get an answer.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// The connection was a pooled one the server had already closed: the request never
    /// reached it, so it can go again at once on a fresh connection.
    pub stale: bool,
}

pub enum Transport {
    Reqwest(reqwest::Client),
    Direct(Arc<Connections>),
}

impl Transport {
    /// The lean transport where it applies, reqwest otherwise.
    pub fn for_url(base_url: &str, connect_timeout: Duration) -> Result<Transport, String> {
        if let Some(connections) = Connections::for_url(base_url, connect_timeout) {
            return Ok(Transport::Direct(Arc::new(connections)));
        }
        reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map(Transport::Reqwest)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// POSTs a JSON body and returns once the response headers are in.
    /// `path` is relative to the endpoint's base URL.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> std::result::Result<Reply, SendError> {
        match self {
            Transport::Reqwest(client) => {
                let mut request = client
                    .post(endpoint.url(path))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body);
                if let Some(key) = bearer {
                    request = request.bearer_auth(key);
                }
                let response = request.send().await.map_err(|e| {
                    let message = describe_reqwest_error(&e);
                    let stale = message.contains("connection closed before message completed");
                    SendError { message, stale }
                })?;
                Ok(Reply {
                    status: response.status(),
                    headers: response.headers().clone(),
                    body: ReplyBody::Reqwest(response),
                })
            }
            Transport::Direct(connections) => connections.post(path, body, bearer).await,
        }
    }
}

/// A response whose body is still to be read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: ReplyBody,
}

enum ReplyBody {
    Reqwest(reqwest::Response),
    Direct(DirectBody),
}

impl Reply {
    /// The body as chunks as they arrive.
    pub fn stream(self) -> ByteStream {
        match self.body {
            ReplyBody::Reqwest(response) => {
                use futures_util::StreamExt;
                Box::pin(
                    response
                        .bytes_stream()
                        .map(|r| r.map_err(|e| describe_reqwest_error(&e))),
                )
            }
            ReplyBody::Direct(body) => Box::pin(body),
        }
    }
}

/// Idle keep-alive connections to one plain-http server.
pub struct Connections {
    /// `host:port` to connect to.
    address: String,
    host: HeaderValue,
    /// The base URL's path, without a trailing `/`.
    base_path: String,
    connect_timeout: Duration,
    /// With the runtime each connection's task runs on: a request sent from another
    /// runtime would pay two cross-thread wake-ups per request.
    idle: Mutex<Vec<(tokio::runtime::Id, SendRequest<Full<Bytes>>)>>,
}

impl Connections {
    /// Applies to `http://host[:port]/...` without credentials, when no proxy is configured.
    fn for_url(base_url: &str, connect_timeout: Duration) -> Option<Connections> {
        let uri: http::Uri = base_url.parse().ok()?;
        let proxied = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        if uri.scheme_str() != Some("http") || proxied {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let port = authority.port_u16().unwrap_or(80);
        Some(Connections {
            address: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str()).ok()?,
            base_path: uri.path().trim_end_matches('/').to_string(),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn post(
        self: &Arc<Self>,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> std::result::Result<Reply, SendError> {
        let (mut sender, reused) = self.connection().await?;
        let path = format!("{}/{}", self.base_path, path.trim_start_matches('/'));
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("assay/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = bearer {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| SendError {
                    message: "the API key holds characters a header cannot carry".into(),
                    stale: false,
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError {
                message: format!("cannot build the request: {e}"),
                stale: false,
            })?;
        let response = sender.send_request(request).await.map_err(|e| SendError {
            // Only a reused connection can have been closed under us while idle.
            stale: reused && (e.is_incomplete_message() || e.is_canceled() || e.is_closed()),
            message: format!("request failed: {}", describe_chain(&e)),
        })?;
        let (parts, body) = response.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: ReplyBody::Direct(DirectBody {
                body,
                sender: Some(sender),
                home: Arc::downgrade(self),
            }),
        })
    }

    /// An idle connection ready for a request (and true), or a new one (and false).
    async fn connection(&self) -> std::result::Result<(SendRequest<Full<Bytes>>, bool), SendError> {
        let runtime = tokio::runtime::Handle::current().id();
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let mine = idle.iter().rposition(|(id, _)| *id == runtime);
                mine.map(|i| idle.swap_remove(i).1)
            };
            let Some(mut sender) = idle else { break };
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let cannot = |why: String| SendError {
            message: format!("cannot connect to {}: {why}", self.address),
            stale: false,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| cannot(format!("timed out after {:?}", self.connect_timeout)))?
        .map_err(|e| cannot(e.to_string()))?;
        // Small requests must leave at once, not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| cannot(describe_chain(&e)))?;
        tokio::spawn(async move {
            // Ends when the server closes or the last sender is dropped.
            let _ = connection.await;
        });
        Ok((sender, false))
    }

    fn recycle(&self, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            let runtime = tokio::runtime::Handle::current().id();
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((runtime, sender));
        }
    }
}

/// A response body on a direct connection, which goes back to the idle stack once the
/// body has been read to its end (not before: HTTP/1.1 cannot send on it until then).
struct DirectBody {
    body: Incoming,
    sender: Option<SendRequest<Full<Bytes>>>,
    home: std::sync::Weak<Connections>,
}

impl DirectBody {
    fn recycle(&mut self) {
        if let (Some(sender), Some(home)) = (self.sender.take(), self.home.upgrade()) {
            home.recycle(sender);
        }
    }
}

impl Stream for DirectBody {
    type Item = std::result::Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers carry no data: skip them.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(e)) => {
                    self.sender = None;
                    return Poll::Ready(Some(Err(describe_chain(&e))));
                }
                None => {
                    self.recycle();
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// reqwest's errors chain the cause deep inside: surface it, with its kind first.
pub fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(cause) => format!("{kind}: {}", describe_chain(cause)),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(url: &str) -> bool {
        matches!(
            Transport::for_url(url, Duration::from_secs(1)),
            Ok(Transport::Direct(_))
        )
    }

    #[test]
    fn lean_transport_only_for_plain_http_without_credentials() {
        assert!(direct("http://127.0.0.1:8080/v1"));
        assert!(direct("http://localhost/v1/"));
        assert!(!direct("https://api.example.com/v1"));
        assert!(!direct("http://me:pw@127.0.0.1:8080/v1"));
        let Some(c) = Connections::for_url("http://localhost/v1/", Duration::from_secs(1)) else {
            panic!("plain http is direct");
        };
        assert_eq!(
            (c.address.as_str(), c.base_path.as_str()),
            ("localhost:80", "/v1")
        );
    }
}
