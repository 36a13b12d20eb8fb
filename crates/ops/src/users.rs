//! The edge's users file: who may watch, with Argon2id password hashes and groups.
//!
//! # Format
//!
//! UTF-8 text, one user per line; blank lines and lines starting with `#` are ignored.
//!
//! ```text
//! # name:password-hash:groups[:digest]
//! alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$...:staff,night
//! bob:$argon2id$v=19$m=19456,t=2,p=1$...::md5=0a1b...,sha256=9f8e...
//! ```
//!
//! * `name`: 1 to 64 bytes, no `:`, whitespace or control characters; unique.
//! * `password-hash`: an Argon2id PHC string, as `mediagate user add` writes it. Nothing
//!   else is accepted (no plain text, no other algorithm).
//! * `groups`: comma-separated names (same characters as user names, no `,`), may be empty.
//! * `digest` (optional): the RFC 7616 `HA1 = H(name:realm:password)` for MD5 and/or
//!   SHA-256, lowercase hex, written by `mediagate user add --digest-realm REALM`.
//!
//! # Digest and Argon2
//!
//! HTTP Digest (which RTSP players prefer, and which never sends the password) needs
//! the plain password or its `HA1` on the server; an Argon2 hash can give neither. So:
//! a user with an `HA1` field can log in with Digest in that realm; every user can log in
//! with Basic when the edge offers it (`[edge.auth] basic = true`), the password then
//! being checked against the Argon2 hash. `HA1` is a password equivalent for its realm
//! (whoever reads it can log in there, though not elsewhere): store it only when
//! Digest is needed, and protect the file like a password file. The Argon2 hash is never
//! weakened or replaced by it.
//!
//! What it does not: read or watch the file (the caller loads it, and again on SIGHUP),
//! know realms (the `HA1` was computed for one; the edge checks the realm it serves),
//! or lock the file against concurrent writers.

use std::collections::BTreeSet;
use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Longest accepted line (a PHC string is about 100 bytes; HA1s add 110).
pub const MAX_LINE_LEN: usize = 4096;
/// Longest user or group name.
pub const MAX_NAME_LEN: usize = 64;
/// Most groups per user.
pub const MAX_GROUPS: usize = 64;

/// One user of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The Argon2id PHC string.
    pub hash: String,
    pub groups: Vec<String>,
    /// `HA1` with MD5, lowercase hex.
    pub ha1_md5: Option<String>,
    /// `HA1` with SHA-256, lowercase hex.
    pub ha1_sha256: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field(
                "digest",
                &(self.ha1_md5.is_some() || self.ha1_sha256.is_some()),
            )
            .finish_non_exhaustive()
    }
}

impl User {
    /// Hashes `password` with Argon2id (default parameters, random salt).
    pub fn new(name: &str, password: &str, groups: Vec<String>) -> Result<User, UsersError> {
        check_name(name).map_err(|why| UsersError::at(0, why))?;
        for g in &groups {
            check_name(g).map_err(|why| UsersError::at(0, format!("group: {why}")))?;
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| UsersError::at(0, format!("cannot hash the password: {e}")))?
            .to_string();
        Ok(User {
            name: name.to_owned(),
            hash,
            groups,
            ha1_md5: None,
            ha1_sha256: None,
        })
    }

    /// True when `password` is this user's (Argon2 verification: slow on purpose, tens
    /// of milliseconds; run it off the async threads).
    pub fn check_password(&self, password: &str) -> bool {
        match PasswordHash::new(&self.hash) {
            Ok(h) => Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The line for this user (without a newline).
    pub fn to_line(&self) -> String {
        let mut line = format!("{}:{}:{}", self.name, self.hash, self.groups.join(","));
        let digest: Vec<String> = [("md5", &self.ha1_md5), ("sha256", &self.ha1_sha256)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        if !digest.is_empty() {
            line.push(':');
            line.push_str(&digest.join(","));
        }
        line
    }
}

/// A malformed users file: the line (1-based; 0 for a value not from a file) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct UsersError {
    pub line: usize,
    pub reason: String,
}

impl UsersError {
    fn at(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

/// The parsed file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersFile {
    users: Vec<User>,
}

impl UsersFile {
    /// Parses a whole file; every error names its line. Total: never panics.
    pub fn parse(text: &str) -> Result<UsersFile, UsersError> {
        let mut users: Vec<User> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            if raw.len() > MAX_LINE_LEN {
                return Err(UsersError::at(
                    n,
                    format!("longer than {MAX_LINE_LEN} bytes"),
                ));
            }
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let user = parse_line(line).map_err(|why| UsersError::at(n, why))?;
            if !seen.insert(user.name.clone()) {
                return Err(UsersError::at(
                    n,
                    format!("user `{}` is listed twice", user.name),
                ));
            }
            users.push(user);
        }
        Ok(UsersFile { users })
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// Adds `user`, or replaces the user of that name.
    pub fn upsert(&mut self, user: User) {
        match self.users.iter_mut().find(|u| u.name == user.name) {
            Some(u) => *u = user,
            None => self.users.push(user),
        }
    }

    /// Removes a user; false when there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        self.users.len() != before
    }

    /// The file text (comments are not kept).
    pub fn to_text(&self) -> String {
        let mut s =
            String::from("# mediagate users: name:argon2id-hash:groups[:md5=HA1,sha256=HA1]\n");
        for u in &self.users {
            s.push_str(&u.to_line());
            s.push('\n');
        }
        s
    }
}

fn parse_line(line: &str) -> Result<User, String> {
    let mut fields = line.split(':');
    let name = fields.next().unwrap_or_default();
    check_name(name)?;
    let hash = fields.next().ok_or("missing the password hash")?;
    if !hash.starts_with("$argon2id$") {
        return Err("the password hash must be an Argon2id PHC string ($argon2id$...); use `mediagate user add`".into());
    }
    PasswordHash::new(hash).map_err(|e| format!("the password hash is malformed: {e}"))?;
    let groups_field = fields.next().unwrap_or_default();
    let mut groups = Vec::new();
    for g in groups_field
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        check_name(g).map_err(|why| format!("group: {why}"))?;
        if groups.len() == MAX_GROUPS {
            return Err(format!("more than {MAX_GROUPS} groups"));
        }
        groups.push(g.to_owned());
    }
    let (mut ha1_md5, mut ha1_sha256) = (None, None);
    if let Some(digest) = fields.next() {
        for part in digest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (alg, hex) = part
                .split_once('=')
                .ok_or_else(|| format!("digest field `{part}` is not ALG=HEX"))?;
            let (slot, len) = match alg {
                "md5" => (&mut ha1_md5, 32),
                "sha256" => (&mut ha1_sha256, 64),
                _ => return Err(format!("unknown digest algorithm `{alg}` (md5, sha256)")),
            };
            if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{alg} HA1 must be {len} hex digits"));
            }
            *slot = Some(hex.to_ascii_lowercase());
        }
    }
    if fields.next().is_some() {
        return Err("too many `:`-separated fields (expected name:hash:groups[:digest])".into());
    }
    Ok(User {
        name: name.to_owned(),
        hash: hash.to_owned(),
        groups,
        ha1_md5,
        ha1_sha256,
    })
}

