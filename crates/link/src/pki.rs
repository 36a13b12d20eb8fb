//! The cluster's certificates, as `mediagate cert` makes them: a CA, one certificate
//! per node (dispatcher or relay), and the CA's revocation list.
//!
//! Files: a CA directory holds `ca.pem` (the CA certificate), `ca-key.pem` (its key,
//! mode 0600) and, after a revocation, `crl.pem`. A node directory holds `ca.pem` (a
//! copy of the CA certificate), `cert.pem` (CN and subject alternative name = the
//! node's name, usable as TLS client and server), `key.pem` (mode 0600) and, when the
//! CA had one at issue time, `crl.pem`. Keys are ECDSA P-256, signed with ring.
//! Existing keys and certificates are never overwritten.
//!
//! What it does: [`create_ca`], [`issue`] and [`revoke`] (which adds the certificate's
//! serial number to `crl.pem`, keeping earlier entries). A CA made with `openssl` (a
//! PKCS#8 key, ECDSA or RSA) can issue and revoke here as well.
//!
//! What it does not: distribute the CRL to node directories (the operator copies it),
//! renew certificates, or keep a database of issued certificates.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};
use time::{Duration, OffsetDateTime};

/// What went wrong, as a sentence that names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(String);

fn err(what: impl Into<String>) -> PkiError {
    PkiError(what.into())
}

/// CA certificate file name, in a CA and in a node directory.
pub const CA_CERT: &str = "ca.pem";
/// CA key file name, in a CA directory.
pub const CA_KEY: &str = "ca-key.pem";
/// Node certificate file name.
pub const NODE_CERT: &str = "cert.pem";
/// Node key file name.
pub const NODE_KEY: &str = "key.pem";
/// Revocation list file name, in a CA and (optionally) a node directory.
pub const CRL: &str = "crl.pem";

/// A CA's lifetime.
const CA_YEARS: i64 = 20;
/// A node certificate's lifetime.
const NODE_YEARS: i64 = 5;
/// How long a CRL is valid: a node refuses every peer once its CRL has expired, so
/// this is long; revoking again issues a fresh one.
const CRL_DAYS: i64 = 3650;

fn serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| err(format!("no randomness for a serial number: {e}")))?;
    // Positive and without a leading zero byte, as RFC 5280 §4.1.2.2 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour back so a peer whose clock is a little behind accepts it at once.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * years);
}

/// Writes `contents` to a new file (refusing to replace one) with `mode`.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                err(format!(
                    "{} already exists; move it away first (nothing is overwritten)",
                    path.display()
                ))
            } else {
                err(format!("cannot create {}: {e}", path.display()))
            }
        })?;
    file.write_all(contents.as_bytes())
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Writes `contents` to `path` through a temporary file and a rename, so readers see
/// the old or the new file, never half of one.
fn replace(path: &Path, contents: &str) -> Result<(), PkiError> {
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, 0o644)?;
    fs::rename(&tmp, path).map_err(|e| err(format!("cannot replace {}: {e}", path.display())))
}

/// Refuses before anything is written when one of `paths` exists, so a half-done
/// run never pairs a new key with an old certificate.
fn none_exist(paths: &[PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(err(format!(
            "{} already exists; move it away first (nothing is overwritten)",
            p.display()
        ))),
        None => Ok(()),
    }
}

fn make_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))
}

/// Creates a CA in `dir` (created if missing): `ca.pem` and `ca-key.pem`, subject
/// `CN=name`.
pub fn create_ca(dir: &Path, name: &str) -> Result<(), PkiError> {
    none_exist(&[dir.join(CA_KEY), dir.join(CA_CERT)])?;
    make_dir(dir)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial()?);
    validity(&mut params, CA_YEARS);
    let key = KeyPair::generate().map_err(|e| err(format!("cannot make a key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| err(format!("cannot sign the CA certificate: {e}")))?;
    // Key first: a crash between the two leaves no certificate without its key.
    write_new(&dir.join(CA_KEY), &key.serialize_pem(), 0o600)?;
    write_new(&dir.join(CA_CERT), &cert.pem(), 0o644)?;
    Ok(())
}

/// A CA name unlikely to be any other cluster's: `mediagate cluster CA` and 8 random
/// hex digits. Peers find a certificate's CA by name, so two CAs with one name make
/// a stranger's certificate look like ours until its signature fails.
pub fn default_ca_name() -> Result<String, PkiError> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| err(format!("no randomness: {e}")))?;
    Ok(format!("mediagate cluster CA {}", hex(&bytes)))
}

