//! Mutual TLS for the dispatcher link, on rustls with the ring provider (the same
//! set-up style as the admin API's HTTPS), from a node directory.
//!
//! A node directory holds `ca.pem` (the CA certificates peers must chain to),
//! `cert.pem` (this node's chain, its own certificate first), `key.pem` (PEM PKCS#8,
//! PKCS#1 or SEC1) and optionally `crl.pem` (revocation lists; when present, a peer
//! whose certificate is listed is refused, and so is one whose revocation status the
//! lists cannot tell, so keep the CA's CRL current in every node directory).
//!
//! What both ends check: the peer's certificate chains to the CA (signature, validity
//! period, key usage: `serverAuth` for the dispatcher, `clientAuth` for a relay, or no
//! extended key usage at all), is not revoked, and — when a [`Passport`] is configured
//! — its subject matches it ([`check_peer`], run right after the handshake).
//!
//! What the relay does not check: that the dispatcher's certificate names the host it
//! connected to. Relays reach the dispatcher by address or by a DNS name that may not
//! be in its certificate, as with MediaProxy; the CA and the passport are the
//! identity check. Everything else about the server certificate is verified.
//!
//! What it does not: reload certificates while running (a reconnect reads nothing new;
//! a restart does), OCSP, or SNI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mediagate_config::{Passport, SubjectField};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::pki::{CA_CERT, CRL, NODE_CERT, NODE_KEY};

/// A node directory's TLS material, read and checked.
#[derive(Debug)]
pub struct NodeTls {
    dir: PathBuf,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Why a node directory cannot be used, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring, as the admin API: aws-lc-rs needs cmake and a long C build on every
    // machine. ring has no post-quantum key exchange, hence rustls's deprecation.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = |e: &dyn std::fmt::Display| TlsError(format!("{}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no PEM certificate (BEGIN CERTIFICATE) in the file"));
    }
    Ok(certs)
}

impl NodeTls {
    /// Reads `dir`'s files; the error names the file and what is wrong.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let ca = dir.join(CA_CERT);
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&ca)? {
            roots.add(cert).map_err(|e| {
                TlsError(format!(
                    "{}: not a usable CA certificate: {e}",
                    ca.display()
                ))
            })?;
        }
        let chain = read_certs(&dir.join(NODE_CERT))?;
        let key_path = dir.join(NODE_KEY);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
            TlsError(format!(
                "{}: no usable private key ({e}); give a PEM PKCS#8, PKCS#1 or SEC1 key",
                key_path.display()
            ))
        })?;
        let crl_path = dir.join(CRL);
        let crls = if crl_path.exists() {
            let crls = CertificateRevocationListDer::pem_file_iter(&crl_path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError(format!("{}: {e}", crl_path.display())))?;
            if crls.is_empty() {
                return Err(TlsError(format!(
                    "{}: no PEM CRL (BEGIN X509 CRL) in the file; remove it or copy the CA's crl.pem",
                    crl_path.display()
                )));
            }
            crls
        } else {
            Vec::new()
        };
        let tls = Self {
            dir: dir.to_owned(),
            roots: Arc::new(roots),
            chain,
            key,
            crls,
        };
        // Surface a key that does not match its certificate now, not at first connect.
        tls.server_config()?;
        Ok(tls)
    }

    /// The directory it was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This node's own name: the common name of its certificate (`cert.pem`), or
    /// the directory's name when the subject has none.
    pub fn own_name(&self) -> String {
        let cn = self.chain.first().and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let cn = cert
                .subject()
                .iter_common_name()
                .next()?
                .as_str()
                .ok()?
                .to_owned();
            Some(cn)
        });
        cn.unwrap_or_else(|| {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    /// Whether a revocation list is in use.
    pub fn has_crl(&self) -> bool {
        !self.crls.is_empty()
    }

    /// The dispatcher's config: a client certificate chaining to the CA is required.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let mut verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        );
        if !self.crls.is_empty() {
            verifier = verifier
                .with_crls(self.crls.iter().cloned())
                .only_check_end_entity_revocation();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError(format!("{}: {e}", self.dir.display())))?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS set-up failed: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.pair_error(&e))?;
        Ok(Arc::new(config))
    }

    /// A relay's config: presents its certificate, verifies the dispatcher's chain and
    /// revocation but not its host name (see the module docs).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let mut verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        );
        if !self.crls.is_empty() {
            verifier = verifier
                .with_crls(self.crls.iter().cloned())
                .only_check_end_entity_revocation();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError(format!("{}: {e}", self.dir.display())))?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS set-up failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyNameVerifier(verifier)))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.pair_error(&e))?;
        Ok(Arc::new(config))
    }

    fn pair_error(&self, e: &rustls::Error) -> TlsError {
        TlsError(format!(
            "{} and {} do not make a usable pair: {e}",
            self.dir.join(NODE_CERT).display(),
            self.dir.join(NODE_KEY).display()
        ))
    }
}

