//! Checks that involve more than one value, run once every value has parsed.
//!
//! What it does: finds settings that parse on their own but make no sense together
//! (no role enabled, a role enabled without listeners or addresses, backoff min above
//! max, duplicate route prefixes, credentials given twice, a forward proxy or
//! transparent mode with an empty allow list, edge and relay port ranges that overlap,
//! an admin API reachable from other hosts without a token)
//! and reports each at the value that must change. What it does not: check values
//! alone (their types do that while parsing) or probe the host (free ports, addresses).

use std::ops::Range;

use super::dispatcher::DispatcherConfig;
use super::load::ConfigError;
use super::located::Located;
use super::Config;

/// Every cross-field problem of `config`, in file order where positions are known.
/// A config built on the command line gets the same checks, without positions.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut fail =
        |span: Option<Range<usize>>, message: String| errors.push(ConfigError::new(span, message));
    let edge = &config.edge;
    let relay = &config.relay;

    if config.state_dir.as_os_str().is_empty() {
        fail(
            config.state_dir.span(),
            "state_dir is empty; give a directory such as \"./var\"".into(),
        );
    }
    if !*edge.enabled && !*relay.enabled && !*config.balancer.enabled && !*config.dispatcher.enabled
    {
        let span = edge.enabled.span().or_else(|| relay.enabled.span());
        fail(
            span,
            "no role is enabled: set edge.enabled, relay.enabled, balancer.enabled or dispatcher.enabled to true"
                .into(),
        );
    }

    if *edge.enabled {
        if edge.listen.is_empty() {
            fail(
                span_or(&edge.listen, &edge.enabled),
                "the edge is enabled but edge.listen is empty; add an address such as \"0.0.0.0:8554\"".into(),
            );
        }
        if edge.session_timeout.is_zero() {
            fail(
                edge.session_timeout.span(),
                "edge.session_timeout must be longer than 0s".into(),
            );
        }
        let reconnect = &edge.reconnect;
        if reconnect.backoff_min.is_zero() {
            fail(
                reconnect.backoff_min.span(),
                "edge.reconnect.backoff_min must be longer than 0s, or a dead origin is hammered"
                    .into(),
            );
        }
        if *reconnect.backoff_min.get() > *reconnect.backoff_max.get() {
            fail(
                span_or(&reconnect.backoff_max, &reconnect.backoff_min),
                format!(
                    "edge.reconnect.backoff_max ({}) is shorter than backoff_min ({})",
                    reconnect.backoff_max.get(),
                    reconnect.backoff_min.get()
                ),
            );
        }
        check_routes(config, &mut fail);
        check_cache(config, &mut fail);
        if *edge.forward.enabled && edge.forward.allow.is_empty() {
            fail(
                edge.forward.enabled.span(),
                "edge.forward is enabled but edge.forward.allow is empty, so every destination would be refused; list the hosts or networks to allow".into(),
            );
        }
        if *edge.transparent && edge.forward.allow.is_empty() {
            fail(
                edge.transparent.span(),
                "edge.transparent is on but edge.forward.allow is empty, so every redirected connection would be refused; list the destinations to allow".into(),
            );
        }
    }

    if *relay.enabled {
        if !relay.dispatchers.is_empty() && relay.tls_dir.is_none() {
            fail(
                relay.enabled.span(),
                "relay.dispatchers is set but relay.tls_dir is not; give the directory with ca.pem, cert.pem and key.pem (mediagate cert issue writes one)".into(),
            );
        }
        if relay.ng_listen_udp.is_empty()
            && relay.ng_listen_tcp.is_empty()
            && relay.dispatchers.is_empty()
        {
            fail(
                relay.enabled.span(),
                "the relay is enabled but has no ng listener and no dispatcher; set relay.ng_listen_udp (such as [\"127.0.0.1:2223\"]), relay.ng_listen_tcp or relay.dispatchers".into(),
            );
        }
        if relay.media_address.is_empty() {
            fail(
                span_or(&relay.media_address, &relay.enabled),
                "the relay is enabled but has no media address; add [[relay.media_address]] with address = \"IP\"".into(),
            );
        }
        for media in relay.media_address.iter() {
            if media.address.get().0.is_unspecified() && media.advertised.is_none() {
                fail(
                    media.address.span(),
                    format!(
                        "media address {} is a wildcard; give the real local address, or set advertised to the address peers should send to",
                        media.address.get()
                    ),
                );
            }
        }
        for (name, timeout) in [
            ("media_timeout", &relay.media_timeout),
            ("on_hold_timeout", &relay.on_hold_timeout),
        ] {
            if timeout.is_zero() {
                fail(
                    timeout.span(),
                    format!("relay.{name} must be longer than 0s"),
                );
            }
        }
        if *edge.enabled && edge.udp_ports.range().overlaps(relay.ports.range()) {
            fail(
                span_or(&relay.ports, &edge.udp_ports),
                format!(
                    "relay.ports ({}) overlaps edge.udp_ports ({}); give the two roles separate ranges",
                    relay.ports.get(),
                    edge.udp_ports.get()
                ),
            );
        }
    }

    check_dispatcher(config, &mut fail);
    check_balancer(config, &mut fail);
    check_admin(config, &mut fail);
    check_edge_auth(config, &mut fail);

    errors.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
    errors
}

fn check_routes(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let routes = &config.edge.route;
    for (i, route) in routes.iter().enumerate() {
        let duplicate = routes
            .iter()
            .take(i)
            .any(|earlier| earlier.advertised.get() == route.advertised.get());
        if duplicate {
            fail(
                route.advertised.span(),
                format!(
                    "the advertised prefix \"{}\" is already used by an earlier route; each prefix may appear once",
                    route.advertised.get()
                ),
            );
        }
        if let (Some(credentials), Some(_)) = (&route.credentials, route.origin.credentials()) {
            fail(
                credentials.span(),
                format!(
                    "route \"{}\" has credentials both in its origin URL and in a credentials table; keep one",
                    route.advertised.get()
                ),
            );
        }
    }
}

