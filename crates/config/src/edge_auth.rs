//! `[edge.auth]` and the per-rule `access` tables: who may watch through the edge.
//!
//! What it does: declares where viewers' credentials are checked (a users file with
//! Argon2id hashes, an LDAP directory, or both: the file first), which schemes the
//! edge offers (Digest always when a users file is set; Basic only when `basic = true`),
//! and, per `[[edge.route]]` and for `[edge.forward]`, an access list by client network,
//! user and group, with the pure predicates the engine needs. Challenges use
//! `Proxy-Authenticate`/407 in forward mode and `WWW-Authenticate`/401 for routes
//! (RFC 2326 §12.5 and §12.26, RFC 7235 §3.1-§3.2).
//!
//! What it does not: read the users file or talk to LDAP (the edge does, and reloads
//! on SIGHUP), or authenticate toward origins (that is a route's `credentials`).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::duration::HumanDuration;
use super::located::Located;

/// `[edge.auth]`: how viewers authenticate. Only rules whose `access` asks for it
/// authenticate anyone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeAuth {
    /// Protection space shown to players; Digest `HA1`s in the users file are computed
    /// for it, so changing it invalidates them. Default: `"mediagate"`.
    pub realm: Located<String>,
    /// Also offer Basic (the password crosses the network in clear, readable by anyone
    /// on the path; the edge then checks it against the Argon2 hash or by an LDAP bind).
    /// Needed for users without a Digest `HA1` and for LDAP. Default: `false`.
    pub basic: Located<bool>,
    /// How long a Digest nonce is accepted before the player is asked to retry with a
    /// fresh one (without asking its user). Default: `"5m"`.
    pub nonce_lifetime: HumanDuration,
    /// The users file (`name:argon2id-hash:groups[:digest]`, see `mediagate user`),
    /// read at start and on every reload. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_file: Option<Located<PathBuf>>,
    /// An LDAP directory to check passwords against (Basic only). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ldap: Option<Located<LdapConfig>>,
}

impl Default for EdgeAuth {
    fn default() -> Self {
        Self {
            realm: Located::new("mediagate".into()),
            basic: Located::new(false),
            nonce_lifetime: HumanDuration::from_secs(300),
            users_file: None,
            ldap: None,
        }
    }
}

impl EdgeAuth {
    /// True when some back end can check a password.
    pub fn has_backend(&self) -> bool {
        self.users_file.is_some() || self.ldap.is_some()
    }
}

/// `[edge.auth.ldap]`: a password is right when a simple bind as the user's entry
/// succeeds. The entry is found by a search under `base_dn` with `filter`, as
/// `bind_dn` (or anonymously).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:port` (plain LDAP; keep it on a trusted network or loopback).
    /// Required.
    pub url: String,
    /// Where users are searched, e.g. `"ou=people,dc=example,dc=org"`. Required.
    pub base_dn: String,
    /// Search filter; `{user}` becomes the user name, escaped (RFC 4515).
    /// Default: `"(uid={user})"`.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// Entry to bind as for the search. Default: none (anonymous search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// Password for `bind_dn`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password: Option<String>,
    /// Attribute of the user's entry naming its groups (the group's `cn`, or the
    /// first RDN value of a DN such as `memberOf`). Default: `"memberOf"`.
    #[serde(default = "default_group_attribute")]
    pub group_attribute: String,
    /// Longest time for the search and bind together. Default: `"5s"`.
    #[serde(default = "default_ldap_timeout")]
    pub timeout: HumanDuration,
}

fn default_filter() -> String {
    "(uid={user})".into()
}

fn default_group_attribute() -> String {
    "memberOf".into()
}

fn default_ldap_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("base_dn", &self.base_dn)
            .field("filter", &self.filter)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("group_attribute", &self.group_attribute)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `access` of a route or of `[edge.forward]`: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Viewer networks allowed on this rule (besides `[edge.client_acl]`); others get
    /// 403. Default: `[]` (any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<Cidr>,
    /// Require a login. Default: `true` when `users` or `groups` is set, else `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticate: Option<Located<bool>>,
    /// Users allowed (after logging in). Default: `[]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Groups whose members are allowed (after logging in). Default: `[]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Access {
    /// True when the viewer must log in.
    pub fn requires_login(&self) -> bool {
        self.authenticate
            .as_ref()
            .map_or(!self.users.is_empty() || !self.groups.is_empty(), |a| {
                *a.get()
            })
    }

    /// True when a viewer from `addr` may use the rule (before any login).
    pub fn admits_client(&self, addr: IpAddr) -> bool {
        self.clients.is_empty() || self.clients.iter().any(|n| n.contains(addr))
    }

    /// True when the logged-in `user` with `groups` may use the rule: any user when
    /// no list is given, else one named in `users` or a member of one of `groups`.
    pub fn admits_user(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_follows_the_lists_unless_set() {
        let mut a = Access::default();
        assert!(!a.requires_login());
        a.groups = vec!["staff".into()];
        assert!(a.requires_login());
        assert!(a.admits_user("x", &["staff".into()]));
        assert!(!a.admits_user("x", &["other".into()]));
        a.groups.clear();
        a.authenticate = Some(Located::new(true));
        assert!(a.requires_login());
        assert!(a.admits_user("anyone", &[]));
        a.users = vec!["alice".into()];
        assert!(a.admits_user("alice", &[]));
        assert!(!a.admits_user("bob", &[]));
    }

    #[test]
    fn clients_restrict_only_when_given() {
        let mut a = Access::default();
        assert!(a.admits_client("192.0.2.1".parse().unwrap()));
        a.clients = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(a.admits_client("10.1.1.1".parse().unwrap()));
        assert!(!a.admits_client("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn ldap_debug_hides_the_password() {
        let l = LdapConfig {
            url: "ldap://127.0.0.1:389".into(),
            base_dn: "dc=example".into(),
            filter: default_filter(),
            bind_dn: Some("cn=admin,dc=example".into()),
            bind_password: Some("hunter2".into()),
            group_attribute: default_group_attribute(),
            timeout: default_ldap_timeout(),
        };
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