/// The CA of `ca_dir`, ready to sign, and its certificate's PEM.
fn load_ca(ca_dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    let cert_path = ca_dir.join(CA_CERT);
    let key_path = ca_dir.join(CA_KEY);
    let cert_pem = read(&cert_path)?;
    let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| {
        err(format!(
            "{}: not a usable PKCS#8 private key ({e}); convert with `openssl pkcs8 -topk8 -nocrypt`",
            key_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| {
        err(format!(
            "{}: not a usable CA certificate: {e}",
            cert_path.display()
        ))
    })?;
    Ok((issuer, cert_pem))
}

/// Issues a certificate for node `name` into `node_dir` (created if missing), signed
/// by the CA in `ca_dir`: `ca.pem`, `cert.pem`, `key.pem` and the CA's `crl.pem` when
/// it has one.
pub fn issue(ca_dir: &Path, node_dir: &Path, name: &str) -> Result<(), PkiError> {
    let (issuer, ca_pem) = load_ca(ca_dir)?;
    none_exist(&[node_dir.join(NODE_KEY), node_dir.join(NODE_CERT)])?;
    if ServerName::try_from(name).is_err() {
        return Err(err(format!(
            "{name:?} cannot be a certificate name; use a host name such as relay1 or relay1.example.net, or an IP address"
        )));
    }
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(|e| {
        err(format!(
            "{name:?} cannot be a certificate name ({e}); use a host name such as relay1 or relay1.example.net, or an IP address"
        ))
    })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial()?);
    validity(&mut params, NODE_YEARS);
    let key = KeyPair::generate().map_err(|e| err(format!("cannot make a key: {e}")))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| err(format!("cannot sign the certificate: {e}")))?;
    make_dir(node_dir)?;
    write_new(&node_dir.join(NODE_KEY), &key.serialize_pem(), 0o600)?;
    write_new(&node_dir.join(NODE_CERT), &cert.pem(), 0o644)?;
    replace(&node_dir.join(CA_CERT), &ca_pem)?;
    let crl = ca_dir.join(CRL);
    if crl.exists() {
        replace(&node_dir.join(CRL), &read(&crl)?)?;
    }
    Ok(())
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The certificate's serial number, hex.
    pub serial: String,
    /// The CRL written.
    pub crl: PathBuf,
    /// Serial numbers the CRL lists now.
    pub entries: usize,
    /// The certificate was already listed (the CRL is still re-issued).
    pub already: bool,
}

fn trim_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `cert` (a PEM certificate issued by the CA in `ca_dir`) to the CA's
/// `crl.pem`, keeping what it listed before, and signs a fresh CRL.
pub fn revoke(ca_dir: &Path, cert: &Path) -> Result<Revoked, PkiError> {
    let (issuer, ca_pem) = load_ca(ca_dir)?;
    let der = CertificateDer::from_pem_slice(read(cert)?.as_bytes())
        .map_err(|e| err(format!("{}: no PEM certificate ({e})", cert.display())))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| err(format!("{}: not a certificate ({e})", cert.display())))?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| err(format!("{}: {e}", ca_dir.join(CA_CERT).display())))?;
    let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| err(format!("{}: {e}", ca_dir.join(CA_CERT).display())))?;
    if parsed.issuer().as_raw() != ca_parsed.subject().as_raw() {
        return Err(err(format!(
            "{} was not issued by the CA in {} (its issuer is {})",
            cert.display(),
            ca_dir.display(),
            parsed.issuer()
        )));
    }
    let serial = trim_serial(parsed.raw_serial());
    let now = OffsetDateTime::now_utc();
    let crl_path = ca_dir.join(CRL);
    let mut revoked = Vec::new();
    if crl_path.exists() {
        let crl_der = CertificateRevocationListDer::from_pem_slice(read(&crl_path)?.as_bytes())
            .map_err(|e| err(format!("{}: no PEM CRL ({e})", crl_path.display())))?;
        let (_, crl) = x509_parser::parse_x509_crl(&crl_der)
            .map_err(|e| err(format!("{}: not a CRL ({e})", crl_path.display())))?;
        for entry in crl.iter_revoked_certificates() {
            let when = OffsetDateTime::from_unix_timestamp(entry.revocation_date.timestamp())
                .unwrap_or(now);
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&trim_serial(entry.raw_serial())),
                revocation_time: when,
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let already = revoked
        .iter()
        .any(|r| trim_serial(r.serial_number.as_ref()) == serial);
    if !already {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: now,
            reason_code: Some(RevocationReason::Unspecified),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(CRL_DAYS),
        // Seconds since the epoch: grows with each re-issue without a counter file.
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let entries = params.revoked_certs.len();
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| err(format!("cannot sign the CRL: {e}")))?;
    let pem = crl
        .pem()
        .map_err(|e| err(format!("cannot encode the CRL: {e}")))?;
    replace(&crl_path, &pem)?;
    Ok(Revoked {
        serial: hex(&serial),
        crl: crl_path,
        entries,
        already,
    })
}

#[cfg(test)]
#[path = "pki_tests.rs"]
pub(crate) mod tests;
