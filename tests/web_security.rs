//! The endpoint secured with an exporter-toolkit web config, as a user runs
//! it: the real `probewatch watch --web.config.file` binary, certificates
//! made here with rcgen (a test CA signing the server's and the clients'),
//! bcrypt hashes made with the bcrypt crate, and a real TLS client (ureq on
//! rustls) for every request. Covered: a good scrape over TLS with the right
//! password, wrong and missing passwords, plain HTTP to the TLS port,
//! required client certificates (missing, from another CA, good), and a
//! bad web config refused at start with the file and the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[path = "common/daemon.rs"]
mod harness;
use harness::{Daemon, exe, run_table, write_config};

/// A certificate and its key, PEM.
struct Pair {
    cert: String,
    key: String,
}

/// A CA that signs leaf certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Pair {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p
}

/// Standard base64 with padding, for the `Authorization` header.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A ureq agent trusting `ca`, presenting `client` when given.
fn agent(ca: &str, client: Option<&Pair>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let root = Certificate::from_pem(ca.as_bytes()).expect("CA PEM");
    let mut tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(vec![root])));
    if let Some(c) = client {
        let cert = Certificate::from_pem(c.cert.as_bytes()).expect("client cert PEM");
        let key = PrivateKey::from_pem(c.key.as_bytes()).expect("client key PEM");
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// A response: status, `WWW-Authenticate`, `Content-Type`, body.
struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    content_type: String,
    body: String,
}

fn get(agent: &ureq::Agent, url: &str, auth: Option<(&str, &str)>) -> Result<Reply, ureq::Error> {
    let mut req = agent.get(url);
    if let Some((user, password)) = auth {
        let token = base64(format!("{user}:{password}").as_bytes());
        req = req.header("Authorization", &format!("Basic {token}"));
    }
    let mut resp = req.call()?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let www_authenticate = header("www-authenticate");
    let content_type = header("content-type").unwrap_or_default();
    let body = resp.body_mut().read_to_string()?;
    Ok(Reply {
        status: resp.status().as_u16(),
        www_authenticate,
        content_type,
        body,
    })
}

/// GET `url` with a real HTTP client: (status, body), or the client's
/// error (connection refused, a TLS listener answering plain HTTP, …).
pub fn http_get_result(url: &str) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent.get(url).call()?;
    let body = resp.body_mut().read_to_string()?;
    Ok((resp.status().as_u16(), body))
}

/// A config watching an empty run folder of `dir`.
fn config(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("run folder");
    write_config(dir, &run_table("secure", &run, ""))
}

fn start(config: &Path, web: &Path) -> Daemon {
    let mut d = Daemon::spawn(
        &[
            "watch",
            "--config",
            config.to_str().expect("UTF-8 path"),
            "--log-format",
            "json",
            "--web.config.file",
            web.to_str().expect("UTF-8 path"),
        ],
        &[],
    );
    d.wait_serving();
    d
}

