use super::*;
use crate::pki::{self, tests::tempdir};
use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a handshake between a dispatcher with `server` and a relay with `client` over
/// an in-memory pipe; then checks each side's peer against the passports. Returns
/// (dispatcher's view, relay's view).
async fn link(
    server: &Path,
    client: &Path,
    relay_passport: Option<&str>,
    dispatcher_passport: Option<&str>,
) -> (Result<Peer, String>, Result<Peer, String>) {
    let server = NodeTls::load(server).unwrap().server_config().unwrap();
    let client = NodeTls::load(client).unwrap().client_config().unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let relay_passport = relay_passport.map(|p| p.parse::<Passport>().unwrap());
    let dispatcher_passport = dispatcher_passport.map(|p| p.parse::<Passport>().unwrap());
    let accept = async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(a)
            .await
            .map_err(|e| explain_handshake_error(&e))?;
        let peer = check_peer(tls.get_ref().1.peer_certificates(), relay_passport.as_ref())?;
        let mut byte = [0u8];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(b"y").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok(peer)
    };
    let connect = async move {
        // An address the certificate does not name: the relay must not care.
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(server_name("192.0.2.99"), b)
            .await
            .map_err(|e| explain_handshake_error(&e))?;
        let peer = check_peer(
            tls.get_ref().1.peer_certificates(),
            dispatcher_passport.as_ref(),
        )?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut byte = [0u8];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok(peer)
    };
    tokio::join!(accept, connect)
}

fn cluster(name: &str) -> PathBuf {
    let tmp = tempdir(name);
    pki::create_ca(&tmp.join("pki"), "cluster").unwrap();
    pki::issue(&tmp.join("pki"), &tmp.join("dispatcher"), "dispatcher").unwrap();
    pki::issue(&tmp.join("pki"), &tmp.join("relay1"), "relay1").unwrap();
    tmp
}

#[tokio::test]
async fn nodes_of_one_ca_link_without_the_host_name_in_the_certificate() {
    let t = cluster("tls-ok");
    let (d, r) = link(
        &t.join("dispatcher"),
        &t.join("relay1"),
        Some("CN=relay*"),
        Some("CN=dispatcher"),
    )
    .await;
    assert_eq!(d.unwrap().cn, "relay1");
    assert_eq!(r.unwrap().cn, "dispatcher");
}

#[tokio::test]
async fn a_passport_mismatch_is_refused_with_the_subject_named() {
    let t = cluster("tls-passport");
    let (d, _) = link(
        &t.join("dispatcher"),
        &t.join("relay1"),
        Some("O=Example"),
        None,
    )
    .await;
    let err = d.unwrap_err();
    assert!(
        err.contains("CN=relay1") && err.contains("does not match the passport"),
        "{err}"
    );
    let (_, r) = link(
        &t.join("dispatcher"),
        &t.join("relay1"),
        None,
        Some("CN=relay*"),
    )
    .await;
    assert!(r.unwrap_err().contains("no CN=relay*"));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let t = cluster("tls-other-ca");
    pki::create_ca(&t.join("other"), "other").unwrap();
    pki::issue(&t.join("other"), &t.join("stranger"), "relay9").unwrap();
    let (d, r) = link(&t.join("dispatcher"), &t.join("stranger"), None, None).await;
    // The stranger refuses the dispatcher's certificate first.
    let r = r.unwrap_err();
    assert!(r.contains("not issued by our CA"), "{r}");
    assert!(d.is_err());
    let (d, _) = link(&t.join("stranger"), &t.join("relay1"), None, None).await;
    assert!(d.is_err());
}

#[tokio::test]
async fn a_revoked_relay_is_refused_once_the_crl_is_in_the_dispatchers_dir() {
    let t = cluster("tls-revoked");
    pki::revoke(&t.join("pki"), &t.join("relay1").join(pki::NODE_CERT)).unwrap();
    std::fs::copy(
        t.join("pki").join(pki::CRL),
        t.join("dispatcher").join(pki::CRL),
    )
    .unwrap();
    let (d, _) = link(&t.join("dispatcher"), &t.join("relay1"), None, None).await;
    let d = d.unwrap_err();
    assert!(d.contains("revoked"), "{d}");
    // A relay issued after the revocation still links.
    pki::issue(&t.join("pki"), &t.join("relay2"), "relay2").unwrap();
    let (d, r) = link(&t.join("dispatcher"), &t.join("relay2"), None, None).await;
    assert_eq!(d.unwrap().cn, "relay2");
    r.unwrap();
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and node certificates made by the openssl CLI, in the node layout.
fn openssl_cluster(name: &str) -> PathBuf {
    let t = tempdir(name);
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/O=Example/CN=openssl CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &t,
    );
    for node in ["dispatcher", "relay1"] {
        std::fs::create_dir_all(t.join(node)).unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{node}/key.pem"),
                "-out",
                &format!("{node}.csr"),
                "-subj",
                &format!("/O=Example/OU=media/CN={node}"),
            ],
            &t,
        );
        std::fs::write(t.join(format!("{node}.ext")), format!(
            "subjectAltName=DNS:{node}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n")).unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{node}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                &format!("{node}/cert.pem"),
                "-extfile",
                &format!("{node}.ext"),
            ],
            &t,
        );
        std::fs::copy(t.join("ca.pem"), t.join(node).join("ca.pem")).unwrap();
    }
    t
}

#[tokio::test]
async fn openssl_made_certificates_link_and_match_passports() {
    let t = openssl_cluster("tls-openssl");
    let (d, r) = link(
        &t.join("dispatcher"),
        &t.join("relay1"),
        Some("O=Example, OU=med*, CN=relay*"),
        Some("CN=*patcher"),
    )
    .await;
    assert_eq!(d.unwrap().cn, "relay1");
    assert_eq!(r.unwrap().cn, "dispatcher");
}

#[tokio::test]
async fn an_openssl_ca_issues_and_revokes_with_mediagate_cert() {
    let t = openssl_cluster("tls-openssl-ca");
    // `mediagate cert` reads the openssl CA from its directory layout.
    pki::issue(&t, &t.join("relay2"), "relay2").unwrap();
    let (d, _) = link(&t.join("dispatcher"), &t.join("relay2"), None, None).await;
    assert_eq!(d.unwrap().cn, "relay2");
    pki::revoke(&t, &t.join("relay1").join("cert.pem")).unwrap();
    std::fs::copy(t.join(pki::CRL), t.join("dispatcher").join(pki::CRL)).unwrap();
    let (d, _) = link(&t.join("dispatcher"), &t.join("relay1"), None, None).await;
    assert!(d.unwrap_err().contains("revoked"));
    let (d, _) = link(&t.join("dispatcher"), &t.join("relay2"), None, None).await;
    assert_eq!(d.unwrap().cn, "relay2");
}

#[test]
fn load_errors_name_the_file() {
    let t = cluster("tls-load");
    std::fs::write(t.join("relay1").join("key.pem"), "nothing").unwrap();
    let err = NodeTls::load(&t.join("relay1")).unwrap_err().to_string();
    assert!(
        err.contains("key.pem") && err.contains("no usable private key"),
        "{err}"
    );
    let err = NodeTls::load(&t.join("missing")).unwrap_err().to_string();
    assert!(err.contains("ca.pem"), "{err}");
}
