//! TLS for a daemon behind a proxy: `--url https://…` is verified by
//! rustls against Mozilla's root certificates (webpki-roots, built in, so
//! that the CLI trusts the same roots on every host), or, with
//! `--ca-cert FILE`, against the PEM certificates in that file alone, as
//! `curl --cacert` does: a proxy with its own CA is trusted exactly, not in
//! addition to every public CA.

use std::path::Path;

use anyhow::{bail, Context as _};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig, TlsProvider};

/// The TLS settings for `url`; refuses `--ca-cert` for a plain `http://`
/// URL, where it would silently do nothing.
pub(crate) fn config(url: &str, ca_cert: Option<&Path>) -> anyhow::Result<TlsConfig> {
    let builder = TlsConfig::builder().provider(TlsProvider::Rustls);
    let Some(path) = ca_cert else {
        return Ok(builder.build());
    };
    if !url.starts_with("https://") {
        bail!("--ca-cert applies to https:// URLs only, and --url is {url:?}");
    }
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read CA certificate file {}", path.display()))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        // A key or CRL beside the certificates is not a root: skipped.
        let item = item.with_context(|| format!("{} is not a valid PEM file", path.display()))?;
        if let PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        bail!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}
