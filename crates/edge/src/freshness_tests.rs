use super::*;

const HOUR: Duration = Duration::from_secs(3600);
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

fn meta(cc: Option<&str>, expires: Option<&str>, modified: Option<&str>) -> Meta {
    Meta {
        sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=clip\r\na=range:npt=0-10\r\n".into(),
        tracks: Vec::new(),
        duration_ms: Some(10_000),
        validators: Validators {
            etag: None,
            last_modified: modified.map(str::to_owned),
            expires: expires.map(str::to_owned),
            cache_control: cc.map(str::to_owned),
            sdp_origin: Some("1".into()),
        },
        needed_auth: false,
        fetched_unix_ms: T0,
    }
}

#[test]
fn what_may_be_stored() {
    // (origin Cache-Control, needed auth, route's cache_authenticated) → storable
    let table: &[(Option<&str>, bool, bool, bool)] = &[
        (None, false, false, true),
        (Some("max-age=60"), false, false, true),
        (Some("no-store"), false, true, false),
        (Some("private"), false, true, false),
        (Some("No-Cache"), false, true, false),
        (Some("max-age=60, private"), false, false, false),
        // Content behind origin credentials.
        (None, true, false, false),
        (Some("max-age=60"), true, false, false),
        (Some("public"), true, false, true),
        (Some("public, max-age=5"), true, false, true),
        (None, true, true, true),
        (Some("private"), true, true, false),
        (Some("public, no-store"), true, true, false),
    ];
    for &(cc, auth, route, want) in table {
        assert_eq!(
            storable(cc, auth, route),
            want,
            "Cache-Control {cc:?}, needed auth {auth}, cache_authenticated {route}"
        );
    }
}

#[test]
fn default_ttl_is_the_lifetime_only_of_content_the_origin_said_nothing_about() {
    use Freshness::{Fresh, MustRevalidate, NotCacheable, Stale};
    // (Cache-Control, Expires, Last-Modified, viewer Cache-Control, age in s) →
    // verdict, with default_ttl = 1 h.
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        u64,
        Freshness,
    );
    let table: &[Row] = &[
        // Nothing said: default_ttl.
        (None, None, None, "", 3599, Fresh),
        (None, None, None, "", 3601, Stale),
        (Some("public"), None, None, "", 3599, Fresh),
        (Some("public"), None, None, "", 3601, Stale),
        // The origin's own lifetime wins, shorter or longer.
        (Some("max-age=60"), None, None, "", 59, Fresh),
        (Some("max-age=60"), None, None, "", 61, Stale),
        (Some("max-age=7200"), None, None, "", 3601, Fresh),
        (
            None,
            Some("Thu, 01 Jan 2026 00:10:00 GMT"),
            None,
            "",
            599,
            Fresh,
        ),
        (
            None,
            Some("Thu, 01 Jan 2026 00:10:00 GMT"),
            None,
            "",
            601,
            Stale,
        ),
        (None, Some("0"), None, "", 0, Stale),
        // Last-Modified 10 h before the fetch: a tenth, 1 h; 1 h before: 6 min.
        (
            None,
            None,
            Some("Wed, 31 Dec 2025 14:00:00 GMT"),
            "",
            3599,
            Fresh,
        ),
        (
            None,
            None,
            Some("Wed, 31 Dec 2025 23:00:00 GMT"),
            "",
            361,
            Stale,
        ),
        // An unreadable Last-Modified says nothing: default_ttl.
        (None, None, Some("yesterday"), "", 3599, Fresh),
        // The viewer's directives still apply to the default lifetime.
        (None, None, None, "no-cache", 0, MustRevalidate),
        (None, None, None, "max-age=10", 11, Stale),
        (None, None, None, "min-fresh=600", 3100, Stale),
        (None, None, None, "max-stale=100", 3650, Fresh),
        (
            Some("must-revalidate"),
            None,
            None,
            "max-stale",
            3601,
            MustRevalidate,
        ),
        // What must not be stored is never fresh.
        (Some("private"), None, None, "", 0, NotCacheable),
    ];
    for &(cc, exp, lm, viewer, age, want) in table {
        let m = meta(cc, exp, lm);
        assert_eq!(
            verdict(&m, Some(viewer), T0 + age * 1000, HOUR),
            want,
            "origin {cc:?} {exp:?} {lm:?}, viewer {viewer:?}, age {age} s"
        );
    }
    // default_ttl 0: every PLAY revalidates what the origin said nothing about.
    let m = meta(None, None, None);
    assert_eq!(verdict(&m, None, T0, Duration::ZERO), Stale);
    assert!(only_if_cached(Some("only-if-cached")) && !only_if_cached(None));
}

