//! The HTTP endpoint (`[http]`): metrics, health and a small read-only API.
//!
//! | path | what |
//! |---|---|
//! | `/healthz` | liveness: 200 `{"status":"ok"}` while the process serves |
//! | `/readyz` | readiness: 200 or 503 with a JSON detail per check ([`api::readiness`]) |
//! | `/metrics` | Prometheus text format 0.0.4 (`crate::metrics`) |
//! | `/api/meters` | every meter with its latest reading and status |
//! | `/api/events?state=open\|closed\|all&limit=N&meter=ID` | events, newest first |
//!
//! With `[http] token` set, every path but `/healthz` needs
//! `Authorization: Bearer <token>` (compared in constant time; 401 with
//! `WWW-Authenticate: Bearer` otherwise). The token is a [`Secret`]: it is
//! never logged.
//!
//! Nothing here writes: the state database is read on a read-only
//! connection of each request's own, on a blocking thread; counters come
//! from [`Metrics`]; readings from the tee's latest-reading map. InfluxDB
//! is never contacted: readiness judges it from what the sink recorded.
//!
//! Bounds ([`serve`]: strangers who trickle bytes cannot starve a
//! scrape): a request's headers must arrive within
//! [`serve::HEADER_TIMEOUT`]; at most [`serve::MAX_CONNECTIONS`]
//! connections, and at the bound the one waiting longest for a request is
//! closed to make room; a connection idle for [`serve::IDLE_TIMEOUT`] is
//! closed; a request gets [`REQUEST_TIMEOUT`] to be answered (503
//! otherwise); `/api/events` returns at most [`api::MAX_EVENTS`] events.
//! The server stops accepting when its cancel token fires and lets
//! requests in progress finish.

pub(crate) mod api;
pub(crate) mod serve;

use crate::config::{Config, Meter};
use crate::metrics::{Metrics, exposition};
use crate::reading::Latest;
use crate::secret::Secret;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::StreamExt as _;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The longest a request may take to be answered.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "http.listen = \"{addr}\": cannot listen: {source}; choose another address in [http] listen, or set [http] enabled = false"
)]
pub(crate) struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Bind `[http] listen`. Done before any task starts, so an address in use
/// stops the daemon at once with an error naming the setting.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// What the endpoint reads of the config: the state directory (events,
/// readiness), the meters (`/api/meters`), the outbox bound (readiness)
/// and the time zone of the times it shows.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub state_dir: std::path::PathBuf,
    pub meters: Vec<Arc<Meter>>,
    /// `[influxdb] max_outbox_bytes`, when InfluxDB is configured.
    pub max_outbox_bytes: Option<u64>,
    pub timezone: jiff::tz::TimeZone,
}

impl Settings {
    /// The endpoint's slice of `cfg`.
    pub(crate) fn of(cfg: &Config) -> Settings {
        Settings {
            state_dir: cfg.daemon.state_dir.clone(),
            meters: cfg.meters.clone(),
            max_outbox_bytes: cfg.influx.as_ref().map(|i| i.max_outbox_bytes),
            timezone: cfg.timezone.clone(),
        }
    }
}

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct Ctx(Arc<Inner>);

struct Inner {
    metrics: Arc<Metrics>,
    latest: Latest,
    /// The running slice (the HTTP, state and InfluxDB settings never
    /// change while running; the meters do).
    settings: watch::Receiver<Arc<Settings>>,
    token: Option<Secret>,
}

impl Ctx {
    /// `token`: `[http] token`, which a reload does not change.
    pub(crate) fn new(
        settings: watch::Receiver<Arc<Settings>>,
        token: Option<Secret>,
        metrics: Arc<Metrics>,
        latest: Latest,
    ) -> Ctx {
        Ctx(Arc::new(Inner {
            metrics,
            latest,
            token,
            settings,
        }))
    }

    /// The running slice.
    fn config(&self) -> Arc<Settings> {
        self.0.settings.borrow().clone()
    }
}

/// Serve on `listener` until `stop` fires (then finish the requests in
/// progress).
pub(crate) fn spawn(
    listener: TcpListener,
    ctx: Ctx,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(
        listen = %addr,
        bearer_token = ctx.0.token.is_some(),
        "HTTP endpoint: /metrics /healthz /readyz /api/meters /api/events"
    );
    let metrics = ctx.0.metrics.clone();
    let app = router(ctx);
    tokio::spawn(async move {
        serve::serve(listener, app, metrics, stop).await;
        debug!("HTTP endpoint stopped");
    })
}

/// The routes, with authentication and the request timeout.
pub(crate) fn router(ctx: Ctx) -> Router {
    let protected = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/meters", get(meters))
        .route("/api/events", get(events))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(deadline))
        .with_state(ctx)
}

/// Whether an `Authorization` header value carries `token` as a bearer
/// token. Constant time in the token's bytes: how much of a guess matched
/// does not show in the response time.
pub(crate) fn authorized(header: Option<&[u8]>, token: &Secret) -> bool {
    let Some(h) = header else {
        return false;
    };
    let (scheme, rest) = h.split_at(h.len().min(7));
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = rest.trim_ascii();
    ct_eq(given, token.expose().as_bytes())
}

/// Compare without an early exit; the loop runs over `expected`'s length
/// whatever `given` is.
fn ct_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(!e) ^ e;
    }
    std::hint::black_box(diff) == 0
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let Some(token) = &ctx.0.token else {
        return next.run(req).await;
    };
    let h = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if authorized(h, token) {
        return next.run(req).await;
    }
    debug!(path = %req.uri().path(), with_header = h.is_some(), "HTTP request refused: no valid bearer token");
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({ "error": "a bearer token is required (Authorization: Bearer <[http] token>)" }),
        ),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pqwatch\""),
    );
    r
}

