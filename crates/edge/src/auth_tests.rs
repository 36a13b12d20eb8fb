//! The login gate with a fake clock: challenges per mode, Digest against users-file
//! `HA1`s, stale nonces, Basic handed to the shell, access lists, remembered logins.

use super::*;
use mediagate_config::Located;
use mediagate_ops::users::User;
use mediagate_rtsp::auth::{digest_ha1, ClientAuth};
use mediagate_rtsp::{Method, Version};

const URL: &str = "rtsp://edge.test:8554/cam1";
const T0: u64 = 1_800_000_000;

fn users() -> Arc<UsersFile> {
    // The hash is never checked here (Basic goes to the shell); any valid PHC string.
    let hash = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned();
    let mut f = UsersFile::default();
    f.upsert(User {
        name: "alice".into(),
        hash: hash.clone(),
        groups: vec!["staff".into()],
        ha1_md5: Some(digest_ha1(Algorithm::Md5, "alice", "mediagate", "wonder")),
        ha1_sha256: Some(digest_ha1(
            Algorithm::Sha256,
            "alice",
            "mediagate",
            "wonder",
        )),
    });
    f.upsert(User {
        name: "bob".into(),
        hash,
        groups: vec![],
        ha1_md5: None,
        ha1_sha256: None,
    });
    Arc::new(f)
}

fn gate(basic: bool) -> EdgeAuth {
    let cfg = AuthConfig {
        basic: Located::new(basic),
        ..AuthConfig::default()
    };
    EdgeAuth::new(&cfg, Some(users()))
}

fn login_required() -> Access {
    Access {
        authenticate: Some(Located::new(true)),
        ..Access::default()
    }
}

fn describe(header: Option<(&str, String)>) -> Request {
    let mut r = Request::new(Method::Describe, URL, Version::Rtsp1_0);
    r.headers.append("CSeq", "2");
    if let Some((name, value)) = header {
        r.headers.append(name, value);
    }
    r
}

fn ip() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

