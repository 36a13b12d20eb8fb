//! Which origin serves a viewer's request URL.
//!
//! Order: reverse remap rules (longest advertised prefix first, a full-URL prefix only
//! for its host and port); then transparent mode (the connection's original
//! destination, as iptables `REDIRECT` left it); then forward proxying to the host the
//! URL names, only when the destination allow list admits it (deny by default, so the
//! edge is never an open proxy). With a `parent`, every upstream connection goes to the
//! parent edge, which receives the origin's absolute URL and splits for its children.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mediagate_config::{
    Access, AccountingMode, AdvertisedPrefix, EdgeConfig, Host, Route, RtspUrl,
};
use mediagate_rtsp::auth::AcceptedSchemes;

use crate::auth::LoginKind;
use crate::reach::{Grant, Reach};
use crate::rtsp_client::Credentials;
use crate::upstream::UpstreamTarget;

/// Why a URL has no origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no route for {0}")]
    NotFound(String),
    #[error("forwarding to {0} is not allowed by this edge's destination list")]
    Forbidden(String),
    #[error("{0}")]
    BadUrl(String),
}

/// The routing table of one edge.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    forward_enabled: bool,
    forward: mediagate_config::ForwardProxy,
    transparent: bool,
    parent: Option<RtspUrl>,
    via: String,
    timeout: Duration,
    reach: Arc<Reach>,
}

impl Router {
    pub fn new(cfg: &EdgeConfig, via: String, timeout: Duration) -> Self {
        let mut routes = cfg.route.clone();
        // Longest advertised path first; a full-URL rule before a path rule of the same
        // length (it is more specific).
        routes.sort_by_key(|r| {
            let p = r.advertised.get();
            (
                std::cmp::Reverse(p.path().len()),
                !matches!(p, AdvertisedPrefix::Url(_)),
            )
        });
        Self {
            routes,
            forward_enabled: *cfg.forward.enabled.get(),
            forward: cfg.forward.clone(),
            transparent: *cfg.transparent.get(),
            parent: cfg.parent.clone(),
            via,
            timeout,
            reach: Arc::new(Reach::new(cfg.forward.allow.clone(), Vec::new())),
        }
    }

    /// The same table, knowing the sockets the edge listens on (a hop to one of them
    /// is a loop and refused).
    pub fn with_listeners(mut self, listeners: &[SocketAddr]) -> Self {
        self.reach = Arc::new(self.reach.with_listeners(listeners.to_vec()));
        self
    }

    /// Resolves a viewer's request URL (absolute, as on its request line). `local` is
    /// the address the viewer connected to; `original_dst` the destination before an
    /// iptables redirect, when it differs.
    pub fn resolve(
        &self,
        request_url: &str,
        local: SocketAddr,
        original_dst: Option<SocketAddr>,
    ) -> Result<UpstreamTarget, RouteError> {
        let url: RtspUrl = request_url
            .parse()
            .map_err(|e: mediagate_config::InvalidValue| RouteError::BadUrl(e.to_string()))?;
        for r in &self.routes {
            if let Some(rest) = match_rule(r.advertised.get(), &url, local) {
                let origin = append_path(&r.origin.without_credentials(), rest)?;
                return Ok(self.route_target(r, origin));
            }
        }
        if self.transparent {
            if let Some(dst) = original_dst.filter(|d| *d != local) {
                // A redirect is not a permission: the destination list applies here
                // too, or the edge would relay wherever iptables happens to send.
                if !self.forward.permits(&dst.ip().to_string(), dst.port()) {
                    return Err(RouteError::Forbidden(dst.to_string()));
                }
                let origin: RtspUrl = format!("rtsp://{dst}{}", url.path()).parse().map_err(
                    |e: mediagate_config::InvalidValue| RouteError::BadUrl(e.to_string()),
                )?;
                return Ok(self.target(origin, None, Grant::AllowList));
            }
        }
        if self.forward_enabled && !is_local(&url, local) {
            let host = url.host().to_string();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if self.forward.permits(host, url.port_or_default()) {
                return Ok(self.target(url.without_credentials(), None, Grant::AllowList));
            }
            return Err(RouteError::Forbidden(url.authority()));
        }
        Err(RouteError::NotFound(url.without_credentials().to_string()))
    }

