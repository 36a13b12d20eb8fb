//! PostgreSQL back end of the records store, used when `[accounting] postgres_url` is
//! set.
//!
//! What it does: connects with the synchronous `postgres` client (plain TCP or a Unix
//! socket) using the parts of the validated [`PostgresUrl`] (it never parses the URL
//! text itself), creates or migrates each record type's table with the same columns
//! as SQLite ([`super::schema`]; `BIGINT` for the integers, an identity `id`) under an
//! advisory lock so processes starting together do not race on `CREATE TABLE`, and
//! writes batches in one transaction. Every network wait is bounded (connect timeout,
//! TCP user timeout, statement timeout) so a vanished server costs the writer thread
//! seconds, not the kernel's retransmission minutes. After a failure the connection is
//! dropped and the next write reconnects (and checks the tables again: the server may
//! be a fresh replacement).
//!
//! What it does not: TLS (the config accepts `sslmode` `disable` or `prefer` only),
//! several hosts, connection pools, or retrying by itself (the writer decides when).
//! The client runs its own small runtime, so it must never be called from a tokio
//! task: the writer thread (or a test thread) owns it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mediagate_config::{Host, PostgresHost, PostgresUrl};
use postgres::config::{SslMode, TargetSessionAttrs};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use serde_json::Value as Json;

use super::schema::{insert_sql, pending_migrations, Dialect, Table};
use super::{FoundRow, PendingRow, Record, RecordStore, SqlValue, StoreError};

/// Connect timeout when the URL sets none.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long unacknowledged data may sit in the socket before the connection counts as
/// dead (Linux `TCP_USER_TIMEOUT`).
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a statement may run on the server.
pub(crate) const STATEMENT_TIMEOUT_MS: u32 = 10_000;
/// Advisory-lock key serialising schema changes ("mediagat" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x6d65_6469_6167_6174;

/// The client's error with its causes, on one line (the server's words included).
fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string().replace('\n', "; "));
        source = cause.source();
    }
    text
}

/// The client's settings from the validated URL's parts.
fn client_config(url: &PostgresUrl) -> Result<postgres::Config, String> {
    let mut config = postgres::Config::new();
    config.user(url.user());
    if let Some(password) = url.password() {
        config.password(password);
    }
    match url.host() {
        PostgresHost::Tcp(Host::Name(name)) => config.host(name),
        PostgresHost::Tcp(Host::Ip(ip)) => config.host(&ip.to_string()),
        PostgresHost::UnixSocketDir(dir) => config.host_path(dir),
    };
    config.port(url.port());
    config.dbname(url.dbname());
    for (key, value) in url.params() {
        match (key.as_str(), value.as_str()) {
            ("application_name", v) => {
                config.application_name(v);
            }
            ("options", v) => {
                config.options(v);
            }
            ("connect_timeout", v) => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("connect_timeout {v} is not a number of seconds"))?;
                // libpq's rule: zero waits forever, which the client spells as no timeout.
                if secs > 0 {
                    config.connect_timeout(Duration::from_secs(secs));
                }
            }
            ("sslmode", "disable") => {
                config.ssl_mode(SslMode::Disable);
            }
            ("sslmode", "prefer") => {
                config.ssl_mode(SslMode::Prefer);
            }
            ("target_session_attrs", "any") => {
                config.target_session_attrs(TargetSessionAttrs::Any);
            }
            ("target_session_attrs", "read-write") => {
                config.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            (k, v) => return Err(format!("the parameter {k}={v} is not supported")),
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("mediagate");
    }
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    config.keepalives(true);
    Ok(config)
}

/// A live connection and what it has prepared.
struct Connection {
    client: Client,
    /// Insert statements by table.
    inserts: HashMap<&'static str, Statement>,
    /// Tables created or migrated through this connection.
    ready: HashSet<&'static str>,
}

