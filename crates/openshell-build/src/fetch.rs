//! Downloads: indexes into memory, artifacts into the store (verified against
//! the digest the lockfile pins, resumed after an interruption).

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use openshell_store::{Algorithm, Digest, Store, StoreError};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("GET {url}: response is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("`{0}` is not an SRI integrity string (expected `sha512-<base64>`)")]
    BadIntegrity(String),
}

/// An HTTP client for package sources: system trust roots, proxies from the
/// environment, no status-as-error magic.
#[derive(Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new()
    }
}

/// Size limit for index documents held in memory.
pub const INDEX_LIMIT: u64 = 512 << 20;

impl Fetcher {
    pub fn new() -> Fetcher {
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("openshell/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher { agent: config.new_agent() }
    }

    /// GETs a document (an index, a packument) into memory.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.get_with(url, &[])
    }

    /// GETs with extra request headers (e.g. `Accept`).
    pub fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, FetchError> {
        self.get_typed(url, headers).map(|(body, _)| body)
    }

    /// GETs with extra request headers; returns the body and its `Content-Type`
    /// (empty when the server sends none).
    pub fn get_typed(&self, url: &str, headers: &[(&str, &str)]) -> Result<(Vec<u8>, String), FetchError> {
        let http = |e: ureq::Error| FetchError::Http { url: url.to_owned(), message: e.to_string() };
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.call().map_err(http)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { url: url.to_owned(), status });
        }
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_owned();
        let body = resp.body_mut().with_config().limit(INDEX_LIMIT).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge { url: url.to_owned(), limit: INDEX_LIMIT },
            e => http(e),
        })?;
        Ok((body, content_type))
    }

    /// The Content-Length a HEAD request reports, if any.
    pub fn size(&self, url: &str) -> Result<Option<u64>, FetchError> {
        let resp = self
            .agent
            .head(url)
            .call()
            .map_err(|e| FetchError::Http { url: url.to_owned(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { url: url.to_owned(), status });
        }
        Ok(resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()))
    }

    /// Downloads `url` into the store as `expected`, resuming a partial download.
    /// `progress(done, total)` is called as bytes arrive. Returns the bytes downloaded.
    pub fn fetch_into(
        &self,
        store: &Store,
        url: &str,
        expected: &Digest,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, FetchError> {
        let store_err = |source| FetchError::Store { url: url.to_owned(), source };
        if store.contains(expected) {
            return Ok(0);
        }
        let mut partial = store.partial(expected).map_err(store_err)?;
        if store.contains(expected) {
            return Ok(0);
        }
        let mut offset = partial.offset().map_err(store_err)?;
        let http = |e: ureq::Error| FetchError::Http { url: url.to_owned(), message: e.to_string() };
        let mut req = self.agent.get(url);
        if offset > 0 {
            req = req.header("Range", &format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(http)?;
        let status = resp.status().as_u16();
        match status {
            206 => tracing::debug!(url, offset, "resuming"),
            200 => {
                if offset > 0 {
                    tracing::debug!(url, "server ignored the range; starting over");
                    partial.restart().map_err(store_err)?;
                    offset = 0;
                }
            }
            416 => {
                // Everything is already here (or the partial is bad): let finish() decide.
                return partial.finish().map(|_| 0).map_err(store_err);
            }
            s => return Err(FetchError::Status { url: url.to_owned(), status: s }),
        }
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|len| len + offset);
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = offset;
        let mut downloaded = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FetchError::Http {
                        url: url.to_owned(),
                        message: format!("download interrupted after {done} bytes: {e}"),
                    });
                }
            };
            partial.append(&buf[..n]).map_err(store_err)?;
            done += n as u64;
            downloaded += n as u64;
            progress(done, total);
        }
        partial.finish().map_err(store_err)?;
        Ok(downloaded)
    }
}

/// Converts an SRI string (`sha512-<base64>`, as npm publishes) to a digest.
pub fn digest_from_sri(sri: &str) -> Result<Digest, FetchError> {
    let bad = || FetchError::BadIntegrity(sri.to_owned());
    // Several space-separated hashes may be given: take the strongest we know.
    let mut best: Option<Digest> = None;
    for part in sri.split_whitespace() {
        let Some((algo, b64)) = part.split_once('-') else { continue };
        let algorithm = match algo {
            "sha512" => Algorithm::Sha512,
            "sha256" => Algorithm::Sha256,
            _ => continue,
        };
        let b64 = b64.split('?').next().unwrap_or(b64);
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
        let d = Digest::from_bytes(algorithm, &bytes).ok_or_else(bad)?;
        if best.as_ref().is_none_or(|b| b.algorithm() < d.algorithm()) {
            best = Some(d);
        }
    }
    best.ok_or_else(bad)
}

/// The SRI string of a digest.
pub fn sri_from_digest(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().name(), base64::engine::general_purpose::STANDARD.encode(d.bytes()))
}
