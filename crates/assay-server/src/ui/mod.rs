//! The expert workbench: `/ui`, server-rendered HTML for the domain expert who never uses a
//! CLI. One URL per entity; every page renders the same view struct as its `/v1` twin, through
//! the same query function (`projects_api`, `optimise_api`), and links that twin
//! (`<link rel="alternate">`). Forms post to `/ui` routes that take the same request structs and
//! answer with a redirect (post/redirect/get), so every flow works without JavaScript; htmx
//! (vendored, `assets/vendor/VERSIONS`) adds live run progress over server-sent events, rendered
//! by the same fragment template as the first load, and `assets/ui.js` keyboard shortcuts.
//!
//! It owns the templates (`templates/`, compiled into the binary, strict about undefined
//! values, HTML-escaped: model outputs, rationales and check texts are untrusted), the static
//! files, the login that turns the API key into a session cookie, and the page headers
//! (a Content-Security-Policy with no inline script or style). It must not query the store
//! or call the pipeline other than through the `/v1` handlers' functions.

mod actions;
mod pages;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// The session cookie: a token the server draws at start, given for the API key at login.
pub(crate) const SESSION_COOKIE: &str = "assay_session";
/// Who labels and rules, recorded with each label and ruling.
pub(crate) const REVIEWER_COOKIE: &str = "assay_reviewer";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Static files at versioned URLs, so they can be cached for good.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    ("htmx-4.0.1.min.js", "text/javascript", include_bytes!("../../assets/vendor/htmx-4.0.1.min.js")),
    ("hx-sse-4.0.1.min.js", "text/javascript", include_bytes!("../../assets/vendor/hx-sse-4.0.1.min.js")),
    (concat!("ui-", env!("CARGO_PKG_VERSION"), ".css"), "text/css", include_bytes!("../../assets/ui.css")),
    (concat!("ui-", env!("CARGO_PKG_VERSION"), ".js"), "text/javascript", include_bytes!("../../assets/ui.js")),
];

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("projects.html", include_str!("../../templates/projects.html")),
    ("project.html", include_str!("../../templates/project.html")),
    ("upload.html", include_str!("../../templates/upload.html")),
    ("items.html", include_str!("../../templates/items.html")),
    ("item.html", include_str!("../../templates/item.html")),
    ("discover.html", include_str!("../../templates/discover.html")),
    ("run.html", include_str!("../../templates/run.html")),
    ("run_status.html", include_str!("../../templates/run_status.html")),
    ("set.html", include_str!("../../templates/set.html")),
    ("check.html", include_str!("../../templates/check.html")),
    ("diff.html", include_str!("../../templates/diff.html")),
    ("report.html", include_str!("../../templates/report.html")),
    ("questions.html", include_str!("../../templates/questions.html")),
    ("question.html", include_str!("../../templates/question.html")),
    ("review.html", include_str!("../../templates/review.html")),
    ("gold.html", include_str!("../../templates/gold.html")),
    ("optimise.html", include_str!("../../templates/optimise.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::projects))
        .route("/ui/", get(pages::projects))
        .route("/ui/static/{file}", get(static_file))
        .route("/ui/login", get(pages::login).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/projects", post(actions::create_project))
        .route("/ui/p/{project}", get(pages::project))
        .route("/ui/p/{project}/data/new", get(pages::upload))
        .route("/ui/p/{project}/data", post(actions::upload))
        .route("/ui/p/{project}/data/{dataset}", get(pages::items))
        .route("/ui/p/{project}/data/{dataset}/items/{item}", get(pages::item))
        .route("/ui/p/{project}/discover", get(pages::discover).post(actions::discover))
        .route("/ui/p/{project}/runs", post(actions::start_run))
        .route("/ui/p/{project}/runs/{run}", get(pages::run))
        .route("/ui/p/{project}/runs/{run}/live", get(pages::run_live))
        .route("/ui/p/{project}/sets/{version}", get(pages::set))
        .route("/ui/p/{project}/sets/{version}/checks/{check}", get(pages::check))
        .route("/ui/p/{project}/checks/{check}", post(actions::check_action))
        .route("/ui/p/{project}/sets/{from}/diff/{to}", get(pages::diff))
        .route("/ui/p/{project}/report", get(pages::report))
        .route("/ui/p/{project}/questions", get(pages::questions))
        .route("/ui/p/{project}/questions/{question}", get(pages::question))
        .route("/ui/p/{project}/questions/{question}/answer", post(actions::answer))
        .route("/ui/p/{project}/questions/{question}/preview", post(actions::preview))
        .route("/ui/p/{project}/questions/{question}/reopen", post(actions::reopen))
        .route("/ui/p/{project}/review", get(pages::review))
        .route("/ui/p/{project}/labels", post(actions::label))
        .route("/ui/p/{project}/labels/undo", post(actions::undo_label))
        .route("/ui/p/{project}/refine", post(actions::refine))
        .route("/ui/p/{project}/gold", get(pages::gold))
        .route("/ui/p/{project}/gold/{id}/critique", post(actions::critique))
        .route("/ui/p/{project}/optimise", post(actions::optimise))
        .route("/ui/optimise/{id}", get(pages::optimise))
        .route("/ui/optimise/{id}/live", get(pages::optimise_live))
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("template {name}: {e:#}"));
        }
        env.add_filter("num", |v: Option<f64>, digits: Option<usize>| v.filter(|v| v.is_finite()).map_or_else(|| "–".to_string(), |v| format!("{v:.*}", digits.unwrap_or(2))));
        env.add_filter("pct", |v: Option<f64>| v.filter(|v| v.is_finite()).map_or_else(|| "–".to_string(), |v| format!("{:.0}%", v * 100.0)));
        env.add_filter("truncate", |v: String, n: Option<usize>| {
            let n = n.unwrap_or(255);
            if v.chars().count() <= n {
                v
            } else {
                format!("{}…", v.chars().take(n).collect::<String>())
            }
        });
        env.add_filter("urlencode", |v: String| escape_url(&v, b""));
        env.add_global("version", env!("CARGO_PKG_VERSION"));
        env.add_global("css", concat!("/ui/static/ui-", env!("CARGO_PKG_VERSION"), ".css"));
        env.add_global("js", concat!("/ui/static/ui-", env!("CARGO_PKG_VERSION"), ".js"));
        env
    })
}

