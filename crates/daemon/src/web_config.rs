//! The web configuration file (`--web.config.file`, or `web_config` in the
//! TOML config): TLS and basic authentication for the HTTP endpoint, in the
//! YAML schema of Prometheus' exporter-toolkit, so a file written for
//! node_exporter works here too.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # PEM, leaf first, then intermediates
//!   key_file: server.key           # PEM, PKCS#8, PKCS#1 or SEC1
//!   client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
//!   client_ca_file: clients-ca.crt # needed for the two Verify types
//!   min_version: TLS12             # TLS12 (default) or TLS13
//!   max_version: TLS13
//! http_server_config:
//!   headers: { Strict-Transport-Security: max-age=31536000 }
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! [`load`] reads the file, parses it (unknown keys are errors), reads the
//! certificate, key and CA files (paths relative to the web config file's
//! folder) and builds the rustls server configuration (ring provider), so
//! every mistake is reported at start with the file and what is wrong.
//! [`BasicAuth`] checks `Authorization` headers against the bcrypt hashes
//! and remembers each user's last good password as a salted SHA-256 digest,
//! so a scrape every 15 s costs one bcrypt at start, not one per scrape
//! (exporter-toolkit caches the same way).
//!
//! What it does not do: serve anything (the server wraps its router with
//! [`crate::server::serve_with`]), reload a changed file, or accept the
//! exporter-toolkit settings rustls has no equivalent for (TLS 1.0/1.1,
//! `cipher_suites`, `curve_preferences`, `RequestClientCert` and
//! `RequireAnyClientCert`, which accept unverified client certificates,
//! HTTP/2): those are refused with the reason rather than ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A web config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebConfigError {
    /// The web config file, or a file it names, could not be read.
    #[error("web config {}: cannot read {}: {source}", file.display(), path.display())]
    Read {
        /// The web config file.
        file: PathBuf,
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not the schema (unknown key, wrong type).
    #[error("web config {}: {message}", file.display())]
    Yaml {
        /// The web config file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Well-formed, but a value cannot be used.
    #[error("web config {}: {problem}", file.display())]
    Invalid {
        /// The web config file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The checked web configuration.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// TLS server configuration, when `tls_server_config` is given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What the TLS section asks of clients, for messages.
    pub client_auth: ClientAuth,
    /// Basic authentication, when `basic_auth_users` is non-empty.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `client_auth_type` values that rustls can honour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate is asked for (`NoClientCert`, the default).
    #[default]
    None,
    /// A client certificate is optional, but verified against
    /// `client_ca_file` when given (`VerifyClientCertIfGiven`).
    VerifyIfGiven,
    /// A client certificate signed by `client_ca_file` is required
    /// (`RequireAndVerifyClientCert`).
    RequireAndVerify,
}

impl WebConfig {
    /// The URL scheme the listener speaks: `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// One line for `check-config` and the start-up log.
    pub fn describe(&self) -> String {
        let tls = match (&self.tls, self.client_auth) {
            (None, _) => "no TLS".to_owned(),
            (Some(_), ClientAuth::None) => "TLS".to_owned(),
            (Some(_), ClientAuth::VerifyIfGiven) => {
                "TLS, client certificates verified when given".to_owned()
            }
            (Some(_), ClientAuth::RequireAndVerify) => {
                "TLS, client certificates required".to_owned()
            }
        };
        let auth = match &self.basic_auth {
            None => "no basic auth".to_owned(),
            Some(a) => format!("basic auth for {} user(s)", a.users.len()),
        };
        format!("web config {}: {tls}, {auth}", self.file.display())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Response headers exporter-toolkit lets a web config set.
const SETTABLE_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
];

/// Reads, parses and checks the web config file at `path`, reading the
/// certificate and key files it names.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        file: path.to_path_buf(),
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and checks web config `text` as if read from `path` (which
/// anchors the relative paths inside and names the file in messages).
pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
    let file = path.to_path_buf();
    let invalid = |problem: String| WebConfigError::Invalid {
        file: file.clone(),
        problem,
    };
    // An empty file (or one with comments only) means no TLS and no auth,
    // as in exporter-toolkit.
    let raw: RawWebConfig = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        RawWebConfig::default()
    } else {
        serde_norway::from_str(text).map_err(|e| WebConfigError::Yaml {
            file: file.clone(),
            message: e.to_string(),
        })?
    };
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (tls, client_auth) = match raw.tls_server_config {
        None => (None, ClientAuth::None),
        Some(t) => {
            let (cfg, auth) = tls_config(t, &file, &dir)?;
            (Some(cfg), auth)
        }
    };
    let mut headers = Vec::new();
    if let Some(http) = raw.http_server_config {
        if http.http2 == Some(true) {
            return Err(invalid(
                "http_server_config.http2: true is not supported: probewatch serves HTTP/1.1 only"
                    .to_owned(),
            ));
        }
        for (name, value) in http.headers {
            let Some(known) = SETTABLE_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&name))
            else {
                return Err(invalid(format!(
                    "http_server_config.headers: {name:?} cannot be set; allowed: {}",
                    SETTABLE_HEADERS.join(", ")
                )));
            };
            let value = HeaderValue::from_str(&value).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers.{known}: {value:?} is not a valid header value"
                ))
            })?;
            headers.push((HeaderName::from_static(lowercase(known)), value));
        }
    }
    let basic_auth = if raw.basic_auth_users.is_empty() {
        None
    } else {
        Some(Arc::new(
            BasicAuth::new(raw.basic_auth_users).map_err(invalid)?,
        ))
    };
    Ok(WebConfig {
        file,
        tls,
        client_auth,
        basic_auth,
        headers,
    })
}

