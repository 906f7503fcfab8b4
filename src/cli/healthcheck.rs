//! `app healthcheck`: asks a running server's `/ready`, for a Docker `HEALTHCHECK` in an
//! image without curl. Loads the same configuration as `serve`, so it finds the same port.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::exit::{ExitCode, coded};
use crate::config::Settings;

pub(super) const EXAMPLES: &str = "\
Examples:
  app healthcheck                              GET http://127.0.0.1:$PORT/ready
  app healthcheck --url http://10.0.0.7:3000   another instance
  HEALTHCHECK CMD [\"/app\", \"healthcheck\"]       in a Dockerfile

Exit codes: 0 ready; 1 not ready, not reachable or no answer in time (Docker's
HEALTHCHECK convention: 0 healthy, 1 unhealthy).";

/// Options of `app healthcheck`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Base URL of the server (default: `http.healthcheck_url`, else this host's API port).
    #[arg(long)]
    pub url: Option<String>,

    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Exits 0 when `/ready` answers 200.
pub(super) async fn run(args: Args, settings: &Settings) -> anyhow::Result<()> {
    let base = match args.url.or_else(|| settings.http.healthcheck_url.clone()) {
        Some(url) => url,
        None => {
            let host = match settings.http.host {
                ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            format!("http://{host}:{}", settings.http.port)
        }
    };
    let url = url::Url::parse(&base)
        .and_then(|u| u.join("ready"))
        .with_context(|| format!("`{base}` is not a URL"))?;
    if url.scheme() != "http" {
        bail!("only http:// URLs are supported, got `{base}`");
    }
    let status = tokio::time::timeout(args.timeout, get_status(&url))
        .await
        .map_err(|_| {
            coded(
                ExitCode::Failure,
                format!("{url}: no answer within {:?}", args.timeout),
            )
        })?
        .map_err(|e| coded(ExitCode::Failure, format!("{url}: {e:#}")))?;
    if status != 200 {
        return Err(coded(
            ExitCode::Failure,
            format!("{url}: not ready (HTTP {status})"),
        ));
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET returning the status code.
async fn get_status(url: &url::Url) -> anyhow::Result<u16> {
    let host = url.host_str().context("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .context("cannot connect")?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: app-healthcheck\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 4096 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the answer is not HTTP")?;
    Ok(status)
}