/// A cache that can hold nothing is a mistake for `enabled = false`; so is a route
/// whose largest object is nothing.
fn check_cache(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let cache = &config.edge.cache;
    if let Some(dir) = &cache.dir {
        if dir.as_os_str().is_empty() {
            fail(
                dir.span(),
                "edge.cache.dir is empty; give a directory, or leave it out for \"cache\" under state_dir".into(),
            );
        }
    }
    if *cache.enabled && cache.size.bytes() == 0 {
        fail(
            span_or(&cache.size, &cache.enabled),
            "edge.cache.size is 0B, so nothing could be cached; give a size such as \"1GiB\", or set edge.cache.enabled = false".into(),
        );
    }
    for route in &config.edge.route {
        if let Some(max) = route.cache_max_object.as_ref().filter(|m| m.bytes() == 0) {
            fail(
                max.span(),
                format!(
                    "route \"{}\" has cache_max_object = \"0B\", so nothing of it could be cached; set cache = false on the route instead",
                    route.advertised.get()
                ),
            );
        }
    }
}

/// A name the users file can hold.
fn valid_login_name(name: &str) -> bool {
    !(name.is_empty()
        || name.len() > 64
        || name
            .chars()
            .any(|c| c == ':' || c == ',' || c == '#' || c.is_whitespace() || c.is_control()))
}

/// Access lists that ask for a login need somewhere to check it; names in them must
/// be names the users file can hold; LDAP needs its address, base and a `{user}`
/// placeholder.
fn check_edge_auth(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let edge = &config.edge;
    let auth = &edge.auth;
    let rules = std::iter::once((
        "edge.forward.access".to_owned(),
        &edge.forward.access,
        edge.forward.enabled.span(),
    ))
    .chain(edge.route.iter().map(|r| {
        (
            format!("the access of route \"{}\"", r.advertised.get()),
            &r.access,
            r.advertised.span(),
        )
    }));
    for (what, access, rule_span) in rules {
        let span = access
            .authenticate
            .as_ref()
            .and_then(Located::span)
            .or(rule_span);
        if access.requires_login() && !auth.has_backend() {
            fail(
                span.clone(),
                format!("{what} asks for a login but [edge.auth] has neither users_file nor ldap; set one"),
            );
        }
        if access.authenticate.as_ref().is_some_and(|a| !*a.get())
            && !(access.users.is_empty() && access.groups.is_empty())
        {
            fail(
                span.clone(),
                format!("{what} lists users or groups but sets authenticate = false; users can only be known after a login"),
            );
        }
        for name in access.users.iter().chain(&access.groups) {
            if !valid_login_name(name) {
                fail(
                    span.clone(),
                    format!("{what}: \"{}\" is not a valid user or group name (1 to 64 bytes without ':', ',', '#' or spaces)", name.escape_debug()),
                );
            }
        }
    }
    for rule in &edge.publish {
        let what = format!("[[edge.publish]] \"{}\"", rule.path.get());
        if rule.requires_login() && !auth.has_backend() {
            fail(
                rule.path.span(),
                format!("{what} lists users who may publish, but [edge.auth] has neither users_file nor ldap to log them in; set one"),
            );
        }
        for name in rule.users.iter().filter(|u| *u != "*") {
            if !valid_login_name(name) {
                fail(
                    rule.path.span(),
                    format!("{what}: \"{}\" is not a valid user name (1 to 64 bytes without ':', ',', '#' or spaces; \"*\" is any user)", name.escape_debug()),
                );
            }
        }
    }
    let realm = auth.realm.get();
    if realm.is_empty()
        || realm.len() > 256
        || realm
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        fail(
            auth.realm.span(),
            "edge.auth.realm must be 1 to 256 characters without quotes, backslashes or control characters".into(),
        );
    }
    if auth.nonce_lifetime.is_zero() {
        fail(
            None,
            "edge.auth.nonce_lifetime must be longer than 0s".into(),
        );
    }
    if let Some(ldap) = &auth.ldap {
        let l = ldap.get();
        if !l.url.starts_with("ldap://") {
            fail(
                ldap.span(),
                format!(
                    "edge.auth.ldap.url \"{}\" must be an ldap://host:port URL",
                    l.url
                ),
            );
        }
        if !l.filter.contains("{user}") {
            fail(
                ldap.span(),
                "edge.auth.ldap.filter must contain {user}, such as \"(uid={user})\"".into(),
            );
        }
        if l.base_dn.trim().is_empty() {
            fail(ldap.span(), "edge.auth.ldap.base_dn is empty".into());
        }
        if l.bind_dn.is_some() != l.bind_password.is_some() {
            fail(
                ldap.span(),
                "edge.auth.ldap: give bind_dn and bind_password together, or neither for an anonymous search".into(),
            );
        }
    }
}

/// The API without a token or client certificates serves loopback peers only, so an
/// address others can reach is refused unless one of them protects it; the token has
/// one source; TLS needs its certificate and key, and mutual TLS needs TLS.
fn check_admin(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let admin = &config.admin;
    if let (Some(token), Some(file)) = (&admin.token, &admin.token_file) {
        fail(
            file.span().or_else(|| token.span()),
            "admin.token and admin.token_file are both set; keep one".into(),
        );
    }
    match (&admin.tls_cert, &admin.tls_key) {
        (Some(cert), None) => fail(
            cert.span(),
            "admin.tls_cert is set without admin.tls_key; give both, or neither for plain HTTP"
                .into(),
        ),
        (None, Some(key)) => fail(
            key.span(),
            "admin.tls_key is set without admin.tls_cert; give both, or neither for plain HTTP"
                .into(),
        ),
        _ => {}
    }
    if let (Some(ca), None) = (&admin.client_ca, &admin.tls_cert) {
        fail(
            ca.span(),
            "admin.client_ca (mutual TLS) needs TLS: set admin.tls_cert and admin.tls_key too"
                .into(),
        );
    }
    if admin.authenticates_clients() {
        return;
    }
    for addr in admin.listen.iter() {
        if !addr.get().ip().is_loopback() {
            fail(
                admin.listen.span(),
                format!(
                    "admin.listen has {addr}, which other hosts can reach, but no token is set; set admin.token_file (or admin.token, or admin.client_ca for client certificates), or listen on a loopback address such as \"127.0.0.1:9554\""
                ),
            );
        }
    }
}