    /// The upstream of every `always_on` route: what `resolve` gives a viewer asking
    /// for exactly the route's advertised path, so that viewer shares the session the
    /// edge keeps open.
    pub fn always_on_targets(&self) -> Vec<UpstreamTarget> {
        self.routes
            .iter()
            .filter(|r| *r.always_on.get())
            .map(|r| self.route_target(r, r.origin.without_credentials()))
            .collect()
    }

    /// The target naming a published stream's hub (`url`: where publishers and
    /// viewers reach it on this edge); it is never connected to.
    pub fn published_target(&self, url: RtspUrl) -> UpstreamTarget {
        UpstreamTarget {
            rule: Some("publish".into()),
            cache: false,
            ..self.target(url, None, Grant::Named)
        }
    }

    /// The upstream of route `r` for `origin` (its origin prefix with the rest of the
    /// viewer's path).
    fn route_target(&self, r: &Route, origin: RtspUrl) -> UpstreamTarget {
        let creds = r.origin_credentials().map(|c| Credentials {
            username: c.username,
            password: c.password,
            scheme: match c.scheme {
                mediagate_config::AuthScheme::Auto => AcceptedSchemes::Any,
                mediagate_config::AuthScheme::Basic => AcceptedSchemes::BasicOnly,
                mediagate_config::AuthScheme::Digest => AcceptedSchemes::DigestOnly,
            },
        });
        let udp = r.upstream_transport == mediagate_config::UpstreamTransport::Udp;
        UpstreamTarget {
            udp,
            rule: Some(r.advertised.get().to_string()),
            cache: *r.cache.get(),
            cache_max_object: r.cache_max_object.as_ref().map(|m| m.bytes()),
            cache_authenticated: *r.cache_authenticated.get(),
            ..self.target(origin, creds, Grant::Named)
        }
    }

    /// The access list of the rule `resolve` would pick for this URL, and how that rule
    /// asks for a login: a route's (401), else in transparent mode and forward mode the
    /// `[edge.forward]` list (401 when redirected, as the viewer thinks it talks to the
    /// origin; 407 when it addressed us as its proxy). None when no rule applies
    /// (`resolve` then refuses the request anyway).
    pub fn access_for(
        &self,
        request_url: &str,
        local: SocketAddr,
        original_dst: Option<SocketAddr>,
    ) -> Option<(&Access, LoginKind)> {
        let url: RtspUrl = request_url.parse().ok()?;
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| match_rule(r.advertised.get(), &url, local).is_some())
        {
            return Some((&r.access, LoginKind::Origin));
        }
        if self.transparent && original_dst.is_some_and(|d| d != local) {
            return Some((&self.forward.access, LoginKind::Origin));
        }
        if self.forward_enabled && !is_local(&url, local) {
            return Some((&self.forward.access, LoginKind::Proxy));
        }
        None
    }

    /// The accounting of the route `resolve` would pick for this URL: `off` for
    /// forward and transparent requests (only routes configure it).
    pub fn accounting_for(&self, request_url: &str, local: SocketAddr) -> AccountingMode {
        let Ok(url) = request_url.parse::<RtspUrl>() else {
            return AccountingMode::Off;
        };
        self.routes
            .iter()
            .find(|r| match_rule(r.advertised.get(), &url, local).is_some())
            .map_or(AccountingMode::Off, |r| *r.accounting.get())
    }

    fn target(
        &self,
        origin: RtspUrl,
        credentials: Option<Credentials>,
        grant: Grant,
    ) -> UpstreamTarget {
        let (connect_to, grant) = match &self.parent {
            // The operator named the parent; the parent checks the origin's addresses.
            Some(p) => (p.authority(), Grant::Named),
            None => (origin.authority(), grant),
        };
        UpstreamTarget {
            url: origin,
            connect_to,
            credentials,
            via: self.via.clone(),
            timeout: self.timeout,
            udp: false,
            rule: None,
            cache: true,
            cache_max_object: None,
            cache_authenticated: false,
            grant,
            reach: self.reach.clone(),
        }
    }
}

