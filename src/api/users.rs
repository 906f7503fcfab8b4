//! `/api/users` and `/api/users/{username}`: users joined with their profiles, in one query
//! each, never with `password_hash`.
//!
//! The list is paginated by keyset on `id` (an opaque cursor carries the last id seen), so a
//! page costs the same on page 1 and page 10 000, and rows inserted meanwhile neither repeat
//! nor shift the pages.
//!
//! A large page (more than `api.large_page` users) is built in turn: at most
//! `api.large_page_concurrency` at once, from the query to the last byte sent, so that the
//! memory and the pool connections a burst of them takes (or clients that read them slowly)
//! are bounded by configuration, not by clients. The others wait for a turn within
//! `http.request_timeout`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::web::Data;
use poem::{Endpoint, EndpointExt, IntoResponse};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::bodies::{User, UserEnvelope};
use super::queries::{UserRow, select_user};
use super::{ApiError, ApiTags, State};
use crate::config::ApiSettings;
use crate::domain::Username;

/// The turns of large pages.
pub(crate) struct LargePages {
    /// Pages of more users than this take a turn.
    threshold: u32,
    turns: Arc<tokio::sync::Semaphore>,
}

impl LargePages {
    /// Turns as `api` configures them.
    pub(crate) fn new(api: &ApiSettings) -> LargePages {
        LargePages {
            threshold: api.large_page,
            turns: Arc::new(tokio::sync::Semaphore::new(api.large_page_concurrency)),
        }
    }

    /// Waits for a turn when `query` asks for a large page; small pages need none.
    async fn turn(&self, query: Option<&str>) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let limit = url::form_urlencoded::parse(query?.as_bytes())
            .find(|(key, _)| key == "limit")
            .and_then(|(_, value)| value.parse::<u32>().ok())?;
        if limit <= self.threshold {
            return None;
        }
        // Never closed: an error cannot happen, and would only mean "no turn needed".
        self.turns.clone().acquire_owned().await.ok()
    }
}

/// Builds `ep`'s page within a turn when it is large: the turn is taken before the query and
/// given back when the body has been sent (or its connection dropped), so that clients that
/// read slowly cannot pile up large bodies in memory either: they only hold turns, for at
/// most `http.write_timeout`.
fn in_turn<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    ep.around(|ep, req| async move {
        let turn = match req.data::<State>() {
            Some(state) => state.large_pages.turn(req.uri().query()).await,
            None => None,
        };
        let resp = ep.call(req).await?.into_response();
        Ok(match turn {
            Some(turn) => {
                let (parts, body) = resp.into_parts();
                let body = Turned {
                    body: body.into(),
                    _turn: turn,
                };
                poem::Response::from_parts(parts, poem::Body::from(BoxBody::new(body)))
            }
            None => resp,
        })
    })
}

