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

fn at(m: &Meta, viewer: &str, after_s: u64) -> Verdict {
    verdict(
        m,
        &ViewerDirectives::parse(Some(viewer)),
        T0 + after_s * 1000,
        HOUR,
    )
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
fn lifetimes_follow_the_origins_headers_in_rfc_order() {
    let fetched = "Thu, 01 Jan 2026 00:00:00 GMT";
    assert_eq!(
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(T0)),
        fetched
    );
    // (Cache-Control, Expires, Last-Modified) → lifetime in s
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        u64,
    );
    let table: &[Row] = &[
        (None, None, None, 3600),
        (Some("max-age=30"), None, None, 30),
        (Some("max-age=30, s-maxage=90"), None, None, 90),
        (Some("public"), None, None, 3600),
        // max-age wins over Expires.
        (
            Some("max-age=30"),
            Some("Thu, 01 Jan 2026 00:10:00 GMT"),
            None,
            30,
        ),
        (None, Some("Thu, 01 Jan 2026 00:10:00 GMT"), None, 600),
        (None, Some("Wed, 31 Dec 2025 00:00:00 GMT"), None, 0),
        (None, Some("0"), None, 0),
        // A tenth of the content's age at the fetch: 10 h old → 1 h.
        (None, None, Some("Wed, 31 Dec 2025 14:00:00 GMT"), 3600),
        (None, None, Some("Wed, 31 Dec 2025 23:00:00 GMT"), 360),
        // At most a day, however old.
        (None, None, Some("Mon, 01 Jan 2024 00:00:00 GMT"), 86_400),
        // An unreadable Last-Modified is no heuristic: the default.
        (None, None, Some("yesterday"), 3600),
    ];
    for &(cc, exp, lm, want) in table {
        let m = meta(cc, exp, lm);
        assert_eq!(
            lifetime_ms(&m.validators, T0, HOUR),
            want * 1000,
            "{cc:?} {exp:?} {lm:?}"
        );
    }
}

#[test]
fn viewer_and_origin_directives_decide_fresh_or_revalidate() {
    use Verdict::{Fresh, Revalidate};
    // (origin Cache-Control, viewer Cache-Control, age in s) → verdict; lifetime 60 s
    // unless the origin says otherwise.
    let table: &[(&str, &str, u64, Verdict)] = &[
        ("max-age=60", "", 0, Fresh),
        ("max-age=60", "", 59, Fresh),
        ("max-age=60", "", 60, Revalidate),
        ("max-age=60", "no-cache", 0, Revalidate),
        ("no-cache", "", 0, Revalidate),
        ("max-age=60", "max-age=10", 11, Revalidate),
        ("max-age=60", "max-age=10", 10, Fresh),
        ("max-age=60", "min-fresh=20", 30, Fresh),
        ("max-age=60", "min-fresh=20", 41, Revalidate),
        ("max-age=60", "max-stale", 600, Fresh),
        ("max-age=60", "max-stale=30", 90, Fresh),
        ("max-age=60", "max-stale=30", 91, Revalidate),
        ("max-age=60, must-revalidate", "max-stale", 61, Revalidate),
        (
            "max-age=60, proxy-revalidate",
            "max-stale=100",
            61,
            Revalidate,
        ),
        ("max-age=60, must-revalidate", "", 59, Fresh),
        // Unknown directives are ignored.
        (
            "max-age=60, x-ours=1",
            "only-if-cached, x-theirs",
            59,
            Fresh,
        ),
    ];
    for &(origin, viewer, age, want) in table {
        let m = meta(Some(origin), None, None);
        assert_eq!(
            at(&m, viewer, age),
            want,
            "origin {origin:?} viewer {viewer:?} age {age}"
        );
    }
    // Without any header, the edge's default_ttl.
    let m = meta(None, None, None);
    assert_eq!(at(&m, "", 3599), Fresh);
    assert_eq!(at(&m, "", 3600), Revalidate);
}

#[test]
fn viewer_directives_parse() {
    let d = ViewerDirectives::parse(Some("No-Cache, max-stale, min-fresh=\"5\", only-if-cached"));
    assert!(d.no_cache && d.only_if_cached);
    assert_eq!(d.max_stale_s, Some(None));
    assert_eq!(d.min_fresh_s, Some(5));
    assert_eq!(ViewerDirectives::parse(None), ViewerDirectives::default());
    assert_eq!(
        ViewerDirectives::parse(Some("max-stale=7,max-age=abc")).max_stale_s,
        Some(Some(7))
    );
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
