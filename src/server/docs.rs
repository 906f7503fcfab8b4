//! Swagger UI at `/docs` and the spec at `/openapi.json` and `/openapi.yaml`.
//!
//! The Swagger UI page embeds its JavaScript and CSS (about 1.6 MB, no CDN: it works
//! offline) and the spec. It is built on first request, once, and then served from a
//! `'static` string without copying.

use std::sync::LazyLock;

use poem::http::header;
use poem::{IntoResponse, Response, Route, get, handler};

use crate::api;

static SWAGGER_UI: LazyLock<String> = LazyLock::new(|| api::service().swagger_ui_html());
static SPEC_JSON: LazyLock<String> = LazyLock::new(api::spec_json);
static SPEC_YAML: LazyLock<String> = LazyLock::new(api::spec_yaml);

#[handler]
fn swagger_ui() -> Response {
    // Not `Html`, which copies its text into a new `String` per response: 1.6 MB pinned by
    // every client that reads it slowly (a proof of `tests/proof/limits.rs` found 290 MB).
    SWAGGER_UI
        .as_str()
        .with_content_type("text/html; charset=utf-8")
        .into_response()
}

#[handler]
fn spec_json() -> Response {
    SPEC_JSON
        .as_str()
        .with_content_type("application/json")
        .into_response()
}

#[handler]
fn spec_yaml() -> Response {
    SPEC_YAML
        .as_str()
        .with_content_type("application/yaml")
        .with_header(
            header::CONTENT_DISPOSITION,
            "inline; filename=\"openapi.yaml\"",
        )
        .into_response()
}

/// The paths of the documentation routes, each answering GET only.
pub(super) const PATHS: [&str; 4] = ["/docs", "/docs/", "/openapi.json", "/openapi.yaml"];

/// The documentation routes, to be merged into the main route.
pub(super) fn routes(route: Route) -> Route {
    let [docs, docs_slash, json, yaml] = PATHS;
    route
        .at(docs, get(swagger_ui))
        .at(docs_slash, get(swagger_ui))
        .at(json, get(spec_json))
        .at(yaml, get(spec_yaml))
}
