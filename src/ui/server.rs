//! The HTTP side of the web view: one page (HTML, CSS and JavaScript compiled into
//! the binary, nothing fetched from elsewhere), the JSON API and a server-sent event
//! stream that says when the views changed. A task re-reads the repository and the
//! status refs every [`REFRESH`], and at once when a local repository's refs change,
//! and publishes the views only when they differ, so a status change reaches open
//! pages within a second and an idle fleet costs the pages nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::UiError;
use super::load::{Loader, Views};
use crate::source::trigger::Wake;
use crate::source::watch::{RepositoryWatch, watch_repository};

/// How often the repository and the status refs are re-read.
pub const REFRESH: Duration = Duration::from_millis(500);
/// The least time between two re-reads, however often a watched repository changes.
const MIN_GAP: Duration = Duration::from_millis(200);

const PAGE: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/ui.css");
const SCRIPT: &str = include_str!("assets/ui.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// The views as last published, with their version (bumped on every change) and the
/// time they were read.
#[derive(Debug)]
struct Published {
    version: u64,
    at: SystemTime,
    views: Views,
}

/// A running web view; dropping it stops the server and the re-reading.
pub struct UiServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    refresher: tokio::task::JoinHandle<()>,
}

impl UiServer {
    /// Reads the fleet once (an unreadable repository is an error here, before
    /// anything is served), then serves the page and the API on `listener` from the
    /// current Tokio runtime and re-reads the fleet every [`REFRESH`], and at once when
    /// a local repository's refs change.
    pub async fn start(
        listener: tokio::net::TcpListener,
        mut loader: Loader,
    ) -> Result<UiServer, UiError> {
        let addr = listener.local_addr().map_err(UiError::Serve)?;
        let (loader, first) = tokio::task::spawn_blocking(move || {
            let first = loader.load(SystemTime::now());
            (loader, first)
        })
        .await
        .map_err(UiError::FirstRead)?;
        let first = first?;
        for u in &first.fleet.unreadable {
            tracing::warn!(status = %u, "ignoring an unreadable status ref");
        }
        let (tx, rx) = watch::channel(Arc::new(Published {
            version: 1,
            at: SystemTime::now(),
            views: first,
        }));
        let wake = Wake::new();
        // A status ref written to a local repository shows at once; without a watch
        // (a URL, or no inotify) the periodic re-read still sees it.
        let watcher = loader
            .local_path()
            .and_then(|p| watch_repository(p, wake.clone(), &[]).ok());
        let refresher = tokio::spawn(refresh(loader, tx, wake, watcher));
        let task = tokio::spawn(crate::agent::listener::serve(listener, routes(rx)));
        Ok(UiServer {
            addr,
            task,
            refresher,
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until the task ends (it does not, unless the runtime shuts down).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.refresher.abort();
    }
}

/// Re-reads the fleet every [`REFRESH`] or when woken (at most every [`MIN_GAP`]) and
/// publishes the views when they changed. A failed read keeps the last views and
/// publishes why, once per distinct error.
async fn refresh(
    mut loader: Loader,
    tx: watch::Sender<Arc<Published>>,
    wake: Wake,
    _watcher: Option<RepositoryWatch>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = wake.woken() => {}
        }
        let now = SystemTime::now();
        let Ok((back, result)) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let r = loader.load(now);
            tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "re-read the fleet"
            );
            (loader, r)
        })
        .await
        else {
            return;
        };
        loader = back;
        let last = tx.borrow().clone();
        let views = match result {
            Ok(v) => v,
            Err(e) => {
                let why = crate::error_text::chain(&e);
                if last.views.fleet.error.as_deref() == Some(why.as_str()) {
                    continue;
                }
                tracing::warn!(error = %why, "cannot re-read the fleet; showing the last state read");
                let mut v = last.views.clone();
                v.fleet.error = Some(why);
                v
            }
        };
        if views != last.views {
            if views.fleet.unreadable != last.views.fleet.unreadable {
                for u in &views.fleet.unreadable {
                    tracing::warn!(status = %u, "ignoring an unreadable status ref");
                }
            }
            let next = Arc::new(Published {
                version: last.version + 1,
                at: now,
                views,
            });
            if tx.send(next).is_err() {
                return;
            }
        }
        // Agents writing their statuses in a burst cost one re-read, not one each.
        tokio::time::sleep(MIN_GAP).await;
    }
}

fn routes(rx: watch::Receiver<Arc<Published>>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", PAGE) }))
        .route(
            "/ui.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route("/api/fleet", get(fleet))
        .route("/api/apps/{app}", get(app))
        .route("/api/events", get(events))
        .fallback(|| async {
            json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "not found: the page is /, the API /api/fleet, /api/apps/<app> and /api/events"}),
            )
        })
        .with_state(rx)
}

/// The page may load only what this server serves, and nothing may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The view with the version and read time the page needs to follow changes and to
/// count bake time against the server's clock.
fn stamped(p: &Published, view: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("version".into(), json!(p.version));
    out.insert(
        "at".into(),
        json!(humantime::format_rfc3339_millis(p.at).to_string()),
    );
    if let Value::Object(fields) = view {
        out.extend(fields);
    }
    Value::Object(out)
}

async fn fleet(State(rx): State<watch::Receiver<Arc<Published>>>) -> Response {
    let p = rx.borrow().clone();
    match serde_json::to_value(&p.views.fleet) {
        Ok(v) => json_response(StatusCode::OK, stamped(&p, v)),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn app(
    State(rx): State<watch::Receiver<Arc<Published>>>,
    Path(name): Path<String>,
) -> Response {
    let p = rx.borrow().clone();
    let Some(view) = p.views.apps.get(&name) else {
        let known: Vec<&String> = p.views.apps.keys().collect();
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no app '{name}' in the fleet at {}; the apps are listed by /api/fleet", p.views.fleet.head.short), "apps": known}),
        );
    };
    match serde_json::to_value(view) {
        Ok(v) => json_response(StatusCode::OK, stamped(&p, v)),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

/// `event: change` with `{"version": N}` at once and after every change; the page
/// then reads the API again.
async fn events(
    State(rx): State<watch::Receiver<Arc<Published>>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = rx.clone();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let version = rx.borrow_and_update().version;
        let event = Event::default()
            .event("change")
            .data(json!({ "version": version }).to_string());
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