/// A user or group name: 1 to 64 bytes of visible ASCII or UTF-8, without `:`, `,`
/// or whitespace (so it round-trips through the file and through Basic credentials).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("name longer than {MAX_NAME_LEN} bytes"));
    }
    if name
        .chars()
        .any(|c| c == ':' || c == ',' || c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "name `{}` contains `:`, `,`, `#`, whitespace or a control character",
            name.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Cheap parameters so tests do not spend seconds hashing; parsing accepts any
    // Argon2id parameters.
    fn quick_hash(password: &str) -> String {
        let params = argon2::Params::new(256, 1, 1, None).expect("valid params");
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes())
            .expect("hash")
            .to_string()
    }

    #[test]
    fn parses_users_groups_and_digests() {
        let h = quick_hash("pw");
        let text = format!(
            "# comment\n\nalice:{h}:staff,night\nbob:{h}::md5={}\n",
            "A".repeat(32)
        );
        let f = UsersFile::parse(&text).expect("valid");
        let alice = f.get("alice").expect("alice");
        assert_eq!(alice.groups, ["staff", "night"]);
        assert!(alice.check_password("pw"));
        assert!(!alice.check_password("pW"));
        let bob = f.get("bob").expect("bob");
        assert!(bob.groups.is_empty());
        assert_eq!(bob.ha1_md5.as_deref(), Some("a".repeat(32).as_str()));
        assert_eq!(UsersFile::parse(&f.to_text()), Ok(f));
    }

    #[test]
    fn errors_name_the_line() {
        let h = quick_hash("pw");
        let cases = [
            (format!("a:{h}\na:{h}\n"), 2, "twice"),
            ("carol:secret:\n".to_owned(), 1, "Argon2id"),
            ("carol:$argon2id$nonsense:\n".to_owned(), 1, "malformed"),
            (format!("\n\nd e:{h}:\n"), 3, "whitespace"),
            (format!("d:{h}:g:md5=12\n"), 1, "32 hex"),
            (
                format!("d:{h}:g:sha1={}\n", "0".repeat(40)),
                1,
                "unknown digest",
            ),
            (format!("d:{h}:g::extra\n"), 1, "too many"),
            ("d\n".to_owned(), 1, "missing"),
        ];
        for (text, line, why) in cases {
            let e = UsersFile::parse(&text).expect_err(&text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn upsert_and_remove() {
        let mut f = UsersFile::default();
        let u = User {
            name: "a".into(),
            hash: quick_hash("1"),
            groups: vec![],
            ha1_md5: None,
            ha1_sha256: None,
        };
        f.upsert(u.clone());
        f.upsert(User {
            hash: quick_hash("2"),
            ..u
        });
        assert_eq!(f.users().len(), 1);
        assert!(f.get("a").expect("a").check_password("2"));
        assert!(f.remove("a"));
        assert!(!f.remove("a"));
    }

    #[test]
    fn debug_shows_no_hash() {
        let u = User::new("a", "pw", vec!["g".into()]).expect("user");
        assert!(u.hash.starts_with("$argon2id$"));
        assert!(!format!("{u:?}").contains("argon2"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC*") {
            let _ = UsersFile::parse(&text);
        }

        #[test]
        fn parser_never_panics_on_near_valid_lines(
            name in "[a-z:, #]{0,6}",
            hash in prop_oneof![Just("$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned()), "\\$argon2id\\$[ -~]{0,40}"],
            groups in "[a-z,: ]{0,10}",
            digest in "(md5|sha256|x)=[0-9a-f=,]{0,70}",
        ) {
            let _ = UsersFile::parse(&format!("{name}:{hash}:{groups}:{digest}\n"));
        }
    }
}