async fn deadline(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            warn!(path = %path, timeout = ?REQUEST_TIMEOUT, "HTTP request timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "request timed out" })),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found: try /metrics, /healthz, /readyz, /api/meters, /api/events" })),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Run a state-database read on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("state database read failed: {e}"))
}

async fn readyz(State(ctx): State<Ctx>) -> Response {
    let cfg = ctx.config();
    let dir = cfg.state_dir.clone();
    let db = blocking(move || {
        crate::state::StateDb::open_readonly(&dir).and_then(|db| db.schema_version())
    })
    .await;
    let state_db = match db {
        Ok(r) => api::state_db_check(r),
        Err(e) => (false, json!({ "ok": false, "error": e })),
    };
    let writes =
        api::Writes::from_metrics(&ctx.0.metrics, cfg.max_outbox_bytes, crate::clock::now_ms());
    let (ready, body) = api::readiness(vec![
        ("config", (true, json!({ "ok": true, "detail": "loaded" }))),
        ("state_db", state_db),
        ("influxdb", api::influx_check(&writes)),
        (
            "outbox",
            api::outbox_check(&ctx.0.metrics, crate::clock::now_ms()),
        ),
    ]);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics_text(State(ctx): State<Ctx>) -> Response {
    let cfg = ctx.config();
    let dir = cfg.state_dir.clone();
    let open = blocking(move || {
        crate::state::StateDb::open_readonly(&dir)
            .and_then(|db| api::open_events_by_kind(&db))
            .map_err(|e| e.to_string())
    })
    .await
    .and_then(|r| r);
    let open_events = match open {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "/metrics: cannot count open events");
            None
        }
    };
    let extra = crate::metrics::Extra {
        now_ms: crate::clock::now_ms(),
        open_events,
        max_outbox_bytes: cfg.max_outbox_bytes,
        version: env!("CARGO_PKG_VERSION"),
        start_ms: crate::metrics::process_start_ms(),
    };
    let text = exposition::render(&crate::metrics::families(&ctx.0.metrics, &extra));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(exposition::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// Meters per chunk of the streamed `/api/meters` body (~200 KB).
const METERS_PER_CHUNK: usize = 100;

async fn meters(State(ctx): State<Ctx>) -> Response {
    let cfg = ctx.config();
    let now_ms = crate::clock::now_ms();
    let n = cfg.meters.len();
    // Built chunk by chunk as hyper sends them; each chunk copies its
    // meters' latest readings (two reference counts each) under the lock
    // only as long as that takes.
    let chunks = futures::stream::iter((0..n).step_by(METERS_PER_CHUNK)).map(move |start| {
        let meters = &cfg.meters[start..(start + METERS_PER_CHUNK).min(n)];
        let latest: std::collections::HashMap<String, crate::reading::Reading> = {
            let l = ctx.0.latest.lock().expect("latest lock");
            meters
                .iter()
                .filter_map(|m| l.get(&m.id).map(|r| (m.id.clone(), r.clone())))
                .collect()
        };
        let json =
            api::meters_json_chunk(&cfg, meters, start == 0, &latest, &ctx.0.metrics, now_ms);
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(json))
    });
    let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"[")) })
        .chain(chunks)
        .chain(futures::stream::once(async {
            Ok(bytes::Bytes::from_static(b"]"))
        }));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct EventParams {
    state: Option<String>,
    limit: Option<usize>,
    meter: Option<String>,
}

async fn events(
    State(ctx): State<Ctx>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad =
        |msg: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response();
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return bad(format!("{e} (state=open|closed|all, limit=N, meter=ID)")),
    };
    let q = match api::EventQuery::new(p.state.as_deref(), p.limit, p.meter) {
        Ok(q) => q,
        Err(e) => return bad(e),
    };
    let cfg = ctx.config();
    let dir = cfg.state_dir.clone();
    let tz = cfg.timezone.clone();
    let r = blocking(move || {
        crate::state::StateDb::open_readonly(&dir)
            .and_then(|db| api::query_events(&db, &q, &tz))
            .map_err(|e| e.to_string())
    })
    .await
    .and_then(|r| r);
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            warn!(error = %e, "/api/events: cannot read the state database");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": e })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_check() {
        let t = Secret::new("s3cret-token");
        assert!(authorized(Some(b"Bearer s3cret-token"), &t));
        assert!(
            authorized(Some(b"bearer s3cret-token"), &t),
            "scheme is case-insensitive"
        );
        assert!(
            authorized(Some(b"Bearer  s3cret-token "), &t),
            "surrounding blanks"
        );
        assert!(!authorized(None, &t));
        assert!(!authorized(Some(b""), &t));
        assert!(!authorized(Some(b"Bearer"), &t));
        assert!(!authorized(Some(b"Bearer "), &t));
        assert!(!authorized(Some(b"Bearer s3cret-toke"), &t), "prefix");
        assert!(!authorized(Some(b"Bearer s3cret-token2"), &t), "longer");
        assert!(
            !authorized(Some(b"Bearer S3cret-token"), &t),
            "case of the token matters"
        );
        assert!(!authorized(Some(b"Basic s3cret-token"), &t));
        assert!(!authorized(Some(b"s3cret-token"), &t));
    }

    #[test]
    fn constant_time_compare_agrees_with_equality() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"", b""),
            (b"a", b""),
            (b"", b"a"),
            (b"abc", b"abc"),
            (b"abd", b"abc"),
            (b"ab\xff", b"ab\x00"),
        ];
        for (a, b) in cases {
            assert_eq!(ct_eq(a, b), a == b, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn bind_error_names_the_setting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = held.local_addr().unwrap();
            let e = bind(addr).await.unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("http.listen = \"{addr}\": cannot listen")),
                "{e}"
            );
        });
    }
}
