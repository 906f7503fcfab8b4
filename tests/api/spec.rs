//! The OpenAPI spec and Swagger UI.

use crate::helpers::spawn_app;

const COMMITTED_JSON: &str = include_str!("../../openapi/openapi.json");
const COMMITTED_YAML: &str = include_str!("../../openapi/openapi.yaml");

#[test]
fn committed_spec_matches_the_code() {
    assert!(
        app::api::spec_json() == COMMITTED_JSON && app::api::spec_yaml() == COMMITTED_YAML,
        "openapi/ is out of date with the code: run scripts/gen-openapi.sh and commit the result"
    );
}

#[tokio::test]
async fn spec_and_swagger_ui_are_served_offline() {
    let app = spawn_app().await;
    let json = app
        .read(app.client.get(format!("{}/openapi.json", app.base)))
        .await;
    assert_eq!(json.status, 200);
    assert_eq!(json.text, COMMITTED_JSON);
    let yaml = app
        .read(app.client.get(format!("{}/openapi.yaml", app.base)))
        .await;
    assert_eq!(yaml.status, 200);
    assert_eq!(yaml.text, COMMITTED_YAML);

    let docs = app.read(app.client.get(format!("{}/docs", app.base))).await;
    assert_eq!(docs.status, 200);
    assert!(
        docs.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        docs.text.contains("SwaggerUIBundle"),
        "the bundle is inlined"
    );
    assert!(
        docs.text.contains("/api/users/me/password"),
        "the spec is inlined"
    );
    for cdn in [
        "<script src=\"http",
        "<link href=\"http",
        "unpkg.com",
        "cdn.jsdelivr",
    ] {
        assert!(!docs.text.contains(cdn), "Swagger UI must not load {cdn}");
    }
}

#[test]
fn every_operation_is_documented() {
    let spec: serde_json::Value = serde_json::from_str(&app::api::spec_json()).unwrap();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let summary = op["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty(), "{method} {path} has no summary");
            // All ten error statuses and a success would be 11.
            let statuses = op["responses"].as_object().unwrap().len();
            assert!(
                statuses < 11,
                "{method} {path} lists every error status: add it to statuses_of"
            );
        }
    }
    let bearer = &spec["components"]["securitySchemes"]["BearerAuth"];
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
}

/// What a linter's recommended rules ask of the spec (scripts/lint-openapi.sh runs Redocly's):
/// every operation states its security, the public ones as the one empty requirement
/// ("none"); `servers` is present; every `nullable` has a `type` beside it.
#[test]
fn public_operations_say_they_need_no_security_and_nullable_has_a_type() {
    let spec: serde_json::Value = serde_json::from_str(&app::api::spec_json()).unwrap();
    let none = serde_json::json!([{}]);
    let mut public = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let security = op
                .get("security")
                .unwrap_or_else(|| panic!("{method} {path} states no security"));
            if *security == none {
                public.push(format!("{method} {path}"));
            } else {
                assert_eq!(
                    security[0]["BearerAuth"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
            }
        }
    }
    for op in [
        "get /health",
        "get /ready",
        "get /api/info",
        "get /api/users",
        "post /api/auth/login",
    ] {
        assert!(
            public.iter().any(|p| p == op),
            "{op} is not public: {public:?}"
        );
    }
    assert!(!public.iter().any(|p| p.contains("/me")), "{public:?}");
    assert_eq!(spec["servers"][0]["url"], "/");

    fn walk(v: &serde_json::Value, at: &str) {
        match v {
            serde_json::Value::Object(map) => {
                if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                    assert!(map.contains_key("type"), "nullable without a type at {at}");
                }
                for (k, child) in map {
                    walk(child, &format!("{at}/{k}"));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    walk(&spec, "#");
}

/// The spec says what the server takes: a profile field the server clears on `null` is
/// `nullable` in the spec (a generated client could not send the `null` otherwise).
#[test]
fn profile_patch_fields_that_null_clears_are_nullable() {
    let spec: serde_json::Value = serde_json::from_str(&app::api::spec_json()).unwrap();
    let patch = &spec["components"]["schemas"]["ProfilePatch"]["properties"];
    for field in ["email", "name", "location", "bio", "personality_type"] {
        assert_eq!(
            patch[field]["nullable"], true,
            "ProfilePatch.{field}: {patch}"
        );
        assert_eq!(patch[field]["type"], "string", "ProfilePatch.{field}");
    }
}