/// The lowercase static form of a settable header name.
fn lowercase(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        _ => "x-xss-protection",
    }
}

/// A `min_version`/`max_version` value as 12 or 13.
fn tls_version(key: &str, value: Option<&str>) -> Result<Option<u8>, String> {
    match value {
        None => Ok(None),
        Some("TLS12") => Ok(Some(12)),
        Some("TLS13") => Ok(Some(13)),
        Some(v @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_server_config.{key}: {v} is not supported (rustls speaks TLS12 and TLS13 only)"
        )),
        Some(v) => Err(format!(
            "tls_server_config.{key}: unknown version {v:?}; expected TLS12 or TLS13"
        )),
    }
}

/// The rustls server configuration of `tls_server_config`, and what it asks
/// of clients. `file` names the web config in messages; `dir` anchors the
/// certificate, key and CA paths.
fn tls_config(
    t: RawTls,
    file: &Path,
    dir: &Path,
) -> Result<(Arc<rustls::ServerConfig>, ClientAuth), WebConfigError> {
    let invalid = |problem: String| WebConfigError::Invalid {
        file: file.to_path_buf(),
        problem,
    };
    refuse_unsupported(&t).map_err(invalid)?;
    let cert_file = t.cert_file.ok_or_else(|| {
        invalid("tls_server_config: cert_file is missing (the server certificate, PEM)".to_owned())
    })?;
    let key_file = t.key_file.ok_or_else(|| {
        invalid("tls_server_config: key_file is missing (the server's private key, PEM)".to_owned())
    })?;
    let read = |p: &Path| {
        let p = dir.join(p);
        std::fs::read(&p).map_err(|source| WebConfigError::Read {
            file: file.to_path_buf(),
            path: p,
            source,
        })
    };
    let certs = pem_certs(&read(&cert_file)?).map_err(|e| {
        invalid(format!(
            "tls_server_config.cert_file {}: {e}",
            dir.join(&cert_file).display()
        ))
    })?;
    let key = PrivateKeyDer::from_pem_slice(&read(&key_file)?).map_err(|e| {
        invalid(format!(
            "tls_server_config.key_file {}: no private key in PEM form ({e})",
            dir.join(&key_file).display()
        ))
    })?;
    let client_auth = client_auth_type(t.client_auth_type.as_deref()).map_err(invalid)?;
    let versions =
        protocol_versions(t.min_version.as_deref(), t.max_version.as_deref()).map_err(invalid)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(format!("tls_server_config: {e}")))?;
    let builder = match (client_auth, t.client_ca_file) {
        (ClientAuth::None, Some(_)) => {
            return Err(invalid(
                "tls_server_config: client_ca_file is given but client_auth_type is \
                 NoClientCert; set client_auth_type: RequireAndVerifyClientCert"
                    .to_owned(),
            ));
        }
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(invalid(
                "tls_server_config: client_auth_type verifies client certificates and \
                 needs client_ca_file (the CA that signs them, PEM)"
                    .to_owned(),
            ));
        }
        (auth, Some(ca)) => {
            let pem = read(&ca)?;
            let verifier =
                client_verifier(auth, &dir.join(&ca), &pem, provider).map_err(invalid)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "tls_server_config: cert_file {} and key_file {} do not make a usable pair: {e}",
            dir.join(&cert_file).display(),
            dir.join(&key_file).display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), client_auth))
}

