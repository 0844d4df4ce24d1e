//! The HTTP server: `GET /metrics` (the Prometheus exposition of
//! [`Metrics`]), `GET /status` (the analysis stages running now, JSON), `GET /healthz` (the process is up), `GET /readyz` (the store
//! is open and the watchers run), `GET /report` and `GET /report/<run>`
//! (the HTML report of the [`report`] crate, read from the history store on a
//! blocking thread) and `GET /` (an index with links).
//!
//! It runs on the tokio runtime with axum; a scrape only clones the current
//! snapshots under a short read lock and encodes them, so it stays responsive
//! while analysis runs on other threads. Every route is GET only: requests
//! announcing a body are refused with 413, request heads (request line and
//! headers) beyond [`HttpLimits::max_request_bytes`] with 431, and at most
//! [`HttpLimits::max_concurrent_requests`] requests are served at once (more
//! get 503); both come from the config's `[limits]`.
//!
//! This module deliberately knows no metric names, no SQL and nothing of the
//! watchers: the daemon flips [`ReadyFlags`] and publishes into [`Metrics`].
//! It does not bind the socket either (the caller passes a listener, so the
//! daemon decides the address and tests use port 0). [`serve`] speaks plain
//! HTTP/1.1; [`serve_with`] applies a [`WebConfig`] around the same router:
//! TLS (rustls, handshakes on their own tasks with a timeout, so a slow
//! client never holds up others), basic authentication on every route but
//! `/healthz` and `/readyz` (which tell nothing but up and ready, so that
//! probes need no password), and the configured extra response headers.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::web_config::WebConfig;
use metrics::Metrics;

/// `Content-Type` of `/metrics`: OpenMetrics text 1.0.0, which
/// [`Metrics::encode`] writes and Prometheus (2.x and later) parses.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Requests served at once by default; further concurrent requests get 503.
pub const MAX_CONCURRENT_REQUESTS: usize = crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS;

/// The server's caps (from the config's `[limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Requests served at once; more get 503.
    pub max_concurrent_requests: usize,
    /// Largest request head (request line plus headers), bytes; larger get
    /// 431.
    pub max_request_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from(&crate::config::Limits::default())
    }
}

impl From<&crate::config::Limits> for HttpLimits {
    fn from(l: &crate::config::Limits) -> Self {
        HttpLimits {
            max_concurrent_requests: l.max_concurrent_requests,
            max_request_bytes: l.max_request_bytes,
        }
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// The registry served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub ready: Arc<ReadyFlags>,
    /// Where `/report` reads from (`None`: no report pages).
    pub reports: Option<ReportSource>,
    /// Request size and concurrency caps.
    pub limits: HttpLimits,
}

/// Where `/report` pages come from.
#[derive(Clone, Debug)]
pub struct ReportSource {
    /// The daemon's history store (opened read-only per request).
    pub store: std::path::PathBuf,
    /// Runs the daemon watches: their pages reload themselves. Shared with
    /// the daemon, which replaces it on a config reload.
    pub watched: Arc<RwLock<Vec<String>>>,
    /// Seconds between reloads of a watched run's page.
    pub refresh_seconds: u32,
}

/// `?task=…&layer=…` of `/report/<run>`.
#[derive(Debug, serde::Deserialize)]
struct ReportQuery {
    task: Option<String>,
    layer: Option<usize>,
}

/// Readiness conditions the daemon sets as it starts and stops; all false at
/// first.
#[derive(Debug, Default)]
pub struct ReadyFlags {
    store_open: AtomicBool,
    watchers_running: AtomicBool,
}

/// Why the process is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The SQLite history store is not open.
    #[error("the history store is not open")]
    StoreNotOpen,
    /// The checkpoint watchers are not running.
    #[error("the checkpoint watchers are not running")]
    WatchersNotRunning,
}

impl ReadyFlags {
    /// All conditions false.
    pub fn new() -> ReadyFlags {
        ReadyFlags::default()
    }

    /// Records whether the history store is open.
    pub fn set_store_open(&self, open: bool) {
        self.store_open.store(open, Ordering::Release);
    }

    /// Records whether the checkpoint watchers are running.
    pub fn set_watchers_running(&self, running: bool) {
        self.watchers_running.store(running, Ordering::Release);
    }

    /// Whether the history store is open.
    pub fn store_open(&self) -> bool {
        self.store_open.load(Ordering::Acquire)
    }

