//! What a record type's table looks like and how it got there: columns, versioned
//! migrations, and the SQL both back ends run for them.
//!
//! What it does: a record type declares its [`Table`] once (name, columns in table
//! order, migrations from version 1 up); [`Dialect`] turns a migration into the
//! statements SQLite or PostgreSQL runs, and a table into its `INSERT`. The key `id`
//! column is not declared: each back end adds its own auto-increment key first
//! (`INTEGER PRIMARY KEY` in SQLite, an identity `BIGINT` in PostgreSQL). Versions are
//! kept per table in [`VERSIONS_TABLE`], one row per record type.
//!
//! What it does not: downgrade, or rewrite rows (a migration is DDL only). Migration 1
//! of a table uses `IF NOT EXISTS`, so a database made before versions were kept (the
//! relay's `relay_sessions` of earlier releases) is taken as being at version 1.

use super::StoreError;

/// The table holding each record table's schema version: `(table_name, version)`.
pub const VERSIONS_TABLE: &str = "mediagate_schema_versions";

/// How a column is typed: the SQL type differs per back end, the meaning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTF-8 text; the row's value must be a string.
    Text,
    /// A signed 64-bit integer (counts and Unix milliseconds; unsigned values past
    /// `i64::MAX` are stored as `i64::MAX`).
    Int64,
    /// Any value, stored as its JSON text in a text column.
    Json,
}

/// One column after the `id` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The column's name, which is also the key of the row's serialised map.
    pub name: &'static str,
    /// Its type.
    pub kind: ColumnKind,
}

impl Column {
    /// A text column.
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            kind: ColumnKind::Text,
        }
    }

    /// A 64-bit integer column.
    pub const fn int64(name: &'static str) -> Self {
        Self {
            name,
            kind: ColumnKind::Int64,
        }
    }

    /// A column holding JSON text.
    pub const fn json(name: &'static str) -> Self {
        Self {
            name,
            kind: ColumnKind::Json,
        }
    }
}

/// One step of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creates the table (if missing) with the `id` key and these columns.
    CreateTable(&'static [Column]),
    /// Adds a column to the table. It needs a default for the rows already there, so
    /// it is created `NOT NULL DEFAULT` the kind's zero (`''` or `0`).
    AddColumn(Column),
    /// Creates an index (if missing) named `name` on `columns`.
    CreateIndex {
        /// The index's name.
        name: &'static str,
        /// The indexed columns, in order.
        columns: &'static [&'static str],
    },
}

/// The steps that take a table from `version - 1` to `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// 1 for the table's creation, then 2, 3 ...
    pub version: u32,
    /// What to run, in order, in one transaction with the version update.
    pub steps: &'static [Step],
}

/// A record type's table: what [`super::Record::TABLE`] declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table's name.
    pub name: &'static str,
    /// The columns after `id`, in table order: what every row carries.
    pub columns: &'static [Column],
    /// From version 1 up, without gaps; together they must create exactly `columns`.
    pub migrations: &'static [Migration],
    /// The column that names a record in log lines (`call_id`).
    pub key: &'static str,
    /// What log lines call several keys (`call-ids`).
    pub keys_in_logs: &'static str,
}

impl Table {
    /// The newest schema version.
    pub fn version(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    /// Checks that the migrations are numbered 1, 2, ... and end with exactly
    /// [`Table::columns`], and that the key is a column: a programming error in a record
    /// type is reported once, at open, instead of as failing inserts.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |detail: String| StoreError::Schema {
            table: self.name.to_owned(),
            detail,
        };
        let mut built: Vec<Column> = Vec::new();
        for (i, m) in self.migrations.iter().enumerate() {
            if usize::try_from(m.version).ok() != Some(i + 1) {
                return Err(bad(format!(
                    "migration {} is numbered {} (migrations count 1, 2, 3 ...)",
                    i + 1,
                    m.version
                )));
            }
            for step in m.steps {
                match step {
                    Step::CreateTable(columns) => built.extend_from_slice(columns),
                    Step::AddColumn(c) => built.push(*c),
                    Step::CreateIndex { .. } => {}
                }
            }
        }
        if built != self.columns {
            return Err(bad(format!(
                "the migrations create the columns {:?}, the record declares {:?}",
                built.iter().map(|c| c.name).collect::<Vec<_>>(),
                self.columns.iter().map(|c| c.name).collect::<Vec<_>>()
            )));
        }
        if !self.columns.iter().any(|c| c.name == self.key) {
            return Err(bad(format!("the key column {} is not a column", self.key)));
        }
        Ok(())
    }

    /// The column holding the whole record as JSON, from which records are read back.
    pub(crate) fn json_column(&self) -> Option<&'static str> {
        self.columns
            .iter()
            .find(|c| c.kind == ColumnKind::Json)
            .map(|c| c.name)
    }
}

