use super::*;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_issues_node_dirs_with_private_keys() {
    let tmp = tempdir("pki-issue");
    let ca = tmp.join("pki");
    create_ca(&ca, "test cluster").unwrap();
    assert_eq!(mode(&ca.join(CA_KEY)), 0o600);
    issue(&ca, &tmp.join("relay1"), "relay1").unwrap();
    for f in [CA_CERT, NODE_CERT, NODE_KEY] {
        assert!(tmp.join("relay1").join(f).exists(), "{f}");
    }
    assert_eq!(mode(&tmp.join("relay1").join(NODE_KEY)), 0o600);
    let pem = fs::read_to_string(tmp.join("relay1").join(NODE_CERT)).unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["relay1"]);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[DNSName(\"relay1\")]"
    );

    // Nothing is overwritten.
    let again = issue(&ca, &tmp.join("relay1"), "relay1")
        .unwrap_err()
        .to_string();
    assert!(again.contains("already exists"), "{again}");
    assert!(create_ca(&ca, "x")
        .unwrap_err()
        .to_string()
        .contains("already exists"));
}

#[test]
fn revoking_lists_every_revoked_serial_and_new_nodes_get_the_crl() {
    let tmp = tempdir("pki-revoke");
    let ca = tmp.join("pki");
    create_ca(&ca, "c").unwrap();
    issue(&ca, &tmp.join("a"), "a").unwrap();
    issue(&ca, &tmp.join("b"), "b").unwrap();
    let first = revoke(&ca, &tmp.join("a").join(NODE_CERT)).unwrap();
    assert_eq!((first.entries, first.already), (1, false));
    let second = revoke(&ca, &tmp.join("b").join(NODE_CERT)).unwrap();
    assert_eq!((second.entries, second.already), (2, false));
    let third = revoke(&ca, &tmp.join("a").join(NODE_CERT)).unwrap();
    assert_eq!((third.entries, third.already), (2, true));
    assert_eq!(third.serial, first.serial);

    issue(&ca, &tmp.join("c"), "c").unwrap();
    assert_eq!(
        fs::read(tmp.join("c").join(CRL)).unwrap(),
        fs::read(ca.join(CRL)).unwrap()
    );

    let other = tmp.join("other");
    create_ca(&other, "other").unwrap();
    let err = revoke(&other, &tmp.join("c").join(NODE_CERT))
        .unwrap_err()
        .to_string();
    assert!(err.contains("was not issued by the CA"), "{err}");
}

#[test]
fn names_that_cannot_be_certificate_names_are_refused() {
    let tmp = tempdir("pki-name");
    create_ca(&tmp.join("pki"), "c").unwrap();
    let err = issue(&tmp.join("pki"), &tmp.join("n"), "bad name!")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be a certificate name"), "{err}");
}

/// A fresh directory under the target dir's temp area, removed first if left over.
pub(crate) fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mediagate-link-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}