    /// Whether the checkpoint watchers are running.
    pub fn watchers_running(&self) -> bool {
        self.watchers_running.load(Ordering::Acquire)
    }

    /// Every reason the process is not ready; empty when it is.
    pub fn not_ready(&self) -> Vec<NotReady> {
        let mut reasons = Vec::new();
        if !self.store_open() {
            reasons.push(NotReady::StoreNotOpen);
        }
        if !self.watchers_running() {
            reasons.push(NotReady::WatchersNotRunning);
        }
        reasons
    }
}

/// Serves the routes on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and returns. Errors are the listener's.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Like [`serve`], with the TLS, basic authentication and response headers
/// of `web` (plain [`serve`] when `web` is `None`).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ServerState,
    web: Option<Arc<WebConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(web) = web else {
        return serve(listener, state, shutdown).await;
    };
    let app = router(state).layer(middleware::from_fn_with_state(
        web.clone(),
        secure::authenticate,
    ));
    match &web.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let listener = secure::TlsListener::new(listener, tls.clone())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// What the guard in front of the routes needs.
#[derive(Clone)]
struct Guard {
    permits: Arc<Semaphore>,
    max_request_bytes: usize,
}

/// The routes, with the size, body and concurrency guard in front of them.
fn router(state: ServerState) -> Router {
    let guard_state = Guard {
        permits: Arc::new(Semaphore::new(state.limits.max_concurrent_requests)),
        max_request_bytes: state.limits.max_request_bytes,
    };
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/report", get(report_index))
        .route("/report/{run}", get(report_page))
        .with_state(state)
        .layer(middleware::from_fn_with_state(guard_state, guard))
}

/// Refuses request heads larger than the limit (431), requests with a body
/// (413) and requests beyond the concurrency limit (503); the permit is held
/// until the response is built.
async fn guard(State(g): State<Guard>, request: Request, next: Next) -> Response {
    let head = head_bytes(&request);
    if head > g.max_request_bytes {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request line and headers are {head} bytes, more than the {} allowed\n",
                g.max_request_bytes
            ),
        )
            .into_response();
    }
    if announces_body(request.headers()) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted: every route is GET only\n",
        )
            .into_response();
    }
    let Ok(_permit) = g.permits.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many concurrent requests\n",
        )
            .into_response();
    };
    next.run(request).await
}

/// Bytes of the request line and headers as HTTP/1.1 writes them.
fn head_bytes(request: &Request) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    line + headers
}

/// Whether the request says it carries a body (a chunked one, or a non-zero
/// or unparsable `Content-Length`).
fn announces_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0))
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html>\n<html><head><title>probewatch</title></head><body>\n",
        "<h1>probewatch ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n<ul>\n",
        "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
        "<li><a href=\"/healthz\">/healthz</a>: liveness</li>\n",
        "<li><a href=\"/readyz\">/readyz</a>: readiness</li>\n",
        "<li><a href=\"/status\">/status</a>: what the daemon is analysing now (JSON)</li>\n",
        "<li><a href=\"/report\">/report</a>: HTML reports of the runs</li>\n",
        "</ul>\n</body></html>\n",
    ))
}

async fn metrics(State(state): State<ServerState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let reasons = state.ready.not_ready();
    if reasons.is_empty() {
        return "ready".into_response();
    }
    let reasons: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}", reasons.join("; ")),
    )
        .into_response()
}