/// A PostgreSQL records store: the URL and, while it works, a connection.
pub struct PostgresStore {
    config: postgres::Config,
    shown_url: String,
    conn: Option<Connection>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown_url)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url`. Any failure (server unreachable, authentication) is a
    /// [`StoreError::PostgresStart`] saying so: the caller must not start without its
    /// store. Tables are created when first used, or by [`PostgresStore::prepare`].
    pub fn connect(url: &PostgresUrl) -> Result<Self, StoreError> {
        let shown_url = url.redacted();
        let start_err = |detail: String| StoreError::PostgresStart {
            url: shown_url.clone(),
            detail,
        };
        let config =
            client_config(url).map_err(|why| start_err(format!("the URL is not usable: {why}")))?;
        let mut store = Self {
            config,
            shown_url: shown_url.clone(),
            conn: None,
        };
        store.ensure_connected().map_err(|e| match e {
            StoreError::Postgres { detail, .. } => start_err(detail),
            other => other,
        })?;
        Ok(store)
    }

    fn err(&self, e: &postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.shown_url.clone(),
            detail: describe(e),
        }
    }

    /// Connects when there is no live connection.
    fn ensure_connected(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut client = self.config.connect(NoTls).map_err(|e| self.err(&e))?;
            client
                .batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                .map_err(|e| self.err(&e))?;
            self.conn = Some(Connection {
                client,
                inserts: HashMap::new(),
                ready: HashSet::new(),
            });
        }
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(StoreError::Postgres {
                url: self.shown_url.clone(),
                detail: "not connected".into(),
            }),
        }
    }

    /// Runs `f` on the connection; a failure drops the connection so the next call
    /// starts afresh.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let conn = self.ensure_connected()?;
        f(conn).map_err(|e| {
            self.conn = None;
            self.err(&e)
        })
    }

    /// Creates `table` when missing and runs the migrations its recorded version has
    /// not had, in one transaction under the schema lock.
    pub fn prepare(&mut self, table: &Table) -> Result<(), StoreError> {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| !c.client.is_closed() && c.ready.contains(table.name))
        {
            return Ok(());
        }
        table.check()?;
        let dialect = Dialect::Postgres;
        let version: Option<i64> = self.with_conn(|c| {
            let mut tx = c.client.transaction()?;
            tx.batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {}",
                dialect.versions_table_sql()
            ))?;
            let row = tx.query_opt(&dialect.get_version_sql(), &[&table.name])?;
            tx.commit()?;
            row.map(|r| r.try_get(0)).transpose()
        })?;
        // Checked outside the transaction: a database newer than this program is not
        // a connection failure and must not drop the connection.
        let pending = pending_migrations(table, version.unwrap_or(0))?;
        let name = table.name;
        self.with_conn(|c| {
            if let Some(last) = pending.last() {
                let mut tx = c.client.transaction()?;
                tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"))?;
                // Another process may have migrated while the lock was free.
                let now: Option<i64> = tx
                    .query_opt(&dialect.get_version_sql(), &[&name])?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if now.unwrap_or(0) < i64::from(last.version) {
                    for m in pending {
                        if i64::from(m.version) > now.unwrap_or(0) {
                            tx.batch_execute(&dialect.migration_sql(name, m))?;
                        }
                    }
                    tx.execute(
                        &dialect.set_version_sql(),
                        &[&name, &i64::from(last.version)],
                    )?;
                }
                tx.commit()?;
            }
            let insert = c.client.prepare(&insert_sql(table))?;
            c.inserts.insert(name, insert);
            c.ready.insert(name);
            Ok(())
        })
    }

    /// Writes rows in one transaction, reconnecting first if the last call failed.
    /// On failure the connection is dropped, so the next call starts afresh.
    pub(crate) fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            self.prepare(&row.table)?;
        }
        self.with_conn(|c| {
            let mut tx = c.client.transaction()?;
            for row in rows {
                let params: Vec<&(dyn ToSql + Sync)> = row
                    .values
                    .iter()
                    .map(|v| match v {
                        SqlValue::Text(s) => s as &(dyn ToSql + Sync),
                        SqlValue::Int(n) => n as &(dyn ToSql + Sync),
                    })
                    .collect();
                match c.inserts.get(row.table.name) {
                    Some(insert) => tx.execute(insert, &params)?,
                    None => tx.execute(&insert_sql(&row.table), &params)?,
                };
            }
            tx.commit()
        })
    }

    /// Writes records in one transaction.
    pub fn insert<R: Record>(&mut self, records: &[R]) -> Result<(), StoreError> {
        self.insert_all(&PendingRow::all(records)?)
    }

    fn query(
        &mut self,
        table: &Table,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<FoundRow>, StoreError> {
        self.prepare(table)?;
        self.with_conn(|c| {
            let rows = c.client.query(sql, params)?;
            rows.iter()
                .map(|row| {
                    let mut map = FoundRow::new();
                    for (i, column) in row.columns().iter().enumerate() {
                        let value = match *column.type_() {
                            postgres::types::Type::INT8 => Json::from(row.try_get::<_, i64>(i)?),
                            postgres::types::Type::INT4 => Json::from(row.try_get::<_, i32>(i)?),
                            _ => Json::from(row.try_get::<_, String>(i)?),
                        };
                        map.insert(column.name().to_owned(), value);
                    }
                    Ok(map)
                })
                .collect()
        })
    }

    /// A read-only query on `R`'s table for reports, with one integer parameter `$1`;
    /// rows as maps from column name to value (integers and text only).
    pub fn select<R: Record>(
        &mut self,
        sql: &str,
        param: i64,
    ) -> Result<Vec<FoundRow>, StoreError> {
        self.query(&R::TABLE, sql, &[&param])
    }

    /// Rows stored for a key (a call-id) as maps from column name to value (JSON
    /// columns as their text), oldest first. For tests and tools.
    pub fn find<R: Record>(&mut self, key: &str) -> Result<Vec<FoundRow>, StoreError> {
        let t = R::TABLE;
        let sql = format!("SELECT * FROM {} WHERE {} = $1 ORDER BY id", t.name, t.key);
        self.query(&t, &sql, &[&key])
    }

    /// The stored records, oldest first, at most `limit`; rows whose JSON does not
    /// read back as `R` are skipped.
    pub fn records<R: Record>(&mut self, limit: usize) -> Result<Vec<R>, StoreError> {
        let t = R::TABLE;
        let Some(json) = t.json_column() else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {json} FROM {} ORDER BY id LIMIT $1", t.name);
        let rows = self.query(&t, &sql, &[&limit])?;
        Ok(super::records_from(&rows, json))
    }

    /// The table's column names in order, as the server's catalogue reports them.
    pub fn column_names<R: Record>(&mut self) -> Result<Vec<String>, StoreError> {
        let t = R::TABLE;
        let rows = self.query(
            &t,
            "SELECT column_name::text AS name FROM information_schema.columns
             WHERE table_name = $1 AND table_schema = current_schema()
             ORDER BY ordinal_position",
            &[&t.name],
        )?;
        Ok(super::names_from(&rows))
    }

    /// Number of stored records of type `R`.
    pub fn count<R: Record>(&mut self) -> Result<i64, StoreError> {
        let t = R::TABLE;
        let rows = self.query(&t, &format!("SELECT COUNT(*) AS n FROM {}", t.name), &[])?;
        Ok(rows.first().and_then(|r| r.get("n")?.as_i64()).unwrap_or(0))
    }

    /// The schema version recorded for a table, `None` before its first migration.
    pub fn schema_version(&mut self, table: &str) -> Result<Option<i64>, StoreError> {
        let sql = Dialect::Postgres.get_version_sql();
        self.with_conn(|c| {
            let exists: bool = c
                .client
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL",
                    &[&super::VERSIONS_TABLE],
                )?
                .try_get(0)?;
            if !exists {
                return Ok(None);
            }
            c.client
                .query_opt(&sql, &[&table])?
                .map(|r| r.try_get(0))
                .transpose()
        })
    }

    /// Runs SQL text as is: for tests and tools that build a database by hand.
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.with_conn(|c| c.client.batch_execute(sql))
    }
}

impl RecordStore for PostgresStore {
    fn insert_all(&mut self, rows: &[PendingRow]) -> Result<(), StoreError> {
        PostgresStore::insert_all(self, rows)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.shown_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port with nothing listening: bound, then released.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn unreachable_server_refuses_with_a_clear_message() {
        let port = closed_port();
        let url = format!("postgresql://mediagate:secret@127.0.0.1:{port}/acct");
        let err = PostgresStore::connect(&url.parse().unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::PostgresStart { .. }), "{err:?}");
        assert!(
            text.starts_with(&format!(
                "cannot use the PostgreSQL accounting store postgresql://mediagate:***@127.0.0.1:{port}/acct: error connecting to server: "
            )),
            "{text}"
        );
        assert!(text.contains("Connection refused"), "{text}");
        assert!(
            text.contains("remove [accounting] postgres_url to use SQLite"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn unusable_url_is_refused_before_the_store_sees_it() {
        // The store takes only the validated type: a URL the client library could
        // not use is refused by the config parser, with a position in the file.
        let err = "postgresql://u@h/db?bogus=1"
            .parse::<PostgresUrl>()
            .unwrap_err();
        assert!(err.to_string().contains("unknown parameter"), "{err}");
    }

    #[test]
    fn the_client_gets_every_part_of_the_url() {
        let url: PostgresUrl =
            "postgresql://acct:p%40w@[2001:db8::1]:6543/records?application_name=edge%201&connect_timeout=3&options=-c%20x%3Dy&sslmode=disable&target_session_attrs=read-write"
                .parse()
                .unwrap();
        let c = client_config(&url).unwrap();
        assert_eq!(c.get_user(), Some("acct"));
        assert_eq!(c.get_password(), Some(&b"p@w"[..]));
        assert_eq!(
            c.get_hosts(),
            [postgres::config::Host::Tcp("2001:db8::1".into())]
        );
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(c.get_dbname(), Some("records"));
        assert_eq!(c.get_application_name(), Some("edge 1"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_options(), Some("-c x=y"));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);

        let socket: PostgresUrl = "postgresql://u@%2Frun%2Fpostgresql/db".parse().unwrap();
        let c = client_config(&socket).unwrap();
        assert_eq!(
            c.get_hosts(),
            [postgres::config::Host::Unix("/run/postgresql".into())]
        );
        assert_eq!(c.get_ports(), [5432]);
        assert_eq!(c.get_password(), None);
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(c.get_application_name(), Some("mediagate"));
    }

    /// Against a real server (Debian's `postgresql`).
    mod real_server {
        use super::*;
        use crate::store::tests::{call, viewer, Call, Viewer, CALL_MIGRATIONS, CALL_V1};
        use crate::store::{spawn, StoreTarget, WriterOptions, WriterReport};
        use mediagate_testkit::postgres::PostgresServer;

        fn url(server: &PostgresServer) -> PostgresUrl {
            server.url().parse().unwrap()
        }

        #[test]
        fn one_writer_puts_two_record_types_in_their_tables() {
            let server = PostgresServer::start();
            let writer = spawn(
                StoreTarget::Postgres {
                    url: url(&server),
                    fallback: None,
                },
                &[Call::TABLE, Viewer::TABLE],
                WriterOptions::default(),
            )
            .unwrap();
            let relay = writer.sink();
            let edge = writer.sink();
            for i in 0..20 {
                relay.send(call(&format!("c{i}")));
                edge.send(viewer(&format!("v{i}"), i));
            }
            assert_eq!(
                writer.close(),
                WriterReport {
                    stored: 40,
                    ..WriterReport::default()
                }
            );
            let mut store = PostgresStore::connect(&url(&server)).unwrap();
            assert_eq!(store.count::<Call>().unwrap(), 20);
            let viewers = store.records::<Viewer>(100).unwrap();
            assert_eq!(viewers.len(), 20);
            assert_eq!(viewers[7], viewer("v7", 7));
            assert_eq!(store.find::<Viewer>("v3").unwrap()[0]["bytes"], 3);
            let mut expected = vec!["id".to_owned()];
            expected.extend(Viewer::TABLE.columns.iter().map(|c| c.name.to_owned()));
            assert_eq!(store.column_names::<Viewer>().unwrap(), expected);
            assert_eq!(store.schema_version("test_calls").unwrap(), Some(2));
            assert_eq!(store.schema_version("test_viewers").unwrap(), Some(1));
        }

        #[test]
        fn an_older_table_is_migrated_and_a_newer_one_refused() {
            let server = PostgresServer::start();
            let mut v1 = Call::TABLE;
            v1.columns = CALL_V1;
            v1.migrations = &CALL_MIGRATIONS[..1];
            let mut old = PostgresStore::connect(&url(&server)).unwrap();
            old.prepare(&v1).unwrap();
            old.execute_batch(
                "INSERT INTO test_calls (call_id, reason, packets, info) VALUES ('old', 'deleted', 5, '{}')",
            )
            .unwrap();
            assert_eq!(old.schema_version("test_calls").unwrap(), Some(1));
            drop(old);

            let mut store = PostgresStore::connect(&url(&server)).unwrap();
            let rec = Call {
                call_id: "new".into(),
                start_unix_ms: 1,
                end_unix_ms: 31,
                ..Call::default()
            };
            store.insert(&[rec]).unwrap();
            assert_eq!(store.schema_version("test_calls").unwrap(), Some(2));
            let old = store.find::<Call>("old").unwrap();
            assert_eq!(
                (&old[0]["packets"], &old[0]["duration_ms"]),
                (&5.into(), &0.into())
            );
            assert_eq!(store.find::<Call>("new").unwrap()[0]["duration_ms"], 30);

            store
                .execute_batch(
                    "UPDATE mediagate_schema_versions SET version = 5 WHERE table_name = 'test_calls'",
                )
                .unwrap();
            let mut newer = PostgresStore::connect(&url(&server)).unwrap();
            let err = newer.insert(&[call("x")]).unwrap_err();
            assert!(
                err.to_string().starts_with(
                    "accounting table test_calls: the database is at schema version 5"
                ),
                "{err}"
            );
            assert_eq!(
                newer.count::<Viewer>().unwrap(),
                0,
                "the connection stays usable"
            );
        }
    }
}
