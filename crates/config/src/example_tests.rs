//! Keeps `config/mediagate.example.toml` and the [`Config`] tree in step: the example
//! must load, must equal the built-in defaults, and must mention every key.

use std::collections::BTreeSet;

use super::*;

const EXAMPLE: &str = include_str!("../../../config/mediagate.example.toml");

/// The example with its optional samples switched on: a `#` directly followed by a key
/// or a `[table]` marks a sample line (prose comments are `# ` with a space).
fn example_with_samples_enabled() -> String {
    EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every dotted key path of a TOML document; arrays of tables contribute their
/// elements' keys under the array's path.
fn key_paths(table: &toml::Table) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
                for item in items {
                    walk(prefix, item, out);
                }
            }
            _ => {
                out.insert(prefix.trim_start_matches('.').to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", &toml::Value::Table(table.clone()), &mut out);
    out
}

fn serialized_paths(config: &Config) -> BTreeSet<String> {
    let text = toml::to_string(config).expect("a config serialises");
    key_paths(
        &text
            .parse::<toml::Table>()
            .expect("serialised config parses"),
    )
}

/// A config with every optional setting present and every list non-empty.
fn fully_populated() -> Config {
    let mut c = Config::default();
    c.log.access_log = Some(Located::new("/var/log/mediagate/access.log".into()));
    c.log.access_log_format = AccessLogFormat::Json;
    c.edge.parent = Some("rtsp://parent:8554".parse().unwrap());
    c.edge.trusted_clients = vec!["192.0.2.0/28".parse().unwrap()];
    c.edge.route = vec![Route {
        advertised: Located::new("/cam1".parse().unwrap()),
        origin: "rtsp://192.0.2.10/live".parse().unwrap(),
        credentials: Some(Located::new(Credentials {
            username: "u".into(),
            password: "p".into(),
            scheme: AuthScheme::Digest,
        })),
        upstream_transport: UpstreamTransport::Udp,
        access: Access {
            clients: vec!["10.0.0.0/8".parse().unwrap()],
            authenticate: Some(Located::new(true)),
            users: vec!["alice".into()],
            groups: vec!["staff".into()],
        },
        accounting: Located::new(AccountingMode::Authorize),
        cache: Located::new(true),
        cache_max_object: Some(Located::new(ByteSize::from_mib(512))),
        cache_authenticated: Located::new(false),
        always_on: Located::new(true),
    }];
    c.edge.publish = vec![PublishRule {
        path: Located::new("/live".parse().unwrap()),
        clients: vec!["10.0.0.0/8".parse().unwrap()],
        on_busy: OnBusy::Replace,
        users: vec!["encoder".into()],
    }];
    c.edge.cache.dir = Some(Located::new("/var/cache/mediagate".into()));
    c.edge.forward.access = Access {
        clients: vec!["10.0.0.0/8".parse().unwrap()],
        authenticate: Some(Located::new(true)),
        users: vec!["alice".into()],
        groups: vec!["staff".into()],
    };
    c.edge.auth.users_file = Some(Located::new("/etc/mediagate/users".into()));
    c.edge.auth.ldap = Some(Located::new(LdapConfig {
        url: "ldap://127.0.0.1:389".into(),
        base_dn: "ou=people,dc=example,dc=org".into(),
        filter: "(uid={user})".into(),
        bind_dn: Some("cn=reader,dc=example,dc=org".into()),
        bind_password: Some("secret".into()),
        group_attribute: "memberOf".into(),
        timeout: HumanDuration::from_secs(5),
    }));
    c.relay.teardown_notify_url = Some("http://127.0.0.1:5060/RPC".parse().unwrap());
    c.relay.tls_dir = Some("/etc/mediagate/relay1".into());
    c.relay.passport = Some("O=Example, CN=dispatcher*".parse().unwrap());
    c.accounting.postgres_url = Some(
        "postgresql://mediagate@127.0.0.1:5432/mediagate"
            .parse()
            .unwrap(),
    );
    c.admin.token_file = Some(Located::new("/etc/mediagate/admin.token".into()));
    c.admin.tls_cert = Some(Located::new("/etc/mediagate/admin.crt".into()));
    c.admin.tls_key = Some(Located::new("/etc/mediagate/admin.key".into()));
    c.admin.client_ca = Some(Located::new("/etc/mediagate/admin-clients-ca.crt".into()));
    let mut service = ServiceConfig::new(
        "rtsp",
        vec![BindAddr("0.0.0.0:554".parse().unwrap())],
        vec!["rtsp://10.0.0.1:8554".parse().unwrap()],
    );
    service.load_factor = Some(Located::new(1.25));
    service.persistence_timeout = Some(Located::new(HumanDuration::from_secs(600)));
    service.udp_ports = Some(Located::new(vec!["5004-5010".parse().unwrap()]));
    service.health = Some(Located::new(HealthConfig {
        check: HealthCheckKind::RtspOptions,
        interval: HumanDuration::from_secs(2),
        timeout: HumanDuration::from_secs(1),
        rise: Bounded::new(2).unwrap(),
        fall: Bounded::new(3).unwrap(),
        expect_status: Bounded::new(200).unwrap(),
        path: Some("/".into()),
        agent_port: Some(9999),
    }));
    c.balancer.service = vec![service];
    c.balancer.sync_listen = Some(Located::new(BindAddr("10.0.0.11:5540".parse().unwrap())));
    c.balancer.sync_peer = Some(Located::new(BindAddr("10.0.0.12:5540".parse().unwrap())));
    c.balancer.vrrp_state_file = Some(Located::new("/run/mediagate/vrrp-state".into()));
    c.balancer.vrrp_track_file = Some(Located::new("/run/mediagate/vrrp-track".into()));
    c.balancer.media_timeout = Some(Located::new(HumanDuration::from_secs(60)));
    c.dispatcher.mediaproxy_socket = Some(Located::new("/run/mediagate/dispatcher.sock".into()));
    c.dispatcher.relay_listen = Some(Located::new(BindAddr("0.0.0.0:25060".parse().unwrap())));
    c.dispatcher.tls_dir = Some(Located::new("/etc/mediagate/dispatcher".into()));
    c.dispatcher.management_listen =
        Some(Located::new(BindAddr("127.0.0.1:25061".parse().unwrap())));
    c.dispatcher.management_passport =
        Some(Located::new("O=Example, CN=monitor*".parse().unwrap()));
    c.dispatcher.radius = Some(Located::new(DispatcherRadius {
        server: BindAddr("127.0.0.1:1813".parse().unwrap()),
        secret: Located::new("testing123".into()),
        user_name: "mediaproxy@default".into(),
        timeout: HumanDuration::from_secs(1),
        retries: 2,
    }));
    c.dispatcher.dialog_end = Some(Located::new(DialogEnd {
        proxy: SipProxyKind::Kamailio,
        target: Located::new("udp:127.0.0.1:8090".into()),
        timeout: HumanDuration::from_millis(500),
        tries: 3,
    }));
    c.dispatcher.passport = Some("O=Example, CN=relay*".parse().unwrap());
    c.dispatcher.local_relay = Located::new(vec![LocalRelay {
        name: "local1".into(),
        address: Located::new("192.0.2.30".parse().unwrap()),
        advertised: Some("203.0.113.30".parse().unwrap()),
        ports: Located::new("40000-40999".parse().unwrap()),
    }]);
    c.dispatcher.relay_group = vec![
        RelayGroup {
            name: Located::new("public".into()),
            relays: vec!["local1".into(), "relay1".into()],
        },
        RelayGroup {
            name: Located::new("private".into()),
            relays: vec!["relay2".into()],
        },
    ];
    c.dispatcher.chain = vec![
        ChainRule {
            first: Located::new("public".into()),
            second: Located::new("private".into()),
            caller: vec!["10.0.0.0/8".parse().unwrap()],
            flag: None,
            always: false,
        },
        ChainRule {
            first: Located::new("public".into()),
            second: Located::new("private".into()),
            caller: Vec::new(),
            flag: Some("chain-private".into()),
            always: false,
        },
        ChainRule {
            first: Located::new("private".into()),
            second: Located::new("public".into()),
            caller: Vec::new(),
            flag: None,
            always: true,
        },
    ];
    c.relay.media_address = Located::new(vec![MediaAddress {
        address: Located::new("192.0.2.20".parse().unwrap()),
        advertised: Some("203.0.113.20".parse().unwrap()),
    }]);
    c
}

#[test]
fn the_example_loads_and_equals_the_defaults() {
    assert_eq!(parse_config(EXAMPLE), Ok(Config::default()));
}

#[test]
fn the_example_with_samples_enabled_is_valid() {
    let config = parse_config(&example_with_samples_enabled()).expect("samples are valid");
    assert_eq!(config.edge.route.len(), 1);
    assert_eq!(config.edge.route[0].advertised.get().to_string(), "/cam1");
    assert_eq!(config.relay.media_address.len(), 1);
    assert_eq!(
        config.log.access_log.map(|p| p.get().clone()),
        Some(PathBuf::from("/var/log/mediagate/access.log"))
    );
    assert_eq!(
        config
            .accounting
            .postgres_url
            .map(|u| u.dbname().to_owned()),
        Some("mediagate".into())
    );
}

#[test]
fn every_default_key_is_in_the_example() {
    let example = key_paths(&EXAMPLE.parse().unwrap());
    let defaults = serialized_paths(&Config::default());
    let missing: Vec<_> = defaults.difference(&example).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the example file: {missing:?}"
    );
    assert!(
        defaults.contains("edge.reconnect.backoff_min"),
        "{defaults:?}"
    );
}

#[test]
fn every_optional_key_is_in_the_example_and_nothing_else() {
    let example = key_paths(&example_with_samples_enabled().parse().unwrap());
    let full = serialized_paths(&fully_populated());
    assert_eq!(
        full, example,
        "the example's keys and the Config tree differ (update the file or fully_populated())"
    );
    assert!(full.contains("edge.route.credentials.scheme"), "{full:?}");
}

#[test]
fn serialised_configs_load_back_unchanged() {
    for config in [Config::default(), fully_populated()] {
        let text = toml::to_string(&config).unwrap();
        assert_eq!(parse_config(&text), Ok(config), "{text}");
    }
}
