//! Checking a viewer's password against an LDAP directory (RFC 4511 search and simple
//! bind): search `base_dn` with the configured filter (the user name escaped per
//! RFC 4515) as `bind_dn` or anonymously, require exactly one entry, then bind as that
//! entry with the viewer's password. The entry's `group_attribute` values give its
//! groups: a DN (`cn=staff,ou=groups,...`) counts as its first RDN's value (`staff`).
//!
//! What it does not: TLS or StartTLS (keep the directory on loopback or a trusted
//! network), connection pooling (one connection per login; the shell remembers a
//! verified login per viewer connection), or caching results across viewers.

use std::time::Duration;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use mediagate_config::LdapConfig;

/// The user's groups when `password` is right; None when it is wrong, the user is
/// unknown or ambiguous, or the directory fails or times out (all logged).
pub(crate) async fn check_password(
    cfg: &LdapConfig,
    user: &str,
    password: &str,
) -> Option<Vec<String>> {
    // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which
    // many servers accept for any DN: never a login.
    if password.is_empty() {
        return None;
    }
    let timeout: Duration = cfg.timeout.get();
    let (cfg, user, password) = (cfg.clone(), user.to_owned(), password.to_owned());
    // Its own task: a directory answer the client library cannot take apart must not
    // take the viewer's connection with it.
    let task = tokio::spawn(async move {
        tokio::time::timeout(timeout, lookup_and_bind(&cfg, &user, &password)).await
    });
    match task.await {
        Ok(Ok(Ok(groups))) => groups,
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "edge login: LDAP directory failed");
            None
        }
        Ok(Err(_)) => {
            tracing::warn!(?timeout, "edge login: LDAP directory timed out");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "edge login: LDAP check failed");
            None
        }
    }
}

async fn lookup_and_bind(
    cfg: &LdapConfig,
    user: &str,
    password: &str,
) -> Result<Option<Vec<String>>, ldap3::LdapError> {
    let settings = LdapConnSettings::new().set_conn_timeout(cfg.timeout.get());
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url).await?;
    ldap3::drive!(conn);
    if let (Some(dn), Some(pw)) = (&cfg.bind_dn, &cfg.bind_password) {
        ldap.simple_bind(dn, pw).await?.success()?;
    }
    let filter = cfg.filter.replace("{user}", &ldap_escape(user));
    let (entries, _) = ldap
        .search(
            &cfg.base_dn,
            Scope::Subtree,
            &filter,
            vec![cfg.group_attribute.as_str()],
        )
        .await?
        .success()?;
    let found = entries.len();
    let mut entries = entries.into_iter();
    let (Some(entry), true) = (entries.next(), found == 1) else {
        tracing::info!(user = %user, entries = found, "edge login: LDAP search did not find exactly one entry");
        let _ = ldap.unbind().await;
        return Ok(None);
    };
    let entry = SearchEntry::construct(entry);
    let bound = ldap
        .simple_bind(&entry.dn, password)
        .await?
        .success()
        .is_ok();
    let _ = ldap.unbind().await;
    if !bound {
        return Ok(None);
    }
    let groups = entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(&cfg.group_attribute))
        .flat_map(|(_, v)| v.iter())
        .map(|v| group_name(v))
        .collect();
    Ok(Some(groups))
}

/// `cn=staff,ou=groups,dc=example` → `staff`; a plain value stays as it is.
fn group_name(value: &str) -> String {
    let first = value.split(',').next().unwrap_or(value);
    match first.split_once('=') {
        Some((_, v)) if value.contains('=') => v.trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_from_dns_and_plain_values() {
        assert_eq!(group_name("cn=staff,ou=groups,dc=example,dc=org"), "staff");
        assert_eq!(group_name("staff"), "staff");
    }
}