/// The span of `value`, or of `fallback` when `value` kept its default.
/// The balancer's services: each needs listeners and back ends, names are unique, and
/// what the running balancer does not do yet is refused rather than ignored.
fn check_balancer(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let balancer = &config.balancer;
    if !*balancer.enabled {
        return;
    }
    if balancer.service.is_empty() {
        fail(
            balancer.enabled.span(),
            "the balancer is enabled but has no service; add [[balancer.service]] with name, listen and backends".into(),
        );
    }
    if balancer.session_timeout.is_zero() {
        fail(
            balancer.session_timeout.span(),
            "balancer.session_timeout must be longer than 0s".into(),
        );
    }
    if let Some(t) = balancer.media_timeout.as_ref().filter(|t| t.is_zero()) {
        fail(
            t.span(),
            "balancer.media_timeout must be longer than 0s; leave it out to use session_timeout"
                .into(),
        );
    }
    if balancer.relay_socket_buffer.get().bytes() > 64 * 1024 * 1024 {
        fail(
            balancer.relay_socket_buffer.span(),
            "balancer.relay_socket_buffer must be at most \"64MiB\"".into(),
        );
    }
    for (i, service) in balancer.service.iter().enumerate() {
        let name = service.name.get();
        if name.is_empty() {
            fail(
                service.name.span(),
                "a service name must not be empty".into(),
            );
        }
        if balancer
            .service
            .iter()
            .take(i)
            .any(|s| s.name.get() == name)
        {
            fail(
                service.name.span(),
                format!("the service name \"{name}\" is already used; each service needs its own"),
            );
        }
        if service.listen.is_empty() {
            fail(
                span_or(&service.listen, &service.name),
                format!(
                    "service \"{name}\" has no listen address; add one such as \"0.0.0.0:554\""
                ),
            );
        }
        if service.backends.is_empty() {
            fail(
                span_or(&service.backends, &service.name),
                format!(
                    "service \"{name}\" has no back end; add one such as \"rtsp://10.0.0.1:8554\""
                ),
            );
        }
        if let Some(p) = service.persistence_timeout.as_ref().filter(|p| p.is_zero()) {
            fail(
                p.span(),
                format!("service \"{name}\": persistence_timeout must be longer than 0s; leave it out for no persistence"),
            );
        }
        if let Some(f) = &service.load_factor {
            if *service.scheduler.get() != crate::SchedulerName::UrlHash {
                fail(
                    f.span(),
                    format!(
                        "service \"{name}\": load_factor applies to scheduler = \"url_hash\" only"
                    ),
                );
            } else if !(1.0..=10.0).contains(f.get()) {
                fail(
                    f.span(),
                    format!("service \"{name}\": load_factor must be from 1.0 to 10.0"),
                );
            }
        }
        let group = *service.kind.get() == crate::ServiceKind::PortGroup;
        match &service.udp_ports {
            Some(u) if !group => fail(
                u.span(),
                format!("service \"{name}\": udp_ports applies to kind = \"port_group\" only; remove it"),
            ),
            Some(u) if u.is_empty() => fail(
                u.span(),
                format!("service \"{name}\": udp_ports needs at least one port or range"),
            ),
            Some(u) if u.iter().map(|r| r.port_count()).sum::<u32>() > 4096 => fail(
                u.span(),
                format!("service \"{name}\": udp_ports holds more than 4096 ports (a socket each); use a smaller range"),
            ),
            None if group => fail(
                service.kind.span(),
                format!("service \"{name}\": a port group needs udp_ports, such as [\"5004-5010\"]"),
            ),
            _ => {}
        }
        if group && service.listen.len() > 1 {
            fail(
                service.listen.span(),
                format!("service \"{name}\": a port group listens on one TCP address (its UDP ports bind on the same IP)"),
            );
        }
        if *service.kind.get() != crate::ServiceKind::Rtsp {
            for span in [service.media_mode.span(), service.ports.span()]
                .into_iter()
                .flatten()
            {
                fail(
                    Some(span),
                    format!("service \"{name}\": media_mode and ports apply to kind = \"rtsp\" only; remove them"),
                );
            }
        } else if *service.media_mode.get() == crate::MediaMode::Relay {
            let ports = service.ports.range();
            if *config.relay.enabled && ports.overlaps(config.relay.ports.range()) {
                fail(
                    span_or(&service.ports, &service.name),
                    format!(
                        "service \"{name}\": ports overlap relay.ports; give each its own range"
                    ),
                );
            }
            if *config.edge.enabled && ports.overlaps(config.edge.udp_ports.range()) {
                fail(
                    span_or(&service.ports, &service.name),
                    format!(
                        "service \"{name}\": ports overlap edge.udp_ports; give each its own range"
                    ),
                );
            }
        }
    }
}

