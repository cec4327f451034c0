//! TLS for [`IrcChat::tls`](super::IrcChat::tls): rustls (ring), the
//! Mozilla roots plus the PEM file of
//! [`tls_ca_file`](super::IrcChat::tls_ca_file), the server's name checked,
//! and a client certificate for SASL EXTERNAL. There is no way to skip the
//! verification.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How to open TLS to one server: made once, used by every connection.
#[derive(Clone)]
pub(super) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    host: String,
}

/// Why a TLS connection could not be opened.
pub(super) enum TlsFailure {
    /// The server's certificate does not verify: trying again cannot help.
    Certificate(String),
    /// The connection failed during the handshake: try again.
    Io(String),
}

impl Tls {
    /// The TLS settings for `server` (`host:port`): roots, the extra CA
    /// file, and the client certificate if one is given. The error says
    /// what to change.
    pub(super) fn new(
        server: &str,
        ca_file: Option<&Path>,
        client: Option<(&[u8], &[u8])>,
    ) -> Result<Tls, String> {
        let host = host_of(server).to_owned();
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            format!("{host:?} (from the server address {server:?}) is not a host name for TLS: {e}")
        })?;
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            let certs = read_certs(&std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read the CA file {} (IrcChat::tls_ca_file): {e}",
                    path.display()
                )
            })?)
            .map_err(|e| format!("the CA file {} (IrcChat::tls_ca_file) {e}", path.display()))?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!(
                        "the CA file {} (IrcChat::tls_ca_file) holds a certificate that is \
                         not a usable root: {e}",
                        path.display()
                    )
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let certs = read_certs(cert_pem)
                    .map_err(|e| format!("the client certificate (IrcChat::sasl_external) {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
                    format!("the client key (IrcChat::sasl_external) is not a PEM private key: {e}")
                })?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!("the client certificate and key (IrcChat::sasl_external): {e}")
                })?
            }
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
            host,
        })
    }

    /// TLS over `tcp`, the server's certificate verified.
    pub(super) async fn connect(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TlsFailure> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                let host = &self.host;
                match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(why)) => {
                        TlsFailure::Certificate(format!(
                            "the TLS certificate of {host} does not verify: {}",
                            certificate_problem(why, host)
                        ))
                    }
                    Some(other) => {
                        TlsFailure::Certificate(format!("TLS with {host} failed: {other}"))
                    }
                    None => TlsFailure::Io(format!("TLS handshake with {host} failed: {e}")),
                }
            })
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => server,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The certificates of a PEM file; an error if there are none.
fn read_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(certs)
}

/// What to tell an operator about a certificate that does not verify.
fn certificate_problem(why: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError as E;
    match why {
        E::UnknownIssuer => "it is not signed by a trusted root (unknown issuer); if the \
                             network has its own CA, give its PEM file with \
                             IrcChat::tls_ca_file"
            .into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => format!(
            "it is not valid for the name {host} (the certificate's names do not include it); \
             connect with a name the certificate carries"
        ),
        E::Expired | E::ExpiredContext { .. } => "it has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "it is not valid yet".into(),
        E::Revoked => "it is revoked".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_server_addresses() {
        assert_eq!(host_of("irc.libera.chat:6697"), "irc.libera.chat");
        assert_eq!(host_of("127.0.0.1:6697"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6697"), "::1");
        assert_eq!(host_of("irc.example.net"), "irc.example.net");
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_saying_so() {
        let dir = std::env::temp_dir().join(format!("ss-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = Tls::new("h:1", Some(&path), None).err().unwrap();
        assert!(
            err.contains("tls_ca_file") && err.contains("no PEM"),
            "{err}"
        );
        let err = Tls::new("h:1", Some(&dir.join("missing.pem")), None)
            .err()
            .unwrap();
        assert!(err.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
