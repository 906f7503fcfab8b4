//! What the spec knows about paths, for the middleware: the route template a request
//! matched (the label of its metrics and the `route` of its log line) and the methods a path
//! allows (the `Allow` header of a 405).
//!
//! Both are read once from [`Apis`]' metadata, the same that routes the requests and
//! describes them in the spec, so a new operation is counted, logged and listed in `Allow`
//! without being written down a second time. The documentation routes are not in the spec:
//! their paths come from `docs`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use poem::PathPattern;
use poem::http::HeaderValue;
use poem_openapi::{OpenApi, OperationId};

use crate::api::Apis;

/// The route template of a response or error: the OpenAPI path of the operation that answered
/// (`/api/users/{username}`), else poem's pattern (`/docs`).
pub(super) fn route_of(
    operation: Option<&OperationId>,
    pattern: Option<&PathPattern>,
) -> Option<Arc<str>> {
    static TEMPLATES: LazyLock<HashMap<&'static str, Arc<str>>> = LazyLock::new(|| {
        <Apis as OpenApi>::meta()
            .into_iter()
            .flat_map(|api| api.paths)
            .flat_map(|path| {
                let template: Arc<str> = Arc::from(path.path.as_str());
                path.operations
                    .into_iter()
                    .filter_map(move |op| Some((op.operation_id?, template.clone())))
            })
            .collect()
    });
    operation
        .and_then(|op| TEMPLATES.get(op.0).cloned())
        .or_else(|| pattern.map(|p| p.0.clone()))
}

/// The `Allow` header for a path: the methods of the spec's operations on it (a literal
/// segment such as `/api/users/me` wins over a `{parameter}`), or GET for the docs routes.
pub(super) fn allowed_methods(path: &str) -> Option<HeaderValue> {
    static PATHS: LazyLock<Vec<(Vec<String>, HeaderValue)>> = LazyLock::new(|| {
        let mut paths: Vec<(Vec<String>, HeaderValue)> = <Apis as OpenApi>::meta()
            .into_iter()
            .flat_map(|api| api.paths)
            .map(|path| {
                let methods: Vec<String> = path
                    .operations
                    .iter()
                    .map(|op| op.method.to_string())
                    .collect();
                let segments = path.path.split('/').map(str::to_owned).collect();
                let allow = HeaderValue::try_from(methods.join(", ")).expect("method names");
                (segments, allow)
            })
            .collect();
        for docs in super::docs::PATHS {
            let segments = docs.split('/').map(str::to_owned).collect();
            paths.push((segments, HeaderValue::from_static("GET")));
        }
        // Literal templates first, so that they win over parameters.
        paths.sort_by_key(|(segments, _)| segments.iter().filter(|s| s.starts_with('{')).count());
        paths
    });
    let wanted: Vec<&str> = path.split('/').collect();
    PATHS
        .iter()
        .find(|(template, _)| {
            template.len() == wanted.len()
                && template.iter().zip(&wanted).all(|(t, w)| {
                    t == w || (t.starts_with('{') && t.ends_with('}') && !w.is_empty())
                })
        })
        .map(|(_, allow)| allow.clone())
}

/// The route of a request that matched none.
pub(super) fn unmatched() -> Arc<str> {
    static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));
    UNMATCHED.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_not_allowed_names_the_methods_of_the_resource() {
        let allow = |p: &str| allowed_methods(p).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(allow("/api/users/me").as_deref(), Some("GET, DELETE"));
        assert_eq!(allow("/api/users/alice").as_deref(), Some("GET"));
        assert_eq!(allow("/api/auth/login").as_deref(), Some("POST"));
        assert_eq!(allow("/docs").as_deref(), Some("GET"));
        assert_eq!(allow("/api/users/").as_deref(), None);
        assert_eq!(allow("/nowhere").as_deref(), None);
    }
}