/// Refuses the exporter-toolkit cipher settings rustls has no equivalent
/// for, rather than ignoring them.
fn refuse_unsupported(t: &RawTls) -> Result<(), String> {
    for (key, given) in [
        ("cipher_suites", t.cipher_suites.is_some()),
        ("curve_preferences", t.curve_preferences.is_some()),
        (
            "prefer_server_cipher_suites",
            t.prefer_server_cipher_suites.is_some(),
        ),
    ] {
        if given {
            return Err(format!(
                "tls_server_config.{key} is not supported: rustls' defaults (TLS 1.3 and \
                 forward-secret AEAD TLS 1.2 suites only) are used; remove the key"
            ));
        }
    }
    Ok(())
}

/// A `client_auth_type` value rustls can honour; the two that accept
/// unverified certificates are refused.
fn client_auth_type(value: Option<&str>) -> Result<ClientAuth, String> {
    match value {
        None | Some("NoClientCert") => Ok(ClientAuth::None),
        Some("VerifyClientCertIfGiven") => Ok(ClientAuth::VerifyIfGiven),
        Some("RequireAndVerifyClientCert") => Ok(ClientAuth::RequireAndVerify),
        Some(v @ ("RequestClientCert" | "RequireAnyClientCert")) => Err(format!(
            "tls_server_config.client_auth_type: {v} accepts unverified client \
             certificates and is not supported; use RequireAndVerifyClientCert or \
             VerifyClientCertIfGiven with client_ca_file"
        )),
        Some(v) => Err(format!(
            "tls_server_config.client_auth_type: unknown value {v:?}; expected \
             NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )),
    }
}

/// The protocol versions from `min_version` to `max_version` (default TLS12
/// to TLS13).
fn protocol_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = tls_version("min_version", min)?;
    let max = tls_version("max_version", max)?;
    let (lo, hi) = (min.unwrap_or(12), max.unwrap_or(13));
    if lo > hi {
        return Err(format!(
            "tls_server_config: min_version TLS{lo} is above max_version TLS{hi}"
        ));
    }
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (lo..=hi).contains(v))
            .map(|(_, p)| p)
            .collect(),
    )
}

/// A verifier of client certificates signed by a CA of `pem` (read from
/// `ca_path`, which messages name); with [`ClientAuth::VerifyIfGiven`] a
/// client without a certificate is let in.
fn client_verifier(
    auth: ClientAuth,
    ca_path: &Path,
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let at_fault = |e: &dyn std::fmt::Display| {
        format!(
            "tls_server_config.client_ca_file {}: {e}",
            ca_path.display()
        )
    };
    let cas = pem_certs(pem).map_err(|e| at_fault(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| at_fault(&e))?;
    }
    let mut verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if auth == ClientAuth::VerifyIfGiven {
        verifier = verifier.allow_unauthenticated();
    }
    verifier.build().map_err(|e| at_fault(&e))
}