/// `[dispatcher]`: a front door and a relay, the TLS link's address and directory together,
/// port ranges of local relays apart from each other and from the relay role's.
fn check_dispatcher(config: &Config, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let d = &config.dispatcher;
    if !*d.enabled {
        return;
    }
    if d.ng_listen_udp.is_empty() && d.ng_listen_tcp.is_empty() && d.mediaproxy_socket.is_none() {
        fail(
            d.enabled.span(),
            "the dispatcher is enabled but has no front door; set dispatcher.ng_listen_udp (such as [\"127.0.0.1:2223\"]), dispatcher.ng_listen_tcp or dispatcher.mediaproxy_socket".into(),
        );
    }
    match (&d.relay_listen, &d.tls_dir) {
        (Some(listen), None) => fail(
            listen.span(),
            "dispatcher.relay_listen is set but dispatcher.tls_dir is not; give the directory with ca.pem, cert.pem and key.pem (mediagate cert issue writes one)".into(),
        ),
        (None, Some(dir)) if d.management_listen.is_none() => fail(
            dir.span(),
            "dispatcher.tls_dir is set but neither dispatcher.relay_listen nor dispatcher.management_listen is; set the address relays connect to, such as \"0.0.0.0:25060\"".into(),
        ),
        _ => {}
    }
    if d.passport.is_some() && d.relay_listen.is_none() {
        fail(
            d.enabled.span(),
            "dispatcher.passport is set but dispatcher.relay_listen is not; the passport checks relays that connect over TLS".into(),
        );
    }
    match (&d.management_listen, &d.tls_dir) {
        (Some(listen), None) if !listen.get().0.ip().is_loopback() => fail(
            listen.span(),
            format!(
                "dispatcher.management_listen {} would serve the management interface in plain TCP off loopback; set dispatcher.tls_dir to serve it over TLS, or listen on 127.0.0.1",
                listen.get()
            ),
        ),
        _ => {}
    }
    if let Some(passport) = &d.management_passport {
        if d.management_listen.is_none() || d.tls_dir.is_none() {
            fail(
                passport.span(),
                "dispatcher.management_passport needs dispatcher.management_listen and dispatcher.tls_dir (it checks the certificates of TLS clients)".into(),
            );
        }
    }
    if let Some(radius) = &d.radius {
        if radius.secret.is_empty() {
            fail(
                radius.secret.span().or_else(|| radius.span()),
                "dispatcher.radius.secret is empty; give the secret shared with the RADIUS server"
                    .into(),
            );
        }
        if radius.server.get().port() == 0 || radius.server.get().ip().is_unspecified() {
            fail(
                radius.span(),
                format!(
                    "dispatcher.radius.server {} is not a server address; give IP:PORT such as \"127.0.0.1:1813\"",
                    radius.server.get()
                ),
            );
        }
    }
    if let Some(end) = &d.dialog_end {
        if let Err(why) = dialog_end_target(end.target.get()) {
            fail(
                end.target.span().or_else(|| end.span()),
                format!("dispatcher.dialog_end.target: {why}"),
            );
        }
        if end.tries == 0 {
            fail(
                end.span(),
                "dispatcher.dialog_end.tries is 0; give at least 1".into(),
            );
        }
    }
    if d.local_relay.is_empty() && d.relay_listen.is_none() {
        fail(
            span_or(&d.local_relay, &d.enabled),
            "the dispatcher is enabled but has no relay; add [[dispatcher.local_relay]] with name, address and ports, or set relay_listen and tls_dir for relays that connect over TLS".into(),
        );
    }
    check_chains(d, fail);
    let relays = d.local_relay.get();
    for (i, r) in relays.iter().enumerate() {
        if r.address.get().0.is_unspecified() && r.advertised.is_none() {
            fail(
                r.address.span(),
                format!(
                    "local relay \"{}\": address {} is a wildcard; give the real local address, or set advertised",
                    r.name,
                    r.address.get()
                ),
            );
        }
        let earlier = relays.get(..i).unwrap_or_default();
        if earlier.iter().any(|e| e.name == r.name) {
            fail(
                span_or(&r.ports, &d.local_relay),
                format!(
                    "local relay name \"{}\" is used twice; names must be unique",
                    r.name
                ),
            );
        }
        if let Some(e) = earlier
            .iter()
            .find(|e| e.ports.range().overlaps(r.ports.range()))
        {
            fail(
                r.ports.span(),
                format!(
                    "local relay \"{}\": ports {} overlap those of \"{}\"; give each relay its own range",
                    r.name,
                    r.ports.get(),
                    e.name
                ),
            );
        }
        if *config.relay.enabled && config.relay.ports.range().overlaps(r.ports.range()) {
            fail(
                r.ports.span(),
                format!(
                    "local relay \"{}\": ports {} overlap relay.ports; give each its own range",
                    r.name,
                    r.ports.get()
                ),
            );
        }
        if *config.edge.enabled && config.edge.udp_ports.range().overlaps(r.ports.range()) {
            fail(
                r.ports.span(),
                format!(
                    "local relay \"{}\": ports {} overlap edge.udp_ports; give each its own range",
                    r.name,
                    r.ports.get()
                ),
            );
        }
    }
}