/// What every page shows besides its view: its title, its `/v1` twin, who is reviewing.
#[derive(Serialize)]
pub(crate) struct Frame {
    pub title: String,
    /// The JSON twin's URL.
    pub json: Option<String>,
    pub reviewer: String,
    /// The project the page belongs to, for the navigation.
    pub project: Option<String>,
    /// Whether the server asks for a key (then a logout button shows).
    pub login: bool,
}

impl Frame {
    pub(crate) fn new(state: &AppState, headers: &HeaderMap, title: impl Into<String>, project: Option<&str>, json: Option<String>) -> Self {
        Self { title: title.into(), json, reviewer: reviewer(headers), project: project.map(str::to_string), login: state.0.config.api_key.is_some() }
    }
}

/// A page: `template` rendered with the frame and the view (as `view`) and any extras.
pub(crate) fn page(template: &str, frame: Frame, view: impl Serialize, status: StatusCode) -> Result<Response, UiError> {
    let html = environment()
        .get_template(template)
        .and_then(|t| t.render(minijinja::context! { frame => Value::from_serialize(&frame), view => Value::from_serialize(&view) }))
        .map_err(|e| UiError(ApiError::Internal(format!("rendering {template}: {e:#}"))))?;
    Ok(with_page_headers((status, axum::response::Html(html)).into_response()))
}

/// A fragment template (the part of a page a live update replaces) rendered with `status`, as
/// the page includes it on first load.
pub(crate) fn render_fragment(template: &str, status: impl Serialize) -> Result<String, ApiError> {
    environment()
        .get_template(template)
        .and_then(|t| t.render(minijinja::context! { status => Value::from_serialize(&status) }))
        .map_err(|e| ApiError::Internal(format!("rendering {template}: {e:#}")))
}