/// Every certificate of a PEM file; an error when there is none.
fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate (expected -----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}

/// Smallest bcrypt cost accepted (bcrypt's own minimum).
const MIN_BCRYPT_COST: u32 = 4;

/// Largest bcrypt cost accepted: htpasswd's maximum (one check takes about
/// 10 s at 17 on a current CPU; bcrypt itself allows 31).
const MAX_BCRYPT_COST: u32 = 17;

/// Users and their bcrypt hashes, with a cache of good passwords.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of the same cost as the users', checked for unknown users so
    /// that they take as long as known ones.
    dummy: String,
    /// Process-random salt of the cache digests.
    salt: [u8; 16],
    /// User → salted SHA-256 of the password last verified good.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl BasicAuth {
    /// Checks that every hash is a bcrypt hash; the error names the user.
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        let mut cost = bcrypt::DEFAULT_COST;
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(format!(
                    "basic_auth_users: user name {user:?} must be non-empty and without ':'"
                ));
            }
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                format!(
                    "basic_auth_users.{user}: not a bcrypt hash ({e}); make one with \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )
            })?;
            cost = parts.get_cost();
            // bcrypt allows up to 31, which takes days per check: the
            // daemon's start and every login would hang. htpasswd -B
            // makes 4 to 17.
            if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
                return Err(format!(
                    "basic_auth_users.{user}: bcrypt cost {cost} is outside \
                     {MIN_BCRYPT_COST}..={MAX_BCRYPT_COST} (htpasswd's range; each step doubles \
                     the time of every password check); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                ));
            }
        }
        let dummy = bcrypt::hash("probewatch-no-such-user", cost)
            .map_err(|e| format!("basic_auth_users: cannot make a comparison hash: {e}"))?;
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| "basic_auth_users: no system randomness for the cache salt".to_owned())?;
        Ok(BasicAuth {
            users,
            dummy,
            salt,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The configured user names.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Whether `password` was already verified good for `user` (no bcrypt).
    pub fn cached(&self, user: &str, password: &str) -> bool {
        let digest = self.digest(password);
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(user)
            .is_some_and(|known| constant_time_eq(known, &digest))
    }

    /// Checks `user`/`password` against the bcrypt hash (slow by design:
    /// call it off the async runtime) and remembers a good password.
    /// Unknown users are checked against a dummy hash, so they take as long.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if self.cached(user, password) {
            return true;
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        // Passwords longer than bcrypt's 72 bytes are an error, i.e. refused.
        let good = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if good {
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(user.to_owned(), self.digest(password));
        }
        good
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `user` and `password` of an `Authorization: Basic …` header value.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard base64 with padding (RFC 4648 §4), canonical padding only.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str, dir: &Path) -> String {
        parse(text, &dir.join("web.yml")).unwrap_err().to_string()
    }

    #[test]
    fn base64_and_basic_header() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjN0"),
            Some(("alice".to_owned(), "s3cr3t".to_owned()))
        );
        assert_eq!(
            parse_basic("basic YTo="),
            Some(("a".to_owned(), String::new()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!!"), None);
        assert_eq!(parse_basic("Basic YWxpY2U"), None);
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64_decode("YQ==YWJj"), None);
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        let dir = tempfile::tempdir().unwrap();
        let w = parse("# nothing\n\n", &dir.path().join("web.yml")).unwrap();
        assert!(w.tls.is_none() && w.basic_auth.is_none());
        assert_eq!(w.scheme(), "http");
    }

    #[test]
    fn basic_auth_checks_hashes_and_caches_good_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cr3t", 4).unwrap();
        let text = format!("basic_auth_users:\n  alice: '{hash}'\n");
        let w = parse(&text, &dir.path().join("web.yml")).unwrap();
        let auth = w.basic_auth.unwrap();
        assert_eq!(auth.users().collect::<Vec<_>>(), ["alice"]);
        assert!(!auth.cached("alice", "s3cr3t"));
        assert!(auth.verify("alice", "s3cr3t"));
        assert!(auth.cached("alice", "s3cr3t"));
        assert!(!auth.cached("alice", "other"));
        assert!(!auth.verify("alice", "other"));
        assert!(!auth.verify("bob", "s3cr3t"));
        assert!(!auth.verify("alice", &"x".repeat(100)));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = err("basic_auth_users:\n  alice: plain-text\n", d);
        assert!(
            e.contains("web.yml") && e.contains("basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        let e = err(
            "tls_server_config:\n  cert_file: a.crt\n  keyfile: a.key\n",
            d,
        );
        assert!(e.contains("unknown field `keyfile`"), "{e}");
        let e = err("tls_server_config:\n  key_file: a.key\n", d);
        assert!(e.contains("cert_file is missing"), "{e}");
        let e = err(
            "tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n",
            d,
        );
        assert!(e.contains("cannot read") && e.contains("none.crt"), "{e}");
        write(d, "junk.crt", "not pem\n");
        write(d, "junk.key", "not pem\n");
        let e = err(
            "tls_server_config:\n  cert_file: junk.crt\n  key_file: junk.key\n",
            d,
        );
        assert!(
            e.contains("junk.crt") && e.contains("no certificate"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    Server: x\n", d);
        assert!(e.contains("\"Server\" cannot be set"), "{e}");
        let e = err("http_server_config:\n  http2: true\n", d);
        assert!(e.contains("HTTP/1.1 only"), "{e}");
        let e = err("basic_auth_users: [a, b]\n", d);
        assert!(e.contains("web.yml"), "{e}");
        // A well-formed hash of cost 31 (days per check) is refused.
        let e = err(
            "basic_auth_users:\n  alice: $2y$31$abcdefghijklmnopqrstuuJ7sT8QqX1OKwHTcT7c3gqfgXkVWZK8u\n",
            d,
        );
        assert!(
            e.contains("basic_auth_users.alice: bcrypt cost 31 is outside 4..=17"),
            "{e}"
        );
    }

    #[test]
    fn tls_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        write(d, "s.crt", &cert.cert.pem());
        write(d, "s.key", &cert.signing_key.serialize_pem());
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        write(d, "o.key", &other.signing_key.serialize_pem());
        let base = "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n";
        let w = parse(base, &d.join("web.yml")).unwrap();
        assert_eq!(w.scheme(), "https");
        assert_eq!(w.client_auth, ClientAuth::None);
        let e = err(&format!("{base}  min_version: TLS10\n"), d);
        assert!(e.contains("min_version: TLS10 is not supported"), "{e}");
        let e = err(
            &format!("{base}  min_version: TLS13\n  max_version: TLS12\n"),
            d,
        );
        assert!(e.contains("above max_version"), "{e}");
        let e = err(
            &format!("{base}  client_auth_type: RequireAndVerifyClientCert\n"),
            d,
        );
        assert!(e.contains("needs client_ca_file"), "{e}");
        let e = err(
            &format!("{base}  client_auth_type: RequireAnyClientCert\n"),
            d,
        );
        assert!(e.contains("unverified client"), "{e}");
        let e = err(
            &format!("{base}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            d,
        );
        assert!(e.contains("cipher_suites is not supported"), "{e}");
        let e = err(
            "tls_server_config:\n  cert_file: s.crt\n  key_file: o.key\n",
            d,
        );
        assert!(e.contains("do not make a usable pair"), "{e}");
        let w = parse(
            &format!(
                "{base}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: s.crt\n  min_version: TLS13\n"
            ),
            &d.join("web.yml"),
        )
        .unwrap();
        assert_eq!(w.client_auth, ClientAuth::RequireAndVerify);
        assert!(w.describe().contains("client certificates required"));
    }
}
