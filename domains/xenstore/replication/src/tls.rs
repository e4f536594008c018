//! Mutual TLS between the pool's hosts, with keys made by `rcgen`.
//!
//! The pool's secret is the key of its certificate authority, made when the
//! pool is created ([`create_ca`]). Each member gets its own key and a
//! certificate signed by that CA when it joins ([`issue_member`]). Every
//! connection, between members or from a client, is TLS 1.3 with a
//! certificate on both sides checked against the pool CA: no secret
//! crosses the wire, only signatures made with keys that never leave
//! their host. Key files are written mode 0600.
//!
//! Every member certificate names [`SERVER_NAME`] (the pool) and
//! `member-N`; a peer is accepted for being in the pool, not for its
//! number. Revocation (ejecting a member) is left to the pool API: today
//! an ejected member's certificate stays valid until the CA is rotated.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The name every member certificate carries and every client checks.
pub const SERVER_NAME: &str = "windsor-pool";

/// Why TLS material could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a key or certificate file.
    #[error("key file {0}: {1}")]
    Io(String, std::io::Error),
    /// Making a key or certificate.
    #[error("making a certificate: {0}")]
    Gen(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A PEM file held no certificate or no key.
    #[error("{0}: no usable PEM item")]
    Pem(String),
}

fn write_file(path: &Path, data: &str, mode: u32) -> Result<(), TlsError> {
    let io = |e| TlsError::Io(path.display().to_string(), e);
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|e| TlsError::Io(path.display().to_string(), e))
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "windsor pool CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// Creates the pool CA in `dir`: `ca.pem` (public) and `ca.key` (0600).
pub fn create_ca(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.display().to_string(), e))?;
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_file(&dir.join("ca.key"), &key.serialize_pem(), 0o600)?;
    write_file(&dir.join("ca.pem"), &cert.pem(), 0o644)
}

/// Makes member `id`'s key and certificate, signed by the CA in `ca_dir`,
/// into `out` (`node.key` 0600, `node.pem`, and a copy of `ca.pem`).
pub fn issue_member(ca_dir: &Path, id: u64, out: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(out).map_err(|e| TlsError::Io(out.display().to_string(), e))?;
    let ca_key = KeyPair::from_pem(&read_file(&ca_dir.join("ca.key"))?)?;
    // Re-signing the same CA parameters with the same key gives the issuer
    // name and key identifier the stored CA certificate has.
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    let mut p = CertificateParams::new(vec![SERVER_NAME.to_string(), format!("member-{id}")])?;
    p.distinguished_name
        .push(DnType::CommonName, format!("member-{id}"));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
    write_file(&out.join("node.key"), &key.serialize_pem(), 0o600)?;
    write_file(&out.join("node.pem"), &cert.pem(), 0o644)?;
    write_file(
        &out.join("ca.pem"),
        &read_file(&ca_dir.join("ca.pem"))?,
        0o644,
    )
}

/// A member's TLS configurations, both directions.
#[derive(Clone)]
pub struct Tls {
    /// For accepting peers and clients.
    pub server: Arc<ServerConfig>,
    /// For connecting to peers.
    pub client: Arc<ClientConfig>,
}

impl Tls {
    /// Loads `node.pem`, `node.key` and `ca.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let pem_err = |p: &Path| TlsError::Pem(p.display().to_string());
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join("node.pem");
        let key_path = dir.join("node.key");
        let ca: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut read_file(&ca_path)?.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Io(ca_path.display().to_string(), e))?;
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut read_file(&cert_path)?.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Io(cert_path.display().to_string(), e))?;
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut read_file(&key_path)?.as_bytes())
                .map_err(|e| TlsError::Io(key_path.display().to_string(), e))?
                .ok_or_else(|| pem_err(&key_path))?;
        if ca.is_empty() {
            return Err(pem_err(&ca_path));
        }
        if certs.is_empty() {
            return Err(pem_err(&cert_path));
        }
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        // ring rather than aws-lc-rs: no C/cmake build; the price is no
        // post-quantum key exchange, which rustls now marks as deprecated.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        Ok(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The name to check on the other side.
    pub fn server_name() -> ServerName<'static> {
        ServerName::try_from(SERVER_NAME).unwrap_or_else(|_| unreachable!("a valid DNS name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn member(dir: &Path, ca: &str, id: u64) -> Tls {
        let ca = dir.join(ca);
        if !ca.join("ca.pem").exists() {
            create_ca(&ca).unwrap();
        }
        let out = dir.join(format!(
            "{}-{id}",
            ca.display().to_string().replace('/', "_")
        ));
        issue_member(&ca, id, &out).unwrap();
        assert_eq!(mode(&out.join("node.key")), 0o600);
        Tls::load(&out).unwrap()
    }

    /// Serves one connection: echo one byte.
    async fn serve(tls: Tls) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acc = tokio_rustls::TlsAcceptor::from(tls.server.clone());
                tokio::spawn(async move {
                    if let Ok(mut s) = acc.accept(s).await {
                        let mut b = [0u8; 1];
                        if s.read_exact(&mut b).await.is_ok() {
                            let _ = s.write_all(&b).await;
                        }
                    }
                });
            }
        });
        a
    }

    async fn echo(tls: &Tls, a: std::net::SocketAddr) -> bool {
        let Ok(s) = tokio::net::TcpStream::connect(a).await else {
            return false;
        };
        let c = tokio_rustls::TlsConnector::from(tls.client.clone());
        let Ok(mut s) = c.connect(Tls::server_name(), s).await else {
            return false;
        };
        let mut b = [0u8; 1];
        s.write_all(b"x").await.is_ok() && s.read_exact(&mut b).await.is_ok() && b == *b"x"
    }

    #[tokio::test]
    async fn only_members_of_the_same_pool_talk() {
        let d = tempfile::tempdir().unwrap();
        let a1 = member(d.path(), "poolA", 1);
        let a2 = member(d.path(), "poolA", 2);
        let b1 = member(d.path(), "poolB", 1);
        assert_eq!(mode(&d.path().join("poolA/ca.key")), 0o600);
        let srv = serve(a1.clone()).await;
        assert!(echo(&a2, srv).await, "a member of the pool is refused");
        // A stranger with a certificate from another CA: the server refuses
        // its client certificate.
        assert!(!echo(&b1, srv).await, "a stranger was let in");
        // And a member refuses a server of another pool.
        let other = serve(b1).await;
        assert!(!echo(&a2, other).await, "a member trusted a stranger");
    }
}