/// A body as poem boxes it.
type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// A large page's body, holding its turn until it is dropped.
struct Turned {
    body: BoxBody,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Turned {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The public user directory.
#[derive(Default)]
pub(crate) struct UsersApi;

/// Page size when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub(crate) const MAX_LIMIT: u32 = 500;

/// A page of users, in the seed's envelope.
#[derive(Debug, Object)]
pub(crate) struct UserPage {
    /// Always `true` (errors use the error shape).
    pub success: bool,
    /// Users in ascending `id` order.
    pub data: Vec<User>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The page query: users after `$1` (an id), at most `$2`, with their profiles. Public so a
/// test can EXPLAIN its generic plan.
///
/// `p.user_id > $1` is implied by the join, but the planner cannot see it: without it, the
/// prepared statement's generic plan merge-joins profiles from the start of their index, and
/// a page 900 000 users deep reads 900 000 profiles (1.5 s instead of 0.2 ms).
pub const LIST_SQL: &str = concat!(
    select_user!(" and p.user_id > $1"),
    // language=PostgreSQL
    " where u.id > $1 order by u.id limit $2"
);

const CURSOR_PREFIX: &str = "id:";

fn encode_cursor(last_id: i32) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last_id}"))
}

fn decode_cursor(cursor: &str) -> Result<i32, ApiError> {
    let bad = || ApiError::BadRequest {
        code: "invalid_parameter",
        message: "`cursor` is not a cursor this API issued; use `next_cursor` from a page".into(),
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let raw = std::str::from_utf8(&raw).map_err(|_| bad())?;
    raw.strip_prefix(CURSOR_PREFIX)
        .and_then(|id| id.parse().ok())
        .ok_or_else(bad)
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Lists users with their profiles, in ascending id order, one page at a time. Follow
    /// `next_cursor` until it is `null`.
    #[oai(
        path = "/api/users",
        method = "get",
        operation_id = "list_users",
        transform = "in_turn"
    )]
    async fn list(
        &self,
        state: Data<&State>,
        /// Users per page: 1 to 500, default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page; leave out for the first page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let after = match cursor.0.as_deref() {
            Some(cursor) => decode_cursor(cursor)?,
            None => 0,
        };
        // One row more than asked tells whether there is a next page.
        let rows: Vec<UserRow> = sqlx::query_as(LIST_SQL)
            .bind(after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&state.pool)
            .await?;
        let mut users: Vec<User> = rows
            .into_iter()
            .map(|row| User::from(row).public(state.public_emails))
            .collect();
        let next_cursor = if users.len() > limit as usize {
            users.truncate(limit as usize);
            users.last().map(|u| encode_cursor(u.id))
        } else {
            None
        };
        Ok(Json(UserPage {
            success: true,
            data: users,
            next_cursor,
        }))
    }

    /// One user with their profile.
    #[oai(
        path = "/api/users/:username",
        method = "get",
        operation_id = "get_user"
    )]
    async fn get(
        &self,
        state: Data<&State>,
        /// The username.
        username: Path<String>,
    ) -> Result<Json<UserEnvelope>, ApiError> {
        let not_found = || ApiError::NotFound(format!("no user named `{}`", username.0));
        // A name longer than the column cannot exist and needs no query; nor can one with a
        // NUL, which PostgreSQL would refuse as a parameter (a 500).
        if username.0.chars().count() > Username::MAX || username.0.contains('\0') {
            return Err(not_found());
        }
        // language=PostgreSQL
        let row: Option<UserRow> =
            sqlx::query_as(concat!(select_user!(), " where u.username = $1"))
                .bind(username.0.as_str())
                .fetch_optional(&state.pool)
                .await?;
        let user = row.ok_or_else(not_found)?;
        Ok(UserEnvelope::of(
            User::from(user).public(state.public_emails),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_large_pages_take_a_turn_and_turns_are_bounded() {
        let pages = LargePages::new(&ApiSettings {
            large_page: 100,
            large_page_concurrency: 2,
            ..ApiSettings::default()
        });
        for small in [
            None,
            Some(""),
            Some("limit=100"),
            Some("limit=x"),
            Some("cursor=abc"),
        ] {
            assert!(pages.turn(small).await.is_none(), "{small:?}");
        }
        let a = pages.turn(Some("limit=500")).await.expect("a turn");
        let _b = pages
            .turn(Some("cursor=x&limit=101"))
            .await
            .expect("a turn");
        let third = pages.turn(Some("limit=500"));
        tokio::pin!(third);
        assert!(
            futures_poll_once(third.as_mut()).await.is_none(),
            "a third large page waits"
        );
        drop(a);
        assert!(third.await.is_some());
    }

    /// Whether `fut` is ready on its first poll.
    async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
        tokio::time::timeout(std::time::Duration::from_millis(50), fut)
            .await
            .ok()
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in ["", "!!", "aWQ6", &URL_SAFE_NO_PAD.encode("id:x"), "MTIz"] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
