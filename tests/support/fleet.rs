//! `app serve` replicas behind nginx, and the rollout a Deployment does to them with new
//! settings: each replica in turn is replaced ([`Nginx::replace`]). Every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::nginx::Nginx;
use super::{Served, TestDb};

/// The replicas of one Deployment and the ingress in front of them.
pub struct Fleet {
    /// The replicas, in the order of `ports`.
    pub replicas: Vec<Served>,
    /// Their API ports.
    pub ports: Vec<u16>,
    /// The stand-in for ingress-nginx.
    pub nginx: Nginx,
    dir: PathBuf,
}

/// Settings as owned pairs, since a rollout's values (a window's end time) are computed.
pub type Settings = Vec<(String, String)>;

/// [`Settings`] from literal pairs.
pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What every rollout proof runs its replicas with. The grace period covers the time the
/// endpoint update takes to reach nginx (a reload here, well under a second; Kubernetes'
/// default is 5 s). The database stays up throughout: a request that waits for a pooled
/// connection is waiting for CPU on these two shared cores, not for an outage, so the acquire
/// timeout is generous (a 2 s one once turned a starved PATCH into a 503 under a parallel
/// build).
pub fn rollout_settings() -> Settings {
    settings(&[
        ("APP_HTTP__SHUTDOWN_GRACE", "1s"),
        ("APP_HTTP__SHUTDOWN_TIMEOUT", "10s"),
        ("APP_DATABASE__ACQUIRE_TIMEOUT", "8s"),
    ])
}

fn as_pairs(settings: &Settings) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

impl Fleet {
    /// `count` replicas of `db` with `settings`, all ready, behind nginx; logs in `dir`.
    pub async fn start(db: &TestDb<'_>, dir: &Path, count: usize, settings: &Settings) -> Fleet {
        let ports: Vec<u16> = (0..count).map(|_| super::free_port()).collect();
        let client = reqwest::Client::new();
        let mut replicas = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let log = dir.join(format!("replica-{i}.log"));
            let mut replica = Served::replica(db, *port, &log, &as_pairs(settings));
            replica.wait_ready(&client, Duration::from_secs(30)).await;
            replicas.push(replica);
        }
        let nginx = Nginx::start(dir, &ports);
        Fleet {
            replicas,
            ports,
            nginx,
            dir: dir.to_owned(),
        }
    }

    /// nginx's base URL.
    pub fn base(&self) -> String {
        self.nginx.base()
    }

    /// Replaces every replica, one at a time, by one with `settings`, as a rollout with
    /// `maxUnavailable: 0` does; returns when each came back into nginx's upstreams.
    pub async fn roll(&mut self, db: &TestDb<'_>, settings: &Settings) -> Vec<Instant> {
        let mut back_at = Vec::new();
        for i in 0..self.replicas.len() {
            let log = self.dir.join(format!("replica-{i}.log"));
            let port = self.ports[i];
            self.nginx
                .replace(&mut self.replicas[i], &self.ports, i, || {
                    Served::replica(db, port, &log, &as_pairs(settings))
                })
                .await;
            back_at.push(Instant::now());
            // Let the new replica take traffic (and any passive-check penalty expire) before
            // the next one goes.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        back_at
    }
}