/// `[[dispatcher.relay_group]]` and `[[dispatcher.chain]]`: every group used by a rule
/// and every rule acted on (its groups exist and differ, one condition, a `flag` only
/// where `ng` requests can carry it, not behind an `always` rule), every group member
/// a relay that can exist (a local relay's name unless relays link over TLS).
fn check_chains(d: &DispatcherConfig, fail: &mut impl FnMut(Option<Range<usize>>, String)) {
    let groups = &d.relay_group;
    for (i, g) in groups.iter().enumerate() {
        let earlier = groups.get(..i).unwrap_or_default();
        if earlier.iter().any(|e| *e.name == *g.name) {
            fail(
                g.name.span(),
                format!(
                    "relay group \"{}\" is defined twice; group names must be unique",
                    *g.name
                ),
            );
        }
        if g.relays.is_empty() {
            fail(
                g.name.span(),
                format!(
                    "relay group \"{}\" has no relays; list relay names in relays (certificate names of linked relays, names of local relays)",
                    *g.name
                ),
            );
        }
        for relay in &g.relays {
            // Without the TLS link only local relays exist: any other name could
            // never be in the group.
            if d.relay_listen.is_none() && !d.local_relay.iter().any(|l| l.name == *relay) {
                fail(
                    g.name.span(),
                    format!(
                        "relay group \"{}\" lists \"{relay}\", which is no [[dispatcher.local_relay]] name, and relay_listen is not set for linked relays; name a local relay or set relay_listen and tls_dir",
                        *g.name
                    ),
                );
            }
            if let Some(e) = earlier.iter().find(|e| e.relays.contains(relay)) {
                fail(
                    g.name.span(),
                    format!(
                        "relay \"{relay}\" is in relay groups \"{}\" and \"{}\"; a relay belongs to one group",
                        *e.name, *g.name
                    ),
                );
            }
        }
        if !d
            .chain
            .iter()
            .any(|c| *c.first == *g.name || *c.second == *g.name)
        {
            fail(
                g.name.span(),
                format!(
                    "relay group \"{}\" is used by no [[dispatcher.chain]]; remove it or add a chain rule with first or second = \"{}\"",
                    *g.name, *g.name
                ),
            );
        }
    }
    let ng = !d.ng_listen_udp.is_empty() || !d.ng_listen_tcp.is_empty();
    for (i, rule) in d.chain.iter().enumerate() {
        // The first rule that matches wins, so one after `always` is never reached.
        if d.chain
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|r| r.always)
        {
            fail(
                rule.first.span(),
                "a dispatcher.chain rule after one with always = true is never reached; move it before that rule or remove it".into(),
            );
        }
        for (key, group) in [("first", &rule.first), ("second", &rule.second)] {
            if !groups.iter().any(|g| *g.name == **group) {
                fail(
                    group.span(),
                    format!(
                        "dispatcher.chain {key} = \"{}\" names no [[dispatcher.relay_group]]; define the group with its relays",
                        **group
                    ),
                );
            }
        }
        if *rule.first == *rule.second {
            fail(
                rule.second.span(),
                format!(
                    "dispatcher.chain has first and second \"{}\"; a chain goes through two different groups",
                    *rule.first
                ),
            );
        }
        let conditions = usize::from(!rule.caller.is_empty())
            + usize::from(rule.flag.is_some())
            + usize::from(rule.always);
        if conditions != 1 {
            fail(
                rule.first.span(),
                "a dispatcher.chain rule needs exactly one of caller (networks), flag or always = true".into(),
            );
        }
        match &rule.flag {
            Some(flag) if flag.trim().is_empty() => fail(
                rule.first.span(),
                "dispatcher.chain flag is empty; give the ng flag the proxy sets, such as \"chain-private\"".into(),
            ),
            Some(flag) if flag.trim() != flag => fail(
                rule.first.span(),
                format!("dispatcher.chain flag {flag:?} has spaces around it; the proxy's flags are matched without them"),
            ),
            Some(_) if !ng => fail(
                rule.first.span(),
                "dispatcher.chain flag needs an ng front door (ng_listen_udp or ng_listen_tcp): MediaProxy requests carry no flags".into(),
            ),
            _ => {}
        }
    }
}

/// Where `[dispatcher.dialog_end]`'s `target` points: `udp:IP:PORT`, or an absolute
/// path of a UNIX datagram socket.
pub(crate) fn dialog_end_target(text: &str) -> Result<(), String> {
    if let Some(addr) = text.strip_prefix("udp:") {
        return match addr.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(()),
            _ => Err(format!(
                "\"{text}\" is not udp:IP:PORT (such as \"udp:127.0.0.1:8090\")"
            )),
        };
    }
    if text.starts_with('/') {
        return Ok(());
    }
    Err(format!(
        "\"{text}\" is neither udp:IP:PORT nor an absolute socket path"
    ))
}

