//! Security headers on every response: no MIME sniffing, no framing, a Content-Security-Policy,
//! and `Cache-Control: no-store` where a response carries a token or account data, so that no
//! browser or proxy cache keeps it.

use poem::Response;
use poem::http::{HeaderValue, header};

/// The API answers JSON only: nothing may load, run or frame it.
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Swagger UI's page inlines its bundle, its stylesheet and the script that starts it (all
/// compiled into the binary, no CDN), draws icons from `data:` URIs, and calls the API on
/// this origin ("Try it out"). It renders no user input; nothing else may load, and nothing
/// may frame it.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// Routes whose responses carry a token or the caller's own account.
const PRIVATE_ROUTES: &[&str] = &[
    "/api/auth/login",
    "/api/auth/register",
    "/api/users/me",
    "/api/users/me/profile",
    "/api/users/me/password",
];

/// Adds the security headers for a response to `route` (its template, or `unmatched`).
pub(super) fn secure(resp: &mut Response, route: &str) {
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = if super::docs::PATHS[..2].contains(&route) {
        DOCS_CSP
    } else {
        API_CSP
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if PRIVATE_ROUTES.contains(&route) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