/// The part of the request path after the rule's prefix, if the rule applies.
fn match_rule<'u>(rule: &AdvertisedPrefix, url: &'u RtspUrl, local: SocketAddr) -> Option<&'u str> {
    if let AdvertisedPrefix::Url(u) = rule {
        let port_ok = url.port_or_default() == u.port_or_default()
            || (u.port().is_none() && url.port() == Some(local.port()));
        if u.host() != url.host() || !port_ok {
            return None;
        }
    }
    rule.strip_path_prefix(url.path())
}

/// `origin`'s path with `rest` appended (exactly one `/` at the seam).
fn append_path(origin: &RtspUrl, rest: &str) -> Result<RtspUrl, RouteError> {
    if rest.is_empty() {
        return Ok(origin.clone());
    }
    let base = origin.to_string();
    let joined = match (base.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{base}{}", &rest[1..]),
        (false, false) if !rest.starts_with('?') => format!("{base}/{rest}"),
        _ => format!("{base}{rest}"),
    };
    joined
        .parse()
        .map_err(|e: mediagate_config::InvalidValue| RouteError::BadUrl(e.to_string()))
}

/// Whether the URL names this edge itself (its listening address), so forwarding to
/// it would loop.
fn is_local(url: &RtspUrl, local: SocketAddr) -> bool {
    matches!(url.host(), Host::Ip(ip) if *ip == local.ip()) && url.port_or_default() == local.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(toml_text: &str) -> Router {
        let cfg = mediagate_config::parse_config(toml_text).expect("valid test config");
        Router::new(&cfg.edge, "RTSP/1.0 test".into(), Duration::from_secs(5))
    }

    fn local() -> SocketAddr {
        "127.0.0.1:8554".parse().unwrap()
    }

    #[test]
    fn cache_policy_follows_the_rule_resolve_picks() {
        let r = router(
            r#"
            [edge.forward]
            enabled = true
            allow = ["*.example.net"]
            [[edge.route]]
            advertised = "/vod"
            origin = "rtsp://o1/vod"
            cache_max_object = "64MiB"
            cache_authenticated = true
            [[edge.route]]
            advertised = "/vod/fresh"
            origin = "rtsp://o1/fresh"
            cache = false
            "#,
        );
        let policy = |u: &str| {
            let t = r.resolve(u, local(), None).expect("resolves");
            (t.cache, t.cache_max_object, t.cache_authenticated)
        };
        assert_eq!(
            policy("rtsp://127.0.0.1:8554/vod/a.mp4"),
            (true, Some(64 << 20), true)
        );
        assert_eq!(
            policy("rtsp://127.0.0.1:8554/vod/fresh/a.mp4"),
            (false, None, false)
        );
        assert_eq!(
            policy("rtsp://cam.example.net/clip.mp4"),
            (true, None, false),
            "forwarded content: the defaults"
        );
    }

    #[test]
    fn an_always_on_route_keeps_the_session_its_first_viewer_would_open() {
        let r = router(
            r#"
            [[edge.route]]
            advertised = "/cam"
            origin = "rtsp://u:pw@o1:8554/live"
            upstream_transport = "udp"
            always_on = true
            [[edge.route]]
            advertised = "/other"
            origin = "rtsp://o2/other"
            "#,
        );
        let warm = r.always_on_targets();
        assert_eq!(warm.len(), 1, "only the always_on route");
        let viewer = r
            .resolve("rtsp://127.0.0.1:8554/cam", local(), None)
            .expect("resolves");
        assert_eq!(
            crate::hub_registry::hub_key(&warm[0]),
            crate::hub_registry::hub_key(&viewer),
            "the viewer must land on the warm hub"
        );
        assert_eq!(warm[0].url.to_string(), "rtsp://o1:8554/live");
        assert!(warm[0].udp && warm[0].credentials.is_some());
        // A deeper path is another stream: not kept warm by this route.
        let deeper = r
            .resolve("rtsp://127.0.0.1:8554/cam/sub", local(), None)
            .unwrap();
        assert_ne!(
            crate::hub_registry::hub_key(&warm[0]),
            crate::hub_registry::hub_key(&deeper)
        );
    }

    #[test]
    fn accounting_follows_the_rule_resolve_picks() {
        let r = router(
            r#"
            [edge.forward]
            enabled = true
            allow = ["*.example.net"]
            [[edge.route]]
            advertised = "/cams"
            origin = "rtsp://o1/all"
            accounting = "authorize"
            [[edge.route]]
            advertised = "/cams/open"
            origin = "rtsp://o1/open"
            "#,
        );
        let mode = |u: &str| r.accounting_for(u, local());
        assert_eq!(
            mode("rtsp://127.0.0.1:8554/cams/a"),
            AccountingMode::Authorize
        );
        assert_eq!(
            mode("rtsp://127.0.0.1:8554/cams/open/a"),
            AccountingMode::Off
        );
        assert_eq!(
            mode("rtsp://cam.example.net/cams/a"),
            AccountingMode::Authorize
        );
        assert_eq!(mode("rtsp://127.0.0.1:8554/elsewhere"), AccountingMode::Off);
        assert_eq!(mode("not a url"), AccountingMode::Off);
    }

    #[test]
    fn access_follows_the_rule_resolve_picks() {
        let r = router(
            r#"
            [edge.auth]
            users_file = "/nonexistent"
            [edge.forward]
            enabled = true
            allow = ["*.example.net"]
            access = { users = ["fwd"] }
            [[edge.route]]
            advertised = "/cams"
            origin = "rtsp://o1/all"
            access = { groups = ["staff"] }
            [[edge.route]]
            advertised = "/cams/open"
            origin = "rtsp://o1/open"
            "#,
        );
        let (a, kind) = r
            .access_for("rtsp://edge:8554/cams/x", local(), None)
            .unwrap();
        assert_eq!(
            (a.groups.as_slice(), kind),
            (&["staff".to_owned()][..], LoginKind::Origin)
        );
        let (a, _) = r
            .access_for("rtsp://edge:8554/cams/open/x", local(), None)
            .unwrap();
        assert!(!a.requires_login());
        let (a, kind) = r
            .access_for("rtsp://cam.example.net/x", local(), None)
            .unwrap();
        assert_eq!(
            (a.users.as_slice(), kind),
            (&["fwd".to_owned()][..], LoginKind::Proxy)
        );
        assert!(r
            .access_for("rtsp://127.0.0.1:8554/nothing", local(), None)
            .is_none());
    }

    #[test]
    fn reverse_rules_pick_the_longest_prefix_and_append_the_rest() {
        let r = router(
            r#"
            [[edge.route]]
            advertised = "/cams"
            origin = "rtsp://o1:8554/all"
            [[edge.route]]
            advertised = "/cams/front"
            origin = "rtsp://user:pw@o2/live/front"
            "#,
        );
        let t = r
            .resolve("rtsp://edge:8554/cams/front/hd", local(), None)
            .unwrap();
        assert_eq!(t.url.to_string(), "rtsp://o2/live/front/hd");
        assert_eq!(t.connect_to, "o2:554");
        assert_eq!(t.credentials.unwrap().username, "user");
        let t = r
            .resolve("rtsp://edge:8554/cams/back", local(), None)
            .unwrap();
        assert_eq!(t.url.to_string(), "rtsp://o1:8554/all/back");
        assert!(matches!(
            r.resolve("rtsp://edge:8554/camsX", local(), None),
            Err(RouteError::NotFound(_))
        ));
    }

    #[test]
    fn routes_and_targets_do_not_print_origin_passwords() {
        let r = router(
            r#"
            [[edge.route]]
            advertised = "/a"
            origin = "rtsp://user:secret-in-url@o1/a"
            [[edge.route]]
            advertised = "/b"
            origin = "rtsp://o2/b"
            credentials = { username = "bob", password = "secret-in-table" }
            "#,
        );
        let a = r.resolve("rtsp://edge:8554/a/x", local(), None).unwrap();
        let b = r.resolve("rtsp://edge:8554/b/x", local(), None).unwrap();
        assert_eq!(a.credentials.as_ref().unwrap().password, "secret-in-url");
        assert_eq!(b.credentials.as_ref().unwrap().password, "secret-in-table");
        for shown in [format!("{r:?}"), format!("{a:?}"), format!("{b:#?}")] {
            assert!(!shown.contains("secret-in"), "{shown}");
        }
    }

    #[test]
    fn configured_hops_are_named_and_forward_hops_need_the_allow_list() {
        let r = router(
            "[edge.forward]\nenabled = true\nallow = [\"*.test\"]\n[[edge.route]]\nadvertised = \"/r\"\norigin = \"rtsp://127.0.0.1:9/r\"\ncredentials = { username = \"u\", password = \"p\", scheme = \"digest\" }\n",
        );
        let reverse = r.resolve("rtsp://edge:8554/r/x", local(), None).unwrap();
        assert_eq!(reverse.grant, Grant::Named);
        assert_eq!(
            reverse.credentials.unwrap().scheme,
            AcceptedSchemes::DigestOnly
        );
        let forward = r.resolve("rtsp://cam.test/x", local(), None).unwrap();
        assert_eq!(forward.grant, Grant::AllowList);
        // Through a parent, the hop is the parent the operator named.
        let r = router(
            "[edge]\nparent = \"rtsp://127.0.0.1:9554/\"\n[edge.forward]\nenabled = true\nallow = [\"*.test\"]\n",
        );
        let t = r.resolve("rtsp://cam.test/x", local(), None).unwrap();
        assert_eq!(
            (t.connect_to.as_str(), t.grant),
            ("127.0.0.1:9554", Grant::Named)
        );
    }

    #[test]
    fn url_rules_match_only_their_host() {
        let r = router(
            r#"
            [[edge.route]]
            advertised = "rtsp://tv.example/ch"
            origin = "rtsp://o/ch"
            "#,
        );
        assert!(r.resolve("rtsp://tv.example/ch/1", local(), None).is_ok());
        assert!(r
            .resolve("rtsp://other.example/ch/1", local(), None)
            .is_err());
    }

    #[test]
    fn forward_is_denied_unless_allowed() {
        let closed = router("[edge.forward]\nenabled = false\n");
        assert!(matches!(
            closed.resolve("rtsp://cam.example/x", local(), None),
            Err(RouteError::NotFound(_))
        ));
        let open = router(
            "[edge.forward]\nenabled = true\nallow = [\"cam.example\", \"10.0.0.0/8:554\"]\n",
        );
        let t = open.resolve("rtsp://cam.example/x", local(), None).unwrap();
        assert_eq!(t.url.to_string(), "rtsp://cam.example/x");
        assert!(open.resolve("rtsp://10.1.2.3/x", local(), None).is_ok());
        assert!(matches!(
            open.resolve("rtsp://10.1.2.3:8000/x", local(), None),
            Err(RouteError::Forbidden(_))
        ));
        assert!(matches!(
            open.resolve("rtsp://evil.example/x", local(), None),
            Err(RouteError::Forbidden(_))
        ));
    }

    #[test]
    fn transparent_uses_the_original_destination_and_parent_changes_only_the_hop() {
        let r = router(
            "[edge]\ntransparent = true\nparent = \"rtsp://parent.example:9554/\"\n[edge.forward]\nallow = [\"192.0.2.0/24:554\"]\n",
        );
        let dst: SocketAddr = "192.0.2.7:554".parse().unwrap();
        let t = r
            .resolve("rtsp://192.0.2.7/stream", local(), Some(dst))
            .unwrap();
        assert_eq!(t.url.to_string(), "rtsp://192.0.2.7:554/stream");
        assert_eq!(t.connect_to, "parent.example:9554");
        // Redirected somewhere the allow list does not name: refused.
        let elsewhere: SocketAddr = "198.51.100.1:554".parse().unwrap();
        assert!(matches!(
            r.resolve("rtsp://198.51.100.1/s", local(), Some(elsewhere)),
            Err(RouteError::Forbidden(_))
        ));
    }
}