fn denied(g: Gate) -> Response {
    match g {
        Gate::Deny(r) | Gate::NotAllowed { resp: r, .. } => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The Authorization a Digest client sends after the gate's first challenge.
fn digest_answer(g: &EdgeAuth, kind: LoginKind, user: &str, password: &str, now: u64) -> String {
    let r = denied(g.check(&describe(None), ip(), &login_required(), kind, now, None));
    let challenges: Vec<&str> = r.headers.get_all(kind.challenge_header()).collect();
    let mut client = ClientAuth::new(user, password);
    client
        .respond(&challenges, "DESCRIBE", URL, "0a4f113b")
        .expect("client answers")
}

#[test]
fn no_login_rule_lets_everyone_in_and_clients_are_filtered_first() {
    let g = gate(false);
    assert!(matches!(
        g.check(
            &describe(None),
            ip(),
            &Access::default(),
            LoginKind::Origin,
            T0,
            None
        ),
        Gate::Allow(None)
    ));
    let only_lan = Access {
        clients: vec!["10.0.0.0/8".parse().unwrap()],
        ..login_required()
    };
    let r = denied(g.check(
        &describe(None),
        ip(),
        &only_lan,
        LoginKind::Origin,
        T0,
        None,
    ));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[test]
fn challenges_follow_the_mode_and_offer_basic_only_when_allowed() {
    let r = denied(gate(false).check(
        &describe(None),
        ip(),
        &login_required(),
        LoginKind::Origin,
        T0,
        None,
    ));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let www: Vec<&str> = r.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(www.len(), 2, "{www:?}");
    assert!(www.iter().all(|c| c.starts_with("Digest ")), "{www:?}");
    assert!(
        www[0].contains("SHA-256") && www[1].contains("MD5"),
        "{www:?}"
    );
    assert!(r.headers.get("Proxy-Authenticate").is_none());

    let r = denied(gate(true).check(
        &describe(None),
        ip(),
        &login_required(),
        LoginKind::Proxy,
        T0,
        None,
    ));
    assert_eq!(r.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    let proxy: Vec<&str> = r.headers.get_all("Proxy-Authenticate").collect();
    assert_eq!(proxy.last().copied(), Some("Basic realm=\"mediagate\""));
    assert!(r.headers.get("WWW-Authenticate").is_none());
}

#[test]
fn digest_login_with_the_users_file_ha1() {
    let g = gate(false);
    for kind in [LoginKind::Origin, LoginKind::Proxy] {
        let a = digest_answer(&g, kind, "alice", "wonder", T0);
        let req = describe(Some((kind.credentials_header(), a.clone())));
        match g.check(&req, ip(), &login_required(), kind, T0 + 5, None) {
            Gate::Allow(Some(p)) => {
                assert_eq!(p.user, "alice");
                assert_eq!(p.groups, ["staff"]);
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        // The other mode's header is not read.
        let other = match kind {
            LoginKind::Origin => LoginKind::Proxy,
            LoginKind::Proxy => LoginKind::Origin,
        };
        let r = denied(g.check(&req, ip(), &login_required(), other, T0 + 5, None));
        assert_eq!(r.status, other.status());
    }
}

#[test]
fn wrong_password_unknown_user_and_user_without_ha1_are_challenged_again() {
    let g = gate(false);
    for (user, password) in [("alice", "wrong"), ("mallory", "x"), ("bob", "any")] {
        let a = digest_answer(&g, LoginKind::Origin, user, password, T0);
        let r = denied(g.check(
            &describe(Some(("Authorization", a))),
            ip(),
            &login_required(),
            LoginKind::Origin,
            T0 + 1,
            None,
        ));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(r.headers.get("WWW-Authenticate").is_some(), "{user}");
    }
}

#[test]
fn an_old_nonce_with_the_right_password_is_stale() {
    let g = gate(false);
    let a = digest_answer(&g, LoginKind::Origin, "alice", "wonder", T0);
    let req = describe(Some(("Authorization", a)));
    // Within the 5-minute lifetime: fine; after it: a stale challenge (silent retry).
    assert!(matches!(
        g.check(
            &req,
            ip(),
            &login_required(),
            LoginKind::Origin,
            T0 + 299,
            None
        ),
        Gate::Allow(Some(_))
    ));
    let r = denied(g.check(
        &req,
        ip(),
        &login_required(),
        LoginKind::Origin,
        T0 + 301,
        None,
    ));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers
            .get_all("WWW-Authenticate")
            .all(|c| c.contains("stale=true")),
        "{r:?}"
    );
}

#[test]
fn basic_goes_to_the_shell_only_when_offered() {
    let basic = mediagate_rtsp::auth::basic_credentials("bob", "pw")
        .unwrap()
        .to_string();
    let req = describe(Some(("Authorization", basic.clone())));
    let r = denied(gate(false).check(&req, ip(), &login_required(), LoginKind::Origin, T0, None));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let g = gate(true);
    match g.check(&req, ip(), &login_required(), LoginKind::Origin, T0, None) {
        Gate::CheckPassword {
            backend,
            user,
            password,
        } => {
            assert_eq!(
                (backend, user.as_str(), password.as_str()),
                (PasswordBackend::UsersFile, "bob", "pw")
            );
        }
        other => panic!("{other:?}"),
    }
    let r = denied(g.finish_password("bob".into(), None, &login_required(), LoginKind::Origin, T0));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(matches!(
        g.finish_password(
            "bob".into(),
            Some(vec![]),
            &login_required(),
            LoginKind::Origin,
            T0
        ),
        Gate::Allow(Some(_))
    ));
    // Unknown to the file, no LDAP: refused without any password check.
    let mallory = mediagate_rtsp::auth::basic_credentials("mallory", "pw")
        .unwrap()
        .to_string();
    let req = describe(Some(("Authorization", mallory)));
    assert!(matches!(
        g.check(&req, ip(), &login_required(), LoginKind::Origin, T0, None),
        Gate::Deny(_)
    ));
    // A login this connection already verified, same header: no second Argon2 run.
    let p = Principal {
        user: "bob".into(),
        groups: vec![],
    };
    let req = describe(Some(("Authorization", basic.clone())));
    assert!(matches!(
        g.check(
            &req,
            ip(),
            &login_required(),
            LoginKind::Origin,
            T0,
            Some((&basic, &p))
        ),
        Gate::Allow(Some(_))
    ));
}

#[test]
fn access_lists_by_user_and_group_give_403_after_a_good_login() {
    let g = gate(false);
    let staff_only = Access {
        groups: vec!["staff".into()],
        ..Access::default()
    };
    let bob_only = Access {
        users: vec!["bob".into()],
        ..Access::default()
    };
    let a = digest_answer(&g, LoginKind::Origin, "alice", "wonder", T0);
    let req = describe(Some(("Authorization", a)));
    assert!(matches!(
        g.check(&req, ip(), &staff_only, LoginKind::Origin, T0, None),
        Gate::Allow(Some(_))
    ));
    let r = denied(g.check(&req, ip(), &bob_only, LoginKind::Origin, T0, None));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[test]
fn without_users_or_basic_nobody_logs_in() {
    let g = EdgeAuth::new(&AuthConfig::default(), None);
    let r = denied(g.check(
        &describe(None),
        ip(),
        &login_required(),
        LoginKind::Origin,
        T0,
        None,
    ));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[test]
fn a_file_without_digest_users_offers_basic_alone() {
    let mut f = (*users()).clone();
    f.remove("alice");
    let cfg = AuthConfig {
        basic: Located::new(true),
        ..AuthConfig::default()
    };
    let g = EdgeAuth::new(&cfg, Some(Arc::new(f)));
    let r = denied(g.check(
        &describe(None),
        ip(),
        &login_required(),
        LoginKind::Origin,
        T0,
        None,
    ));
    let www: Vec<&str> = r.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(www, ["Basic realm=\"mediagate\""]);
}