/// `/status`: the analysis stages running now (run, stage, step, start,
/// layers done of layers) as JSON, plus readiness. Behind the web config's
/// authentication like `/metrics` (it names runs).
async fn status(State(state): State<ServerState>) -> Response {
    let reasons: Vec<String> = state
        .ready
        .not_ready()
        .iter()
        .map(ToString::to_string)
        .collect();
    let body = serde_json::json!({
        "ready": reasons.is_empty(),
        "not_ready": reasons,
        "running": state.metrics.running(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body:#}\n"),
    )
        .into_response()
}

/// `/report`: links to every run of the store.
async fn report_index(State(state): State<ServerState>) -> Response {
    let Some(src) = state.reports else {
        return (StatusCode::NOT_FOUND, "no history store: no reports\n").into_response();
    };
    let store = src.store.clone();
    match tokio::task::spawn_blocking(move || report::run_names(&store)).await {
        Ok(Ok(runs)) => Html(report::index_page(&runs)).into_response(),
        Ok(Err(e)) => report_error(&e),
        Err(e) => {
            tracing::error!(error = %e, "the report task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the report failed\n").into_response()
        }
    }
}

/// `/report/<run>`: the run's report page, rendered on a blocking thread.
async fn report_page(
    State(state): State<ServerState>,
    axum::extract::Path(run): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<ReportQuery>,
) -> Response {
    let Some(src) = state.reports else {
        return (StatusCode::NOT_FOUND, "no history store: no reports\n").into_response();
    };
    let opts = report::ReportOptions {
        task: query.task,
        layer: query.layer,
        refresh_seconds: src
            .watched
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&run)
            .then_some(src.refresh_seconds),
        links: true,
    };
    let store = src.store.clone();
    match tokio::task::spawn_blocking(move || report::render_from_store(&store, &run, &opts)).await
    {
        Ok(Ok(page)) => Html(page).into_response(),
        Ok(Err(e)) => report_error(&e),
        Err(e) => {
            tracing::error!(error = %e, "the report task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the report failed\n").into_response()
        }
    }
}

/// 404 for an unknown run, task or layer; 500 (and a log line) otherwise.
fn report_error(e: &report::ReportError) -> Response {
    use report::ReportError as E;
    let status = match e {
        E::NoRun { .. } | E::NoTask { .. } | E::NoLayer { .. } => StatusCode::NOT_FOUND,
        _ => {
            tracing::error!(error = %e, "the report failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, format!("{e}\n")).into_response()
}

/// TLS accepting and basic authentication for [`serve_with`].
mod secure {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{Semaphore, mpsc};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::server::TlsStream;

    use crate::web_config::{WebConfig, parse_basic};

    /// Time a client has to finish the TLS handshake.
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Handshakes in progress at once; further connections wait in the
    /// kernel's backlog.
    const MAX_HANDSHAKES: usize = 64;

    /// bcrypt checks running at once (each takes tens of milliseconds of
    /// CPU; more wait).
    const MAX_BCRYPT: usize = 2;

    /// Paths served without basic authentication.
    const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

    /// A listener whose connections have completed the TLS handshake. A
    /// task accepts TCP connections and runs each handshake on its own task;
    /// finished ones queue here. The task ends when the listener is dropped.
    pub(super) struct TlsListener {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    }

    impl TlsListener {
        pub(super) fn new(
            tcp: TcpListener,
            config: Arc<rustls::ServerConfig>,
        ) -> std::io::Result<TlsListener> {
            let local = tcp.local_addr()?;
            let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
            let acceptor = TlsAcceptor::from(config);
            let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = tx.closed() => return,
                        a = tcp.accept() => a,
                    };
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(error) => {
                            // Out of file descriptors and the like: wait a
                            // little rather than spin.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // The handshake's flights are several small writes:
                    // without this, Nagle's algorithm waits for delayed
                    // ACKs (40 ms stalls, seen in the scrape benchmark).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(error)) => {
                                tracing::info!(%peer, %error, "TLS handshake failed")
                            }
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            });
            Ok(TlsListener { ready, local })
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.ready.recv().await {
                Some(c) => c,
                // The accept task only ends once this listener is dropped.
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(self.local)
        }
    }

    static BCRYPT_PERMITS: Semaphore = Semaphore::const_new(MAX_BCRYPT);

    /// Basic authentication (when configured) and the extra headers.
    pub(super) async fn authenticate(
        State(web): State<Arc<WebConfig>>,
        request: Request,
        next: Next,
    ) -> Response {
        let mut response = match &web.basic_auth {
            Some(auth) if !OPEN_PATHS.contains(&request.uri().path()) => {
                let credentials = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_basic);
                let good = match credentials {
                    None => false,
                    Some((user, password)) if auth.cached(&user, &password) => true,
                    Some((user, password)) => {
                        let auth = auth.clone();
                        match BCRYPT_PERMITS.acquire().await {
                            Ok(_permit) => {
                                tokio::task::spawn_blocking(move || auth.verify(&user, &password))
                                    .await
                                    .unwrap_or(false)
                            }
                            Err(_) => false,
                        }
                    }
                };
                if good {
                    next.run(request).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic realm=\"probewatch\"")],
                        "Unauthorized\n",
                    )
                        .into_response()
                }
            }
            _ => next.run(request).await,
        };
        for (name, value) in &web.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{LayerSnapshot, RunSnapshot};
    use std::io::{Read, Write};
    use tokio::sync::oneshot;

    struct Running {
        base: String,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(mut state: ServerState, max_concurrent: usize) -> Running {
        state.limits.max_concurrent_requests = max_concurrent;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Running { base, stop, task }
    }

    fn state() -> ServerState {
        ServerState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(ReadyFlags::new()),
            reports: None,
            limits: HttpLimits::default(),
        }
    }

    /// GET with a real HTTP client on a blocking thread: (status, content
    /// type, body).
    async fn get(url: String) -> (u16, String, String) {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = agent.get(&url).call().expect("request");
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.body_mut().read_to_string().expect("body");
            (response.status().as_u16(), content_type, body)
        })
        .await
        .unwrap()
    }

    /// Sends raw bytes and returns the whole answer.
    async fn raw(base: &str, request: &str) -> String {
        let addr = base.trim_start_matches("http://").to_owned();
        let request = request.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut reply = String::new();
            // The server answers and closes (Connection: close).
            stream.read_to_string(&mut reply).unwrap();
            reply
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_metrics_health_and_readiness_over_http() {
        let state = state();
        state.metrics.publish(RunSnapshot {
            run: "r".to_owned(),
            step: 12,
            timestamp_seconds: 1.5e9,
            layers: vec![LayerSnapshot {
                task: "upos".to_owned(),
                layer: 2,
                clusters: Some(17),
                labels: 17,
                scale: 3.0,
                ..LayerSnapshot::default()
            }],
        });
        state.metrics.checkpoint_analyzed("r", 1.0);
        let server = start(state.clone(), MAX_CONCURRENT_REQUESTS).await;

        let (status, content_type, body) = get(format!("{}/metrics", server.base)).await;
        assert_eq!(status, 200);
        assert_eq!(content_type, METRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"), "{body}");
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("parses");
        let find = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get("run") == Some("r"))
                .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
        };
        assert_eq!(
            find("probewatch_checkpoint_step").value,
            prometheus_parse::Value::Gauge(12.0)
        );
        let clusters = find("probewatch_clusters");
        assert_eq!(clusters.value, prometheus_parse::Value::Gauge(17.0));
        assert_eq!(clusters.labels.get("layer"), Some("2"));
        assert_eq!(
            find("probewatch_checkpoints_analyzed_total").value,
            prometheus_parse::Value::Untyped(1.0)
        );

        let (status, _, body) = get(format!("{}/healthz", server.base)).await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, _, body) = get(format!("{}/readyz", server.base)).await;
        assert_eq!(status, 503);
        assert!(
            body.contains("history store is not open") && body.contains("watchers are not running"),
            "{body}"
        );
        state.ready.set_store_open(true);
        let (status, _, body) = get(format!("{}/readyz", server.base)).await;
        assert_eq!(status, 503);
        assert!(!body.contains("store"), "{body}");
        state.ready.set_watchers_running(true);
        let (status, _, body) = get(format!("{}/readyz", server.base)).await;
        assert_eq!((status, body.as_str()), (200, "ready"));
        state.ready.set_watchers_running(false);
        let (status, _, _) = get(format!("{}/readyz", server.base)).await;
        assert_eq!(status, 503);

        let (status, content_type, body) = get(format!("{}/", server.base)).await;
        assert_eq!(status, 200);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        for link in ["/metrics", "/healthz", "/readyz"] {
            assert!(body.contains(&format!("href=\"{link}\"")), "{body}");
        }
        let (status, _, _) = get(format!("{}/nothing-here", server.base)).await;
        assert_eq!(status, 404);

        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_bodies_and_other_methods() {
        let server = start(state(), MAX_CONCURRENT_REQUESTS).await;
        let with_body = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                         Content-Length: 5\r\n\r\nhello";
        assert!(raw(&server.base, with_body).await.contains(" 413 "));
        let chunked = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                       Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert!(raw(&server.base, chunked).await.contains(" 413 "));
        let empty = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                     Content-Length: 0\r\n\r\n";
        assert!(raw(&server.base, empty).await.contains(" 200 "));
        let post = "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                    Content-Length: 0\r\n\r\n";
        assert!(raw(&server.base, post).await.contains(" 405 "));
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_request_heads_over_the_limit() {
        let mut st = state();
        st.limits.max_request_bytes = 512;
        let server = start(st, MAX_CONCURRENT_REQUESTS).await;
        let small = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert!(raw(&server.base, small).await.contains(" 200 "));
        // One header of 600 bytes: over 512 in all.
        let big = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(600)
        );
        let answer = raw(&server.base, &big).await;
        assert!(answer.contains(" 431 "), "{answer}");
        assert!(answer.contains("more than the 512 allowed"), "{answer}");
        // A long URI counts too.
        let long = format!(
            "GET /metrics?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "q".repeat(600)
        );
        assert!(raw(&server.base, &long).await.contains(" 431 "));
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saturated_server_answers_503() {
        // No permit at all: every request is beyond the limit.
        let server = start(state(), 0).await;
        let (status, _, body) = get(format!("{}/metrics", server.base)).await;
        assert_eq!(status, 503);
        assert!(body.contains("too many concurrent requests"), "{body}");
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    /// A store with one run of two checkpoints (two layers, three labels),
    /// every row written through the codec as the daemon writes it.
    fn report_store(dir: &std::path::Path) -> std::path::PathBuf {
        use geometry::measures::{LayerReport, MeasureParams, compare, measure_layer};
        use geometry::synth::{Variant, generate};
        use store::{CheckpointStatus, LayerRecord, NewCheckpoint, Store};
        let db = dir.join("h.sqlite");
        let mut store = Store::open(&db).unwrap();
        let run = store.upsert_run("r", dir, "{}").unwrap();
        let splits = ["train".to_owned(), "test".to_owned()];
        let measured = |layer: usize, seed: u64| -> LayerReport {
            let points = generate(45, 15, 4, 3, Variant::Separable, seed);
            let mut r = measure_layer(points.input(&splits), &MeasureParams::default());
            r.layer = layer;
            r.label_names = ["A", "B", "C"].map(String::from).to_vec();
            r
        };
        let baseline: Vec<LayerReport> = (0..2).map(|l| measured(l, 1 + l as u64)).collect();
        for (i, step) in [0u64, 100].into_iter().enumerate() {
            let layers: Vec<LayerRecord> = baseline
                .iter()
                .map(|base| {
                    if i == 0 {
                        return view::record::encode("pos", base, None, None);
                    }
                    let now = measured(base.layer, 10 + base.layer as u64);
                    let c = compare(base, &now).unwrap();
                    view::record::encode("pos", &now, Some(&c), Some(&c))
                })
                .collect();
            let path = dir.join(format!("step-{step}"));
            store
                .record_checkpoint(
                    run,
                    &NewCheckpoint {
                        step,
                        path: &path,
                        size: 1,
                        mtime_ns: 1,
                        status: CheckpointStatus::Done,
                        error_kind: None,
                        error: None,
                        started_unix: 0.0,
                        finished_unix: 1.0,
                        seconds: 1.0,
                        task_meta_json: None,
                        layers: &layers,
                        baseline: i == 0,
                    },
                )
                .unwrap();
        }
        db
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_report_pages_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state();
        st.reports = Some(ReportSource {
            store: report_store(dir.path()),
            watched: Arc::new(RwLock::new(vec!["r".into()])),
            refresh_seconds: 30,
        });
        let server = start(st, 4).await;
        let (status, ctype, body) = get(format!("{}/report", server.base)).await;
        assert_eq!((status, ctype.as_str()), (200, "text/html; charset=utf-8"));
        assert!(body.contains("href=\"/report/r\""), "{body}");
        let (status, _, body) = get(format!("{}/report/r", server.base)).await;
        assert_eq!(status, 200, "{body}");
        for id in [
            "fig-min-distance",
            "fig-centroid-paths",
            "fig-movement",
            "fig-similarity",
            "fig-diff-pca",
            "layer-table",
        ] {
            assert!(
                body.contains(&format!("<section id=\"{id}\">")),
                "{id} missing"
            );
        }
        assert_eq!(body.matches("<svg").count(), 5, "five figures");
        assert!(body.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(!body.contains("<script"), "no script");
        let (status, _, body) = get(format!("{}/report/r?task=pos&layer=0", server.base)).await;
        assert_eq!(status, 200);
        assert!(body.contains("Min label distance over training, layer 0"));
        let (status, _, body) = get(format!("{}/report/r?layer=7", server.base)).await;
        assert_eq!(status, 404);
        assert!(body.contains("no layer 7"), "{body}");
        let (status, _, body) = get(format!("{}/report/nope", server.base)).await;
        assert_eq!(status, 404);
        assert!(
            body.contains("no run named 'nope'") && body.contains("h.sqlite"),
            "{body}"
        );
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_returns_after_shutdown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state(), async move {
            let _ = stopped.await;
        }));
        let (status, _, _) = get(format!("{base}/healthz")).await;
        assert_eq!(status, 200);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
