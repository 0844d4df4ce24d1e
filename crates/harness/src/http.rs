//! GET over real HTTP with `ureq` (no TLS client configuration here: the
//! secured benchmark brings its own). A [`Client`] either keeps its
//! connection alive between requests or opens a new one for each; a body
//! may be up to 64 MiB (a report page of a long run is large).

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The timeout of [`http_get`] and [`try_http_get`].
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest body read.
const BODY_LIMIT: u64 = 64 << 20;

/// An HTTP client with a timeout per request (connect to last byte).
#[derive(Clone, Debug)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A client whose requests time out after `timeout`; with `keep_alive`
    /// false every request opens a new connection.
    pub fn new(timeout: Duration, keep_alive: bool) -> Client {
        let mut b = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout));
        if !keep_alive {
            b = b.max_idle_connections(0).max_idle_connections_per_host(0);
        }
        Client {
            agent: b.build().into(),
        }
    }

    /// GET `url`: (status, body), whatever the status; an error for a
    /// transport failure or an unreadable body.
    pub fn get(&self, url: &str) -> Result<(u16, String)> {
        let mut resp = self
            .agent
            .get(url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .with_context(|| format!("GET {url}: body"))?;
        Ok((resp.status().as_u16(), body))
    }

    /// GET `url`: the body of a 200; any other status is an error naming it
    /// and the body's first line.
    pub fn get_ok(&self, url: &str) -> Result<String> {
        let (status, body) = self.get(url)?;
        if status != 200 {
            bail!(
                "GET {url}: status {status}: {}",
                body.lines().next().unwrap_or("")
            );
        }
        Ok(body)
    }
}

/// GET `url` over a new connection with a [`TIMEOUT`]: (status, body).
pub fn try_http_get(url: &str) -> Result<(u16, String)> {
    Client::new(TIMEOUT, false).get(url)
}

/// [`try_http_get`] for tests: panics on a transport error.
pub fn http_get(url: &str) -> (u16, String) {
    try_http_get(url).unwrap_or_else(|e| panic!("{e:#}"))
}
