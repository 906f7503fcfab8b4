//! `/health` (liveness) and `/ready` (readiness).
//!
//! Liveness touches nothing external: a database outage must not get every pod restarted.
//! Readiness asks the database, with a short timeout, and turns 503 the moment shutdown
//! begins so that Kubernetes stops routing here before the listener closes.
//!
//! Readiness asks on its own connection (`AppState::probe`), never on the API's pool: a read
//! burst that keeps every pooled connection busy proves the database is up, and must not turn
//! every replica unready at once (which would turn load into an outage).

use std::time::Duration;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, ErrorBody, State};

/// Longest a readiness check waits for the database.
const READY_TIMEOUT: Duration = Duration::from_millis(1500);

/// The liveness and readiness probes.
#[derive(Default)]
pub(crate) struct HealthApi;

/// A probe's good answer.
#[derive(Debug, Object)]
pub struct Status {
    /// `healthy` (liveness) or `ready` (readiness).
    pub status: String,
}

/// What `/ready` answers.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers and its schema is current: send traffic here.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// Do not send traffic here: `shutting_down`, `database_unavailable` or `schema_outdated`.
    #[oai(status = 503)]
    NotReady(Json<ErrorBody>),
}

fn not_ready(code: &str, message: impl Into<String>) -> ReadyResponse {
    ReadyResponse::NotReady(Json(ErrorBody::new(code, message)))
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up and serving. Checks nothing external.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<Status> {
        Json(Status {
            status: "healthy".into(),
        })
    }

    /// Readiness: 200 when the database answers and the schema is current; 503 with the
    /// reason otherwise, and from the moment shutdown begins.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&State>) -> ReadyResponse {
        let readiness = &state.readiness;
        if readiness.is_shutting_down() {
            return not_ready("shutting_down", "the server is shutting down");
        }
        match tokio::time::timeout(READY_TIMEOUT, check(&state)).await {
            Ok(Ok(())) => ReadyResponse::Ready(Json(Status {
                status: "ready".into(),
            })),
            Ok(Err(reply)) => reply,
            Err(_) => not_ready(
                "database_unavailable",
                "the database did not answer in time",
            ),
        }
    }
}

async fn check(state: &State) -> Result<(), ReadyResponse> {
    let unavailable = |e: sqlx::Error| {
        tracing::debug!("readiness: database unavailable: {e}");
        not_ready("database_unavailable", "the database is unavailable")
    };
    let mut conn = state.probe.acquire().await.map_err(unavailable)?;
    if state.readiness.schema_known_current() {
        // language=PostgreSQL
        sqlx::query("select 1")
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        return Ok(());
    }
    match crate::migrate::schema_status(&mut conn).await {
        Ok(status) if status.is_current() => {
            state.readiness.set_schema_current();
            Ok(())
        }
        Ok(status) => Err(not_ready(
            "schema_outdated",
            format!(
                "the schema is at {} but this binary needs {}: run `app migrate`",
                status.applied.as_deref().unwrap_or("nothing"),
                status.latest
            ),
        )),
        Err(e) => {
            tracing::warn!("readiness: cannot read the schema history: {e:#}");
            Err(not_ready(
                "database_unavailable",
                "the schema history could not be read",
            ))
        }
    }
}