/// webpki's server verification with the host name check left out: every other check
/// (chain, validity, usage, revocation) runs before the name check and must pass.
#[derive(Debug)]
struct AnyNameVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The name a server certificate is asked for when connecting to `host`: the host
/// itself when it is a valid name or address (it is not checked against the
/// certificate), a placeholder otherwise.
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("dispatcher").unwrap_or_else(|_| unreachable!()))
}

/// A verified peer's identity, from its end-entity certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The subject's common name (empty when it has none).
    pub cn: String,
    /// The whole subject, as text for logs.
    pub subject: String,
}

/// Reads the peer's subject after a handshake and checks it against `passport`. The
/// error is a sentence for the log.
pub fn check_peer(
    certs: Option<&[CertificateDer<'_>]>,
    passport: Option<&Passport>,
) -> Result<Peer, String> {
    let Some(end_entity) = certs.and_then(<[_]>::first) else {
        return Err("the peer presented no certificate".to_owned());
    };
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
        .map_err(|e| format!("the peer's certificate does not parse: {e}"))?;
    let name = cert.subject();
    let mut fields: Vec<(SubjectField, &str)> = Vec::new();
    let groups = [
        (
            SubjectField::Organization,
            name.iter_organization().collect::<Vec<_>>(),
        ),
        (
            SubjectField::OrganizationalUnit,
            name.iter_organizational_unit().collect(),
        ),
        (SubjectField::CommonName, name.iter_common_name().collect()),
        (SubjectField::Country, name.iter_country().collect()),
        (SubjectField::Locality, name.iter_locality().collect()),
        (SubjectField::State, name.iter_state_or_province().collect()),
        (SubjectField::Email, name.iter_email().collect()),
    ];
    for (field, values) in &groups {
        for v in values {
            if let Ok(text) = v.as_str() {
                fields.push((*field, text));
            }
        }
    }
    let peer = Peer {
        cn: fields
            .iter()
            .find(|(f, _)| *f == SubjectField::CommonName)
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_default(),
        subject: name.to_string(),
    };
    if let Some(passport) = passport {
        passport.check(fields.iter().copied()).map_err(|failed| {
            format!(
                "the peer's certificate subject \"{}\" does not match the passport \"{passport}\" (no {failed})",
                peer.subject
            )
        })?;
    }
    Ok(peer)
}

/// A handshake failure in words an operator can act on.
pub fn explain_handshake_error(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let advice = match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            "the peer presented no certificate; give it a --tls-dir made by `mediagate cert issue`"
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "the peer's certificate is not issued by our CA (ca.pem); issue it from the same CA"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature | CertificateError::UnsupportedSignatureAlgorithmContext { .. },
        )) => {
            "the peer's certificate is not signed by our CA (ca.pem), though its issuer has our CA's name; issue it from our CA"
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {
            "the peer's certificate is revoked (crl.pem)"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "the peer's certificate has expired",
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)) => {
            "crl.pem has no list for the peer's certificate issuer; copy the CA's current crl.pem"
        }
        Some(rustls::Error::AlertReceived(_)) => "the peer refused our certificate (see its log)",
        _ => "",
    };
    if advice.is_empty() {
        format!("TLS handshake failed: {e}")
    } else {
        format!("TLS handshake failed: {advice} ({e})")
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