#[test]
fn tls_with_basic_auth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ca = Ca::new("probewatch test CA");
    let server = ca.leaf("probewatch", ExtendedKeyUsagePurpose::ServerAuth);
    write(d, "server.crt", &server.cert);
    write(d, "server.key", &server.key);
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    // Relative paths resolve against the web config's folder.
    let web = write(
        d,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    );
    let daemon = start(&config(d), &web);
    let addr = daemon.addr.expect("serving");
    let url = format!("https://{addr}/metrics");
    let tls = agent(&ca.pem(), None);

    // The right password: 200 and an OpenMetrics body, twice (the second
    // answered from the cache of good passwords).
    for _ in 0..2 {
        let r = get(&tls, &url, Some(("prometheus", "s3cret"))).expect("good scrape over TLS");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.content_type.starts_with("application/openmetrics-text"),
            "{}",
            r.content_type
        );
        let scrape = harness::Scrape::parse(&r.body);
        assert_eq!(scrape.value("probewatch_build_info", &[]), 1.0);
        assert_eq!(
            scrape.value("probewatch_shard_info", &[("shard", "0"), ("of", "1")]),
            1.0
        );
    }
    let headers = tls
        .get(&url)
        .header(
            "Authorization",
            &format!("Basic {}", base64(b"prometheus:s3cret")),
        )
        .call()
        .expect("scrape");
    assert_eq!(
        headers
            .headers()
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );

    // A wrong password, an unknown user: 401.
    for (user, password) in [("prometheus", "wrong"), ("nobody", "s3cret")] {
        let r = get(&tls, &url, Some((user, password))).expect("TLS works");
        assert_eq!(r.status, 401, "{user}: {}", r.body);
        assert!(!r.body.contains("probewatch_"), "{}", r.body);
    }
    // No password: 401 asking for basic auth.
    let r = get(&tls, &url, None).expect("TLS works");
    assert_eq!(r.status, 401);
    let challenge = r.www_authenticate.expect("WWW-Authenticate on 401");
    assert!(challenge.starts_with("Basic"), "{challenge}");
    // Probes need no password.
    for path in ["/healthz", "/readyz"] {
        let r = get(&tls, &format!("https://{addr}{path}"), None).expect("probe");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    // Plain HTTP to the TLS listener gets no answer.
    let plain = http_get_result(&format!("http://{addr}/metrics"));
    assert!(
        plain.is_err(),
        "plain HTTP to a TLS listener answered: {:?}",
        plain.ok()
    );
    // A client that does not trust the server's CA refuses it.
    let stranger = Ca::new("another CA");
    assert!(
        get(
            &agent(&stranger.pem(), None),
            &url,
            Some(("prometheus", "s3cret"))
        )
        .is_err()
    );

    // The listener still serves after all that.
    let r = get(&tls, &url, Some(("prometheus", "s3cret"))).expect("good scrape");
    assert_eq!(r.status, 200);
}

#[test]
fn required_client_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ca = Ca::new("probewatch test CA");
    let clients = Ca::new("scrapers CA");
    let server = ca.leaf("probewatch", ExtendedKeyUsagePurpose::ServerAuth);
    let good = clients.leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    let rogue = Ca::new("rogue CA").leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    write(d, "server.crt", &server.cert);
    write(d, "server.key", &server.key);
    write(d, "clients-ca.crt", &clients.pem());
    let web = write(
        d,
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n",
    );
    let daemon = start(&config(d), &web);
    let url = format!("https://{}/metrics", daemon.addr.expect("serving"));

    let missing = get(&agent(&ca.pem(), None), &url, None);
    // The server ends the handshake with a `certificate_required` alert.
    match missing {
        Ok(r) => panic!("no client certificate, yet status {}", r.status),
        Err(e) => assert!(format!("{e:?}").contains("CertificateRequired"), "{e:?}"),
    }
    match get(&agent(&ca.pem(), Some(&rogue)), &url, None) {
        Ok(r) => panic!(
            "a client certificate from an unknown CA got status {}",
            r.status
        ),
        Err(e) => assert!(format!("{e:?}").contains("AlertReceived"), "{e:?}"),
    }
    let r = get(&agent(&ca.pem(), Some(&good)), &url, None).expect("good client certificate");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.ends_with("# EOF\n"));
}

#[test]
fn bad_web_config_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let cfg = config(d);
    let cases = [
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "nope.crt",
        ),
        (
            "tls_server:\n  cert_file: a\n",
            "unknown field `tls_server`",
        ),
    ];
    for (text, expected) in cases {
        let web = write(d, "bad-web.yml", text);
        let daemon = Daemon::spawn(
            &[
                "watch",
                "--config",
                cfg.to_str().expect("UTF-8"),
                "--web.config.file",
                web.to_str().expect("UTF-8"),
            ],
            &[],
        );
        let status = daemon.wait_exit();
        let log = daemon.lines().join("\n");
        assert!(!status.success(), "started with {text:?}:\n{log}");
        assert!(
            log.contains(&web.display().to_string()) && log.contains(expected),
            "{text:?} → {log}"
        );
    }
    // `web_config` in the TOML file; check-config describes it.
    let server = Ca::new("ca").leaf("probewatch", ExtendedKeyUsagePurpose::ServerAuth);
    write(d, "s.crt", &server.cert);
    write(d, "s.key", &server.key);
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    write(
        d,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\nbasic_auth_users:\n  a: '{hash}'\n"
        ),
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("web_config = \"web.yml\"\n{text}")).expect("config");
    let out = std::process::Command::new(exe())
        .args(["check-config", cfg.to_str().expect("UTF-8")])
        .output()
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TLS, basic auth for 1 user(s)"), "{stdout}");
}