#[test]
fn conditional_describe_carries_the_stored_validators() {
    let mut m = meta(None, None, Some("Wed, 31 Dec 2025 14:00:00 GMT"));
    assert_eq!(
        conditional_headers(&m.validators),
        vec![(
            "If-Modified-Since",
            "Wed, 31 Dec 2025 14:00:00 GMT".to_owned()
        )]
    );
    m.validators.etag = Some("\"v7\"".into());
    assert_eq!(
        conditional_headers(&m.validators)[0],
        ("If-None-Match", "\"v7\"".to_owned())
    );
    assert!(conditional_headers(&Validators::default()).is_empty());
}

#[test]
fn same_content_compares_sdp_version_and_validators() {
    let stored = meta(None, None, None);
    // A new session id in o= (gst-rtsp-server draws one per DESCRIBE) is the same
    // content; the version is compared through sdp_origin.
    let mut c = stored.clone();
    c.sdp = c.sdp.replace("o=- 1 1", "o=- 99 1");
    let mut s2 = stored.clone();
    s2.sdp
        .push_str("a=ssrc:1004085019 cname:user1@host-49ada901\r\n");
    c.sdp
        .push_str("a=ssrc:229297152 cname:user2@host-513ec474\r\n");
    assert!(same_content(&s2, &c), "SSRCs are drawn per origin session");
    c.fetched_unix_ms += 5000;
    c.validators.expires = Some("Thu, 01 Jan 2026 01:00:00 GMT".into());
    assert!(same_content(&stored, &c));

    let mut v = c.clone();
    v.validators.sdp_origin = Some("2".into());
    assert!(!same_content(&stored, &v), "a new o= version");

    let mut d = c.clone();
    d.sdp = d.sdp.replace("npt=0-10", "npt=0-5");
    d.duration_ms = Some(5000);
    assert!(!same_content(&stored, &d), "another clip");

    let mut tagged = stored.clone();
    tagged.validators.etag = Some("\"a\"".into());
    let mut retagged = c.clone();
    retagged.validators.etag = Some("\"b\"".into());
    assert!(!same_content(&tagged, &retagged), "another ETag");
    retagged.validators.etag = Some("\"a\"".into());
    assert!(same_content(&tagged, &retagged));

    let mut lm = stored.clone();
    lm.validators.last_modified = Some("Wed, 31 Dec 2025 14:00:00 GMT".into());
    let mut newer = c;
    newer.validators.last_modified = Some("Thu, 01 Jan 2026 00:30:00 GMT".into());
    assert!(!same_content(&lm, &newer), "modified since");
}

#[test]
fn a_304_replaces_the_caching_headers_it_carries_and_keeps_the_rest() {
    let stored = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Wed, 31 Dec 2025 14:00:00 GMT".into()),
        expires: Some("Thu, 01 Jan 2026 00:10:00 GMT".into()),
        cache_control: Some("max-age=60".into()),
        sdp_origin: Some("3".into()),
    };
    let sent = Validators {
        cache_control: Some("max-age=600".into()),
        expires: Some("Thu, 01 Jan 2026 01:00:00 GMT".into()),
        ..Validators::default()
    };
    let v = updated(&stored, sent);
    assert_eq!(v.cache_control.as_deref(), Some("max-age=600"));
    assert_eq!(v.expires.as_deref(), Some("Thu, 01 Jan 2026 01:00:00 GMT"));
    assert_eq!(v.etag, stored.etag);
    assert_eq!(v.last_modified, stored.last_modified);
    assert_eq!(v.sdp_origin, stored.sdp_origin);
}
