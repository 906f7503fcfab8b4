//! Rate limits on the operations that check a password (login, register, password change):
//! per client address and per account, so that neither one address guessing many accounts'
//! passwords nor many addresses guessing one account's gets far. Beyond a limit the answer
//! is a 429 with `Retry-After`, before any database query or hash.
//!
//! The client address is the socket's, unless the peer is in `rate.trusted_proxies` (the
//! ingress; addresses or CIDR ranges): then it is the rightmost `X-Forwarded-For` entry that
//! is not a trusted proxy, so that a client cannot choose its own address by sending the
//! header. The counters live in this process: with N replicas a client gets up to N times
//! the limit (docs/reliability.md).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use poem::Request;

use super::ApiError;
use crate::config::RateSettings;

/// Every this many checks, keys whose limit has fully recovered are forgotten, so that the
/// maps stay as small as the recent traffic.
const SWEEP_EVERY: u64 = 4096;

/// The longest account key kept: usernames are at most 50 characters.
const ACCOUNT_KEY_MAX: usize = 64;

/// Log lines a second about refused (429) attempts, whoever sends them: a flood is refused
/// cheaply, and must not become thousands of log lines a second for the log pipeline.
const REFUSAL_LINES_PER_SECOND: u32 = 10;

/// The limiters and who may say where a request came from.
pub(crate) struct Limits {
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_account: Option<DefaultKeyedRateLimiter<String>>,
    trusted_proxies: Vec<IpNet>,
    checks: AtomicU64,
    refusal_lines: governor::DefaultDirectRateLimiter,
    unlogged_refusals: AtomicU64,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl Limits {
    /// The limits `rate` describes; a limit of 0 is off.
    pub(crate) fn from_settings(rate: &RateSettings) -> Limits {
        Limits {
            per_client: limiter(rate.per_client_per_minute),
            per_account: limiter(rate.per_account_per_minute),
            trusted_proxies: rate.trusted_proxies.clone(),
            checks: AtomicU64::new(0),
            refusal_lines: RateLimiter::direct(Quota::per_second(
                NonZeroU32::new(REFUSAL_LINES_PER_SECOND).expect("not zero"),
            )),
            unlogged_refusals: AtomicU64::new(0),
        }
    }

    /// Whether to log one more refused attempt: `Some(n)` with the `n` refusals left unlogged
    /// since the last line, or `None` (this one is counted instead, and the next line that is
    /// logged says how many were left out).
    pub(crate) fn log_refusal(&self) -> Option<u64> {
        if self.refusal_lines.check().is_ok() {
            Some(self.unlogged_refusals.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged_refusals.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Where `req` came from: the peer, or what a trusted proxy says about it.
    pub(crate) fn client_of(&self, req: &Request) -> Option<IpAddr> {
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip().to_canonical())?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Right to left: each trusted proxy appended the address it saw. The first entry that
        // is not a trusted proxy is the client; whatever the client wrote further left is not
        // read, so garbage there changes nothing. When every entry is a proxy, the farthest
        // one is the best that is known.
        let entries: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for entry in entries.into_iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }

    /// Whether `ip` is one of `rate.trusted_proxies`.
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Counts one attempt from `client` on `account`; a 429 with the wait when either is
    /// over its limit.
    pub(crate) fn check(&self, client: Option<IpAddr>, account: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        if let (Some(limiter), Some(client)) = (&self.per_client, client) {
            limiter.check_key(&client).map_err(rate_limited)?;
        }
        if let Some(limiter) = &self.per_account {
            let end = account
                .char_indices()
                .nth(ACCOUNT_KEY_MAX)
                .map_or(account.len(), |(i, _)| i);
            limiter
                .check_key(&account[..end].to_owned())
                .map_err(rate_limited)?;
        }
        Ok(())
    }

    fn sweep(&self) {
        if let Some(limiter) = &self.per_client {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn rate_limited(not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::RateLimited {
        retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_past_the_log_budget_are_counted_into_the_next_line() {
        let limits = Limits::from_settings(&RateSettings::default());
        let logged = (0..1000).filter_map(|_| limits.log_refusal()).count();
        // A burst of one second's budget, maybe one more as the clock moves on.
        assert!(
            (REFUSAL_LINES_PER_SECOND as usize..=REFUSAL_LINES_PER_SECOND as usize + 1)
                .contains(&logged),
            "{logged} lines logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
        let next = limits.log_refusal().expect("the budget refills");
        assert_eq!(next as usize, 1000 - logged);
    }
}
