//! The CLI reaches a daemon behind a TLS proxy: `--url https://…` with the
//! proxy's CA given by `--ca-cert`, and refuses a certificate it cannot
//! verify (the built-in Mozilla roots do not know a private CA) or a CA
//! file with no certificate in it.
//!
//! The proxy is test-only: tokio-rustls terminating TLS with a certificate
//! for `localhost` from a CA made by rcgen, forwarding the bytes to the
//! real daemon's plain HTTP port.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::{binary, Daemon};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by
/// it; the CA's PEM is written to `dir/<name>.pem`.
struct Pki {
    ca_file: PathBuf,
    server: ServerConfig,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("groundcrew test CA {name}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.join(format!("{name}.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let provider = Arc::new(crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki { ca_file, server }
}

/// Terminates TLS on a free port and forwards each connection to
/// `backend`; stops when dropped.
struct TlsProxy {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn proxy(backend: &str, server: ServerConfig) -> TlsProxy {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let backend = backend.to_owned();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                // A client refusing the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    TlsProxy {
        addr,
        _runtime: runtime,
    }
}

fn cli(daemon: &Daemon, url: &str, ca_cert: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .args(["--url", url, "--token", &daemon.token])
        .env_remove("GROUNDCREW_TOKEN")
        .env_remove("GROUNDCREW_CA_CERT");
    if let Some(path) = ca_cert {
        command.arg("--ca-cert").arg(path);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A daemon and a TLS proxy in front of it, with its CA file.
fn setup(dir: &Path) -> (Daemon, TlsProxy, PathBuf) {
    let daemon = Daemon::start(&dir.join("data"), &[]);
    let backend = daemon.base.trim_start_matches("http://").to_owned();
    let Pki { ca_file, server } = pki(dir, "proxy");
    (daemon, proxy(&backend, server), ca_file)
}

#[test]
fn cli_reaches_the_daemon_through_a_tls_proxy_trusting_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, proxy, ca) = setup(dir.path());
    let url = format!("https://localhost:{}", proxy.addr.port());

    let out = cli(&daemon, &url, Some(&ca), &["status", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let panel: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(panel["state"], "idle", "{panel}");

    let out = cli(
        &daemon,
        &url,
        Some(&ca),
        &[
            "submit",
            "test",
            "asn:1",
            "--params",
            r#"{"times": 1, "round_ms": 1}"#,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("task #1 queued"), "{stdout}");
    // The request went through the proxy to this daemon.
    let (status, task) = daemon.call("GET", "/api/v1/tasks/1", None);
    assert_eq!((status, task["target"].as_str()), (200, Some("asn:1")));

    // The certificate names 127.0.0.1 too.
    let ip_url = format!("https://127.0.0.1:{}", proxy.addr.port());
    let out = cli(&daemon, &ip_url, Some(&ca), &["status"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn cli_refuses_a_certificate_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, proxy, _) = setup(dir.path());
    let url = format!("https://localhost:{}", proxy.addr.port());
    // The built-in Mozilla roots do not know the proxy's private CA, and
    // another CA given with --ca-cert replaces them rather than adding one.
    let other = pki(dir.path(), "other").ca_file;
    for ca in [None, Some(other.as_path())] {
        let out = cli(&daemon, &url, ca, &["status"]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{ca:?}: {stdout}");
        assert!(
            stderr.contains("cannot reach groundcrew at https://localhost")
                && stderr.contains("certificate"),
            "{ca:?}: {stderr}"
        );
    }
}

#[test]
fn a_ca_file_without_a_certificate_or_a_plain_http_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, proxy, ca) = setup(dir.path());
    let url = format!("https://localhost:{}", proxy.addr.port());

    let garbage = dir.path().join("not-a-cert.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let out = cli(&daemon, &url, Some(&garbage), &["status"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");

    let missing = dir.path().join("missing.pem");
    let out = cli(&daemon, &url, Some(&missing), &["status"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read CA certificate file") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let out = cli(&daemon, &daemon.base, Some(&ca), &["status"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--ca-cert applies to https:// URLs only"),
        "{stderr}"
    );
}