fn span_or<A, B>(value: &Located<A>, fallback: &Located<B>) -> Option<Range<usize>> {
    value.span().or_else(|| fallback.span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_config;

    fn messages(text: &str) -> Vec<String> {
        match parse_config(text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.message().to_owned()).collect(),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(validate(&Config::default()), Vec::new());
    }

    #[test]
    fn a_reachable_admin_api_needs_a_token() {
        let text = "[admin]\nlisten = [\"127.0.0.1:9554\", \"0.0.0.0:9554\"]\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].span(), Some(17..51));
        assert!(
            errors[0].message().starts_with(
                "admin.listen has 0.0.0.0:9554, which other hosts can reach, but no token is set"
            ),
            "{}",
            errors[0]
        );
        let with_token = format!("{text}token = \"0123456789abcdef\"\n");
        assert!(parse_config(&with_token).is_ok());
        let with_file = format!("{text}token_file = \"/etc/mediagate/admin.token\"\n");
        assert!(parse_config(&with_file).is_ok());
        assert_eq!(
            messages("[admin]\nlisten = [\"[::1]:9554\"]\n"),
            Vec::<String>::new()
        );
        assert_eq!(messages("[admin]\nlisten = []\n"), Vec::<String>::new());
    }

    #[test]
    fn admin_tls_needs_its_pairs() {
        assert_eq!(
            messages("[admin]\ntls_cert = \"/c.pem\"\n"),
            ["admin.tls_cert is set without admin.tls_key; give both, or neither for plain HTTP"]
        );
        assert_eq!(
            messages("[admin]\ntls_key = \"/k.pem\"\nclient_ca = \"/ca.pem\"\n"),
            [
                "admin.tls_key is set without admin.tls_cert; give both, or neither for plain HTTP",
                "admin.client_ca (mutual TLS) needs TLS: set admin.tls_cert and admin.tls_key too"
            ]
        );
        let mutual = "[admin]\nlisten = [\"0.0.0.0:9554\"]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nclient_ca = \"/ca.pem\"\n";
        assert_eq!(
            messages(mutual),
            Vec::<String>::new(),
            "client certificates protect it"
        );
        let tls_only =
            "[admin]\nlisten = [\"0.0.0.0:9554\"]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";
        assert_eq!(
            messages(tls_only).len(),
            1,
            "TLS alone authenticates no one"
        );
    }

    #[test]
    fn one_source_for_the_admin_token() {
        let text = "[admin]\ntoken = \"0123456789abcdef\"\ntoken_file = \"/t\"\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(&text[errors[0].span().unwrap()], "\"/t\"");
        assert_eq!(
            errors[0].message(),
            "admin.token and admin.token_file are both set; keep one"
        );
    }

    #[test]
    fn route_accounting_reads_its_three_modes() {
        let route = "[[edge.route]]\nadvertised = \"/cam1\"\norigin = \"rtsp://192.0.2.1/x\"\n";
        let cfg = parse_config(route).expect("no accounting key");
        assert_eq!(
            *cfg.edge.route[0].accounting.get(),
            crate::AccountingMode::Off
        );
        for (text, mode) in [
            ("off", crate::AccountingMode::Off),
            ("authorize", crate::AccountingMode::Authorize),
            ("session", crate::AccountingMode::Session),
        ] {
            let cfg = parse_config(&format!("{route}accounting = \"{text}\"\n")).expect(text);
            assert_eq!(*cfg.edge.route[0].accounting.get(), mode);
            assert_eq!(mode.as_str(), text);
        }
        let errors = parse_config(&format!("{route}accounting = \"yes\"\n")).unwrap_err();
        assert!(errors[0].message().contains("authorize"), "{}", errors[0]);
    }

    #[test]
    fn access_lists_need_a_backend_and_valid_names() {
        let text = "[[edge.route]]\nadvertised = \"/cam1\"\norigin = \"rtsp://192.0.2.1/x\"\naccess = { groups = [\"staff\"] }\n";
        let m = messages(text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("the access of route \"/cam1\" asks for a login"),
            "{m:?}"
        );
        let ok = format!("[edge.auth]\nusers_file = \"/etc/u\"\n{text}");
        assert_eq!(messages(&ok), Vec::<String>::new());
        let bad = "[edge.auth]\nusers_file = \"/etc/u\"\n[edge.forward]\naccess = { authenticate = false, users = [\"a b\"] }\n";
        let m = messages(bad);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m.iter().any(|e| e.contains("authenticate = false")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|e| e.contains("not a valid user or group name")),
            "{m:?}"
        );
    }

    #[test]
    fn publish_users_need_a_backend_and_valid_names() {
        let text = "[[edge.publish]]\npath = \"/live\"\nusers = [\"enc\"]\n";
        let m = messages(text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("[[edge.publish]] \"/live\" lists users who may publish, but [edge.auth] has neither users_file nor ldap"),
            "{m:?}"
        );
        let ok = format!("[edge.auth]\nusers_file = \"/etc/u\"\n{text}");
        assert_eq!(messages(&ok), Vec::<String>::new());
        let any = "[edge.auth]\nusers_file = \"/etc/u\"\n[[edge.publish]]\npath = \"/\"\nusers = [\"*\"]\n";
        assert_eq!(messages(any), Vec::<String>::new());
        let bad = "[edge.auth]\nusers_file = \"/etc/u\"\n[[edge.publish]]\npath = \"/\"\nusers = [\"a b\"]\n";
        let m = messages(bad);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("not a valid user name"), "{m:?}");
    }

    #[test]
    fn ldap_settings_are_checked() {
        let text = "[edge.auth]\nldap = { url = \"http://x\", base_dn = \"\", filter = \"(uid=x)\", bind_dn = \"cn=a\" }\n";
        let m = messages(text);
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m[0].contains("ldap://host:port"), "{m:?}");
    }

    #[test]
    fn no_role() {
        let text = "[edge]\nenabled = false\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span(), Some(17..22));
        assert_eq!(&text[17..22], "false");
        assert_eq!(
            errors[0].message(),
            "no role is enabled: set edge.enabled, relay.enabled, balancer.enabled or dispatcher.enabled to true"
        );
    }

    #[test]
    fn backoff_min_above_max_points_at_max() {
        let text = "[edge.reconnect]\nbackoff_min = \"10s\"\nbackoff_max = \"1s\"\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message(),
            "edge.reconnect.backoff_max (1s) is shorter than backoff_min (10s)"
        );
        let span = errors[0].span().unwrap();
        assert_eq!(&text[span], "\"1s\"");
    }

    #[test]
    fn relay_needs_addresses_and_listeners() {
        let text = "[relay]\nenabled = true\nng_listen_udp = []\n";
        assert_eq!(
            messages(text),
            vec![
                "the relay is enabled but has no ng listener and no dispatcher; set relay.ng_listen_udp (such as [\"127.0.0.1:2223\"]), relay.ng_listen_tcp or relay.dispatchers".to_owned(),
                "the relay is enabled but has no media address; add [[relay.media_address]] with address = \"IP\"".to_owned(),
            ]
        );
    }

    #[test]
    fn dispatcher_needs_a_front_door_and_a_relay_and_the_link_needs_both_keys() {
        let text = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nrelay_listen = \"0.0.0.0:25060\"\n";
        let got = messages(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("the dispatcher is enabled but has no front door"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("dispatcher.relay_listen is set but dispatcher.tls_dir is not"),
            "{got:?}"
        );
        let text = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\ntls_dir = \"pki\"\npassport = \"CN=relay*\"\n";
        let got = messages(text);
        assert_eq!(got.len(), 3, "{got:?}");
        for start in [
            "dispatcher.tls_dir is set but neither dispatcher.relay_listen nor",
            "dispatcher.passport is set but dispatcher.relay_listen is not",
            "the dispatcher is enabled but has no relay",
        ] {
            assert!(got.iter().any(|m| m.starts_with(start)), "{start}: {got:?}");
        }
        let text = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\n";
        assert_eq!(
            messages(text),
            vec!["the dispatcher is enabled but has no relay; add [[dispatcher.local_relay]] with name, address and ports, or set relay_listen and tls_dir for relays that connect over TLS".to_owned()]
        );
        let text = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nrelay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\npassport = \"O=Example, CN=relay*\"\n";
        assert_eq!(messages(text), Vec::<String>::new());
    }

    #[test]
    fn chain_rules_must_name_groups_have_one_condition_and_be_acted_on() {
        let base = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nrelay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\n[[dispatcher.local_relay]]\nname = \"a\"\naddress = \"127.0.0.1\"\nports = \"40000-40099\"\n[[dispatcher.local_relay]]\nname = \"b\"\naddress = \"127.0.0.2\"\nports = \"40100-40199\"\n";
        let groups = "[[dispatcher.relay_group]]\nname = \"pub\"\nrelays = [\"a\"]\n[[dispatcher.relay_group]]\nname = \"priv\"\nrelays = [\"b\", \"relay7\"]\n";
        for rule in [
            "caller = [\"10.0.0.0/8\"]",
            "flag = \"chain-private\"",
            "always = true",
        ] {
            let good = format!(
                "{base}{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\n{rule}\n"
            );
            assert_eq!(messages(&good), Vec::<String>::new(), "{rule}");
        }
        let unused = format!("{base}{groups}");
        let m = messages(&unused);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].starts_with("relay group \"pub\" is used by no [[dispatcher.chain]]"),
            "{m:?}"
        );
        let bad = format!(
            "{base}[[dispatcher.relay_group]]\nname = \"pub\"\nrelays = [\"a\"]\n[[dispatcher.relay_group]]\nname = \"pub\"\nrelays = [\"a\"]\n[[dispatcher.relay_group]]\nname = \"empty\"\nrelays = []\n[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"empty\"\n[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"pub\"\nalways = true\nflag = \"x\"\n[[dispatcher.chain]]\nfirst = \"nope\"\nsecond = \"pub\"\nalways = true\n"
        );
        let m = messages(&bad);
        let want = [
            "relay group \"pub\" is defined twice",
            "relay \"a\" is in relay groups \"pub\" and \"pub\"",
            "relay group \"empty\" has no relays",
            "a dispatcher.chain rule needs exactly one of caller",
            "a dispatcher.chain rule needs exactly one of caller",
            "dispatcher.chain has first and second \"pub\"",
            "a dispatcher.chain rule after one with always = true is never reached",
            "dispatcher.chain first = \"nope\" names no [[dispatcher.relay_group]]",
        ];
        assert_eq!(m.len(), want.len(), "{m:?}");
        for (got, want) in m.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let mediaproxy_only = format!(
            "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nmediaproxy_socket = \"/run/mp.sock\"\nrelay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\n[[dispatcher.local_relay]]\nname = \"a\"\naddress = \"127.0.0.1\"\nports = \"40000-40099\"\n{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nflag = \"x\"\n"
        );
        let m = messages(&mediaproxy_only);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("dispatcher.chain flag needs an ng front door"),
            "{m:?}"
        );
        let m = messages(&format!(
            "{base}{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nflag = \" x\"\n"
        ));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("has spaces around it"), "{m:?}");
        let local_only = format!(
            "{}{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nalways = true\n",
            base.replace("relay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\n", "")
        );
        let m = messages(&local_only);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("relay group \"priv\" lists \"relay7\", which is no [[dispatcher.local_relay]] name"),
            "{m:?}"
        );
        let shadowed = format!(
            "{base}{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nalways = true\n[[dispatcher.chain]]\nfirst = \"priv\"\nsecond = \"pub\"\nflag = \"x\"\n"
        );
        let m = messages(&shadowed);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with(
                "a dispatcher.chain rule after one with always = true is never reached"
            ),
            "{m:?}"
        );
        let unknown = format!(
            "{base}{groups}[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\ncallee = [\"10.0.0.0/8\"]\n"
        );
        assert!(parse_config(&unknown).is_err(), "callee is not a rule key");
    }

    #[test]
    fn dispatcher_accounting_and_dialog_end_are_checked() {
        let base = "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nmanagement_listen = \"127.0.0.1:25061\"\n[[dispatcher.local_relay]]\nname = \"a\"\naddress = \"127.0.0.1\"\nports = \"40000-40099\"\n";
        let good = format!("{base}[dispatcher.radius]\nserver = \"127.0.0.1:1813\"\nsecret = \"s3cret\"\n[dispatcher.dialog_end]\nproxy = \"kamailio\"\ntarget = \"udp:127.0.0.1:8090\"\n");
        assert_eq!(messages(&good), Vec::<String>::new());
        let bad = format!("{base}[dispatcher.radius]\nserver = \"0.0.0.0:1813\"\nsecret = \"\"\n[dispatcher.dialog_end]\nproxy = \"opensips\"\ntarget = \"opensips.sock\"\ntries = 0\n");
        let got = messages(&bad);
        assert_eq!(got.len(), 4, "{got:?}");
        for prefix in [
            "dispatcher.radius.secret is empty",
            "dispatcher.radius.server 0.0.0.0:1813 is not a server address",
            "dispatcher.dialog_end.target: \"opensips.sock\" is neither",
            "dispatcher.dialog_end.tries is 0",
        ] {
            assert!(
                got.iter().any(|m| m.starts_with(prefix)),
                "{prefix}: {got:?}"
            );
        }
        let plain = base.replace("127.0.0.1:25061", "0.0.0.0:25061");
        assert_eq!(
            messages(&plain),
            vec!["dispatcher.management_listen 0.0.0.0:25061 would serve the management interface in plain TCP off loopback; set dispatcher.tls_dir to serve it over TLS, or listen on 127.0.0.1".to_owned()]
        );
        let tls = plain.replace(
            "[[dispatcher",
            "tls_dir = \"pki\"\nmanagement_passport = \"CN=monitor*\"\n[[dispatcher",
        );
        assert_eq!(
            messages(&tls),
            Vec::<String>::new(),
            "tls_dir is acted on by the management interface"
        );
        let lone = base.replace(
            "management_listen = \"127.0.0.1:25061\"\n",
            "management_passport = \"CN=monitor*\"\n",
        );
        assert_eq!(
            messages(&lone),
            vec!["dispatcher.management_passport needs dispatcher.management_listen and dispatcher.tls_dir (it checks the certificates of TLS clients)".to_owned()]
        );
        assert!(dialog_end_target("udp:127.0.0.1:0").is_err());
        assert!(dialog_end_target("/run/opensips/socket").is_ok());
    }

    #[test]
    fn dispatcher_local_relays_need_unique_names_and_separate_ports() {
        let text = r#"
[edge]
enabled = false
[relay]
enabled = true
ports = "30000-30099"
media_address = [{ address = "127.0.0.1" }]
[dispatcher]
enabled = true
mediaproxy_socket = "/run/mediagate/dispatcher.sock"
[[dispatcher.local_relay]]
name = "a"
address = "127.0.0.1"
ports = "40000-40099"
[[dispatcher.local_relay]]
name = "a"
address = "0.0.0.0"
ports = "40050-40199"
[[dispatcher.local_relay]]
name = "c"
address = "127.0.0.1"
ports = "30050-30051"
"#;
        assert_eq!(
            messages(text),
            vec![
                "local relay \"a\": address 0.0.0.0 is a wildcard; give the real local address, or set advertised".to_owned(),
                "local relay name \"a\" is used twice; names must be unique".to_owned(),
                "local relay \"a\": ports 40050-40199 overlap those of \"a\"; give each relay its own range".to_owned(),
                "local relay \"c\": ports 30050-30051 overlap relay.ports; give each its own range".to_owned(),
            ]
        );
    }

    #[test]
    fn a_relay_with_dispatchers_needs_a_tls_dir_and_no_listener() {
        let base = "[relay]\nenabled = true\nng_listen_udp = []\ndispatchers = [\"d.example.net:25060\"]\n";
        let text = format!("{base}[[relay.media_address]]\naddress = \"127.0.0.1\"\n");
        assert_eq!(
            messages(&text),
            vec!["relay.dispatchers is set but relay.tls_dir is not; give the directory with ca.pem, cert.pem and key.pem (mediagate cert issue writes one)".to_owned()]
        );
        let ok = format!("{base}tls_dir = \"relay1\"\npassport = \"CN=dispatcher*\"\n[[relay.media_address]]\naddress = \"127.0.0.1\"\n");
        assert!(parse_config(&ok).is_ok());
        let bad = format!("{base}tls_dir = \"relay1\"\npassport = \"CN=a*b\"\n");
        let errors = parse_config(&bad).unwrap_err();
        assert_eq!(&bad[errors[0].span().unwrap()], "\"CN=a*b\"");
    }

    #[test]
    fn wildcard_media_address_needs_advertised() {
        let text = "[relay]\nenabled = true\n[[relay.media_address]]\naddress = \"0.0.0.0\"\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(&text[errors[0].span().unwrap()], "\"0.0.0.0\"");
        let ok = "[relay]\nenabled = true\n[[relay.media_address]]\naddress = \"0.0.0.0\"\nadvertised = \"203.0.113.7\"\n";
        assert!(parse_config(ok).is_ok());
    }

    #[test]
    fn overlapping_port_ranges() {
        let text = "[relay]\nenabled = true\nports = \"20000-20999\"\nmedia_address = [{ address = \"192.0.2.1\" }]\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message(),
            "relay.ports (20000-20999) overlaps edge.udp_ports (16384-24575); give the two roles separate ranges"
        );
        assert_eq!(&text[errors[0].span().unwrap()], "\"20000-20999\"");
    }

    #[test]
    fn duplicate_prefixes_and_double_credentials() {
        let text = r#"
[[edge.route]]
advertised = "/cam1"
origin = "rtsp://192.0.2.10/a"

[[edge.route]]
advertised = "/cam1"
origin = "rtsp://u:p@192.0.2.11/b"
credentials = { username = "u", password = "p" }
"#;
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message().contains("\"/cam1\" is already used"));
        let first_cam = text.find("\"/cam1\"").unwrap();
        let second_cam = text[first_cam + 1..].find("\"/cam1\"").unwrap() + first_cam + 1;
        assert_eq!(errors[0].span().map(|s| s.start), Some(second_cam));
        assert!(errors[1]
            .message()
            .contains("credentials both in its origin URL"));
    }

    #[test]
    fn forward_and_transparent_need_an_allow_list() {
        let text = "[edge]\ntransparent = true\n[edge.forward]\nenabled = true\n";
        let m = messages(text);
        assert_eq!(m.len(), 2);
        assert!(m[0].starts_with("edge.transparent is on"));
        assert!(m[1].starts_with("edge.forward is enabled"));
        let ok = "[edge]\ntransparent = true\n[edge.forward]\nenabled = true\nallow = [\"10.0.0.0/8:554\"]\n";
        assert_eq!(messages(ok), Vec::<String>::new());
    }

    #[test]
    fn zero_timeouts_and_empty_listen() {
        let text = "[edge]\nlisten = []\nsession_timeout = \"0s\"\n[edge.reconnect]\nbackoff_min = \"0s\"\n";
        let m = messages(text);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("edge.listen is empty"));
        assert!(m[1].contains("session_timeout must be longer"));
        assert!(m[2].contains("backoff_min must be longer"));
    }
}