fn with_page_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A failure shown as a page with the same status as the `/v1` twin would give.
pub(crate) struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::warn!("{}", self.0);
        }
        let frame = Frame { title: format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error")), json: None, reviewer: String::new(), project: None, login: false };
        let view = serde_json::json!({"message": self.0.to_string(), "status": status.as_u16()});
        let html = environment().get_template("error.html").and_then(|t| t.render(minijinja::context! { frame => Value::from_serialize(&frame), view => Value::from_serialize(&view) }));
        match html {
            Ok(html) => with_page_headers((status, axum::response::Html(html)).into_response()),
            Err(_) => self.0.into_response(),
        }
    }
}

/// Post/redirect/get: 303 to the next page.
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], *bytes).into_response()
        }
        None => UiError(ApiError::RouteNotFound(format!("GET /ui/static/{file}"))).into_response(),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The reviewer's name from their cookie (percent-encoded there).
pub(crate) fn reviewer(headers: &HeaderMap) -> String {
    cookie(headers, REVIEWER_COOKIE).map(percent_decode).unwrap_or_default()
}

/// Whether the request carries this server's session cookie.
pub(crate) fn has_session(headers: &HeaderMap, session: &str) -> bool {
    cookie(headers, SESSION_COOKIE).is_some_and(|c| bool::from(c.as_bytes().ct_eq(session.as_bytes())))
}

/// A state-changing request from a page of another origin: refused (CSRF), whatever the
/// authentication. Browsers send `Origin` (and `Sec-Fetch-Site`) with every cross-origin POST;
/// clients that are not browsers send neither and are not affected.
pub(crate) fn cross_origin(req: &Request) -> Option<String> {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        return None;
    }
    let headers = req.headers();
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site" || s == "same-site") {
        return Some("Sec-Fetch-Site says the request comes from another site".into());
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|o| o == host);
    (!same).then(|| format!("Origin {origin} is not this server ({host})"))
}

/// The login page for a browser that is not logged in, remembering where it was going.
pub(crate) fn to_login(req: &Request) -> Response {
    let next = req.uri().path_and_query().map_or("/ui", |p| p.as_str());
    see_other(&format!("/ui/login?next={}", percent_encode(next)))
}

pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A path (slashes kept) or query value, escaped for a URL.
pub(crate) fn percent_encode(s: &str) -> String {
    escape_url(s, b"/")
}

/// Every byte but unreserved characters and `keep` as `%XX`.
fn escape_url(s: &str, keep: &[u8]) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A random session token for this server's lifetime.
pub(crate) fn new_session_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths the login does not guard: the login itself and the static files.
pub(crate) fn is_open(path: &str) -> bool {
    path == "/ui/login" || path.starts_with("/ui/static/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_cookies_round_trip() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; assay_reviewer=Dr%20J%C3%B6rg; assay_session=abc"));
        assert_eq!(reviewer(&headers), "Dr Jörg");
        assert!(has_session(&headers, "abc") && !has_session(&headers, "abd"));
        assert_eq!(percent_decode(&percent_encode("/ui/p/x?y=1&z=é")), "/ui/p/x?y=1&z=é");
    }

    #[test]
    fn cross_origin_posts_are_told_apart() {
        let req = |method: &str, origin: Option<&str>, site: Option<&str>| {
            let mut b = Request::builder().method(method).uri("/ui/projects").header(header::HOST, "127.0.0.1:8080");
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            if let Some(s) = site {
                b = b.header("sec-fetch-site", s);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert!(cross_origin(&req("POST", Some("http://127.0.0.1:8080"), Some("same-origin"))).is_none());
        assert!(cross_origin(&req("POST", None, None)).is_none(), "curl sends no Origin");
        assert!(cross_origin(&req("POST", Some("http://evil.example"), None)).is_some());
        assert!(cross_origin(&req("POST", None, Some("cross-site"))).is_some());
        assert!(cross_origin(&req("GET", Some("http://evil.example"), None)).is_none());
    }
}