/// The SQL differences between the back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.24 or later.
    Sqlite,
    /// PostgreSQL 10 or later.
    Postgres,
}

impl Dialect {
    fn id_column(self) -> &'static str {
        match self {
            Self::Sqlite => "id INTEGER PRIMARY KEY",
            Self::Postgres => "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        }
    }

    fn int64(self) -> &'static str {
        match self {
            Self::Sqlite => "INTEGER",
            Self::Postgres => "BIGINT",
        }
    }

    fn sql_type(self, kind: ColumnKind) -> &'static str {
        match kind {
            ColumnKind::Text | ColumnKind::Json => "TEXT",
            ColumnKind::Int64 => self.int64(),
        }
    }

    /// The statements of one migration, each ending with `;`, one after the other.
    pub fn migration_sql(self, table: &str, migration: &Migration) -> String {
        let statements: Vec<String> = migration
            .steps
            .iter()
            .map(|step| match step {
                Step::CreateTable(columns) => {
                    let columns: Vec<String> = columns
                        .iter()
                        .map(|c| format!("    {} {} NOT NULL", c.name, self.sql_type(c.kind)))
                        .collect();
                    format!(
                        "CREATE TABLE IF NOT EXISTS {table} (\n    {},\n{}\n);",
                        self.id_column(),
                        columns.join(",\n")
                    )
                }
                Step::AddColumn(c) => {
                    let zero = match c.kind {
                        ColumnKind::Text | ColumnKind::Json => "''",
                        ColumnKind::Int64 => "0",
                    };
                    format!(
                        "ALTER TABLE {table} ADD COLUMN {} {} NOT NULL DEFAULT {zero};",
                        c.name,
                        self.sql_type(c.kind)
                    )
                }
                Step::CreateIndex { name, columns } => format!(
                    "CREATE INDEX IF NOT EXISTS {name} ON {table} ({});",
                    columns.join(", ")
                ),
            })
            .collect();
        statements.join("\n")
    }

    /// Every migration from version 1, as one script: the schema a new database gets.
    pub fn schema_sql(self, table: &Table) -> String {
        let parts: Vec<String> = table
            .migrations
            .iter()
            .map(|m| self.migration_sql(table.name, m))
            .collect();
        parts.join("\n")
    }

    /// The versions table, created when missing.
    pub(crate) fn versions_table_sql(self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (\n    table_name TEXT PRIMARY KEY,\n    version {} NOT NULL\n);",
            self.int64()
        )
    }

    /// Sets a table's version (`$1` the table, `$2` the version); the syntax is the
    /// same in both back ends.
    pub(crate) fn set_version_sql(self) -> String {
        format!(
            "INSERT INTO {VERSIONS_TABLE} (table_name, version) VALUES ($1, $2) \
             ON CONFLICT (table_name) DO UPDATE SET version = excluded.version"
        )
    }

    /// Reads a table's version (`$1` the table).
    pub(crate) fn get_version_sql(self) -> String {
        format!("SELECT version FROM {VERSIONS_TABLE} WHERE table_name = $1")
    }
}

/// The `INSERT` of one row, with placeholders `$1`..`$N` (PostgreSQL's form; SQLite
/// binds `$N` names by position of first use, which is the same order).
pub fn insert_sql(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let params: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        names.join(", "),
        params.join(", ")
    )
}

/// The migrations a table at `from` still needs, or an error when the database is
/// newer than this program.
pub(crate) fn pending_migrations(
    table: &Table,
    from: i64,
) -> Result<&'static [Migration], StoreError> {
    let newest = i64::from(table.version());
    if from > newest {
        return Err(StoreError::Schema {
            table: table.name.to_owned(),
            detail: format!(
                "the database is at schema version {from}, newer than this mediagate knows ({newest}); run a mediagate at least as new as the one that wrote it"
            ),
        });
    }
    let done = usize::try_from(from.max(0)).unwrap_or(0);
    Ok(table.migrations.get(done..).unwrap_or(&[]))
}
