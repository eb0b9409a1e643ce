//! The state database: one SQLite file in `[daemon] state_dir`.
//!
//! It holds what must survive a restart or a crash: the InfluxDB outbox and
//! its dead letters now, alert and report state later. WAL mode, so readers
//! (`pqwatch status`) never block the daemon; `synchronous = FULL`, so a
//! committed batch survives a power cut, not only a process crash.
//!
//! The file is stamped with an application id and a schema version. Opening
//! refuses, with a clear error and without writing anything, a file that is
//! not SQLite, an SQLite file of another application, or a schema newer
//! than this binary knows. Migrations run in one transaction each, from the
//! file's version up to [`SCHEMA_VERSION`]; every read-write open then
//! checkpoints the WAL into the main file, so the schema (and what a
//! crashed run committed) never lives in the `-wal` file alone.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// `PRAGMA application_id`: "pqwa".
const APPLICATION_ID: i32 = 0x7071_7761;

/// The file name inside the state directory.
pub const FILE: &str = "pqwatch.db";

/// Each entry migrates from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the outbox and its dead letters.
    "CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ms  INTEGER NOT NULL,
        points      INTEGER NOT NULL,
        raw_bytes   INTEGER NOT NULL,   -- uncompressed line protocol
        body        BLOB    NOT NULL    -- gzip-compressed line protocol
    );
    CREATE TABLE dead_letter (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ms  INTEGER NOT NULL,
        failed_ms   INTEGER NOT NULL,
        points      INTEGER NOT NULL,
        status      INTEGER NOT NULL,
        message     TEXT    NOT NULL,
        body        BLOB    NOT NULL
    );
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );",
    // 1 → 2: power-quality events.
    "CREATE TABLE events (
        id          TEXT PRIMARY KEY,
        meter       TEXT    NOT NULL,
        customer    TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        phase       TEXT    NOT NULL,
        harmonic    INTEGER NOT NULL,
        open        INTEGER NOT NULL,   -- 1 open, 0 closed
        start_ms    INTEGER NOT NULL,
        end_ms      INTEGER NOT NULL,
        value       REAL    NOT NULL,
        peak        REAL    NOT NULL,
        peak_ms     INTEGER NOT NULL,
        limit_value REAL    NOT NULL,
        unit        TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE INDEX events_open ON events(open, meter);
    CREATE INDEX events_start ON events(start_ms);",
    // 2 → 3: operator e-mail waiting for the SMTP server (`notify::queue`).
    // A row is the finished RFC 5322 message and its envelope; it is deleted
    // once the server accepted it. `failed_ms` is set when the server
    // rejected it for good: kept for inspection, never retried.
    "CREATE TABLE IF NOT EXISTS mail_queue (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ms      INTEGER NOT NULL,
        subject         TEXT    NOT NULL,
        env_from        TEXT    NOT NULL,
        env_to          TEXT    NOT NULL,   -- addresses, one per line
        body            BLOB    NOT NULL,   -- the formatted message
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        failed_ms       INTEGER
    );
    CREATE INDEX IF NOT EXISTS mail_queue_due ON mail_queue(failed_ms, next_attempt_ms);",
    // 3 → 4: every acknowledged delete looks up the oldest remaining batch;
    // without this index that is a scan of the whole outbox (13.9 ms per
    // delete at 10,000 batches: the backlog drain ran at a third of the
    // speed; see BENCHMARKS.md).
    "CREATE INDEX outbox_created ON outbox(created_ms);",
    // 4 → 5: the report ledger (`report::store`): per meter and local day,
    // partial ledgers (one per minute as they come, merged into one row by
    // compaction); the report send log, whose primary key makes a report
    // exactly-once per customer and period (the row is written in the same
    // transaction as the message's mail_queue row); and `meta`, holding when
    // this database started keeping reports (no report is sent for periods
    // that ended before).
    "CREATE TABLE ledger (
        meter   TEXT    NOT NULL,
        day     TEXT    NOT NULL,   -- local date, YYYY-MM-DD
        seq     INTEGER NOT NULL,
        data    BLOB    NOT NULL,   -- report::ledger::DayLedger, encoded
        PRIMARY KEY (meter, day, seq)
    ) WITHOUT ROWID;
    CREATE INDEX ledger_day ON ledger(day);
    CREATE TABLE report_log (
        customer    TEXT    NOT NULL,
        period      TEXT    NOT NULL,   -- label: 2026-10, 2026-W44, 2026-10-05
        from_day    TEXT    NOT NULL,
        to_day      TEXT    NOT NULL,   -- exclusive
        queued_ms   INTEGER NOT NULL,
        mail_id     INTEGER,            -- mail_queue row (gone once sent)
        recipients  TEXT    NOT NULL,
        subject     TEXT    NOT NULL,
        PRIMARY KEY (customer, period)
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta(key, value)
        VALUES ('reports_since_ms', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));",
    // 5 → 6: a report reads one customer's events of one period; without
    // this index every report read every customer's events (24 % of the
    // time of 1,000 monthly reports, BENCHMARKS.md).
    "CREATE INDEX events_customer ON events(customer, start_ms);",
    // 6 → 7: why an event closed when its rule did not close it: a reload
    // removed its meter or customer (`meter_removed`, `customer_removed`)
    // or changed the limits so it is no longer judged (`limits_changed`).
    // NULL for events the rules closed (the supply came back in range).
    "ALTER TABLE events ADD COLUMN close_reason TEXT;",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pqwatch state database ({why}); move it away or set [daemon] state_dir elsewhere — nothing was changed"
    )]
    Foreign { path: PathBuf, why: String },
    #[error(
        "{path} has schema version {found}, newer than this pqwatch knows ({known}); run the newer pqwatch or restore a backup"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// The lock file in the state directory: held (`flock`, exclusive) by the
/// daemon for its whole life, with its pid in it.
pub(crate) const LOCK_FILE: &str = "pqwatch.lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state directory {dir} is in use by another pqwatch (pid {pid}); stop that one, or give this one its own [daemon] state_dir"
    )]
    InUse { dir: PathBuf, pid: String },
    #[error("state directory {dir}: cannot lock {path}: {source}")]
    Io {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on a state directory: one daemon per directory (two
/// would share one outbox and send, delete and count each other's batches).
/// Released when dropped or when the process ends, however it ends.
/// Read-only commands (`status`, `events`, a report preview) do not take it.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    pub(crate) path: PathBuf,
    /// The lock file did not exist before: removed again on drop unless
    /// [`DirLock::keep`] was called, so a start refused on a foreign state
    /// file leaves the directory as it found it.
    created: bool,
    kept: std::sync::atomic::AtomicBool,
}

impl DirLock {
    /// The daemon started on this directory (its state database opened):
    /// the lock file stays after exit.
    pub(crate) fn keep(&self) {
        self.kept.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Removed while still locked (the descriptor closes after this).
        if self.created && !self.kept.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Take the state directory's lock, creating the directory and the lock
/// file if needed, and write our pid into it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        dir: dir.to_path_buf(),
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = match pid.trim() {
                "" => "unknown".to_string(),
                p => p.to_string(),
            };
            return Err(LockError::InUse {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock {
        _file: file,
        path,
        created,
        kept: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Maps an SQLite error to a [`StateError`] naming the file, for code that
/// holds the connection mutably (a transaction) and so cannot call
/// [`StateDb::err`].
pub(crate) fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + Copy + '_ {
    move |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub struct StateDb {
    pub conn: Connection,
    pub path: PathBuf,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish()
    }
}

impl StateDb {
    /// Open (creating if needed) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE);
        let sq = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        // Check an existing file on a read-only connection first: closing a
        // read-write connection to another application's WAL-mode database
        // would checkpoint its WAL into it, changing a file we refuse.
        if path.exists() {
            let ro = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sq)?;
            StateDb {
                conn: ro,
                path: path.clone(),
            }
            .check_identity()?;
        }
        let conn = Connection::open(&path).map_err(sq)?;
        let db = StateDb { conn, path };
        db.check_identity()?;
        db.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| db.err(e))?;
        db.migrate()?;
        db.checkpoint();
        Ok(db)
    }

    /// Copy the WAL into the main file and empty it: after migrations the
    /// schema, and after a crash the rows the previous run committed, are
    /// then in `pqwatch.db` itself, so the main file alone is complete (a
    /// lost or deleted `-wal` file, a backup that copies only the main
    /// file). Busy readers only make it partial; that is not an error.
    fn checkpoint(&self) {
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        match r {
            Ok(0) => {}
            Ok(_) => {
                tracing::debug!(path = %self.path.display(), "WAL checkpoint incomplete (busy)");
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "WAL checkpoint failed");
            }
        }
    }

    /// Open an existing state database read-only (`pqwatch status`).
    pub fn open_readonly(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StateError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let db = StateDb { conn, path };
        db.check_identity()?;
        Ok(db)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StateError {
        sqlite_err(&self.path)(source)
    }

    /// Refuse anything that is not an empty file or our own database.
    fn check_identity(&self) -> Result<(), StateError> {
        let foreign = |why: String| StateError::Foreign {
            path: self.path.clone(),
            why,
        };
        // The first read of a non-SQLite file fails with "file is not a database".
        let app_id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| foreign(e.to_string()))?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| foreign(e.to_string()))?;
        match (app_id, tables) {
            (APPLICATION_ID, _) => Ok(()),
            (0, 0) => Ok(()), // new, empty file
            (0, n) => Err(foreign(format!(
                "an SQLite database with {n} objects of another application"
            ))),
            (other, _) => Err(foreign(format!("application id 0x{other:08x}"))),
        }
    }

    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&self) -> Result<(), StateError> {
        let mut v = self.schema_version()?;
        if v > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        while v < SCHEMA_VERSION {
            let sql = MIGRATIONS[v as usize];
            let next = v + 1;
            let batch = format!(
                "BEGIN IMMEDIATE;
                 {sql}
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {next};
                 COMMIT;"
            );
            if let Err(e) = self.conn.execute_batch(&batch) {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(self.err(e));
            }
            tracing::info!(path = %self.path.display(), from = v, to = next, "state database migrated");
            v = next;
        }
        Ok(())
    }

    /// A persistent counter (dropped points survive restarts for `status`).
    pub(crate) fn add_counter(&self, name: &str, n: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO counters(name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = value + ?2",
                rusqlite::params![name, n],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A value from the `meta` table.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn counter(&self, name: &str) -> Result<i64, StateError> {
        self.conn
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        db.add_counter("x", 2).unwrap();
        db.add_counter("x", 3).unwrap();
        drop(db);
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.counter("x").unwrap(), 5);
        assert_eq!(db.counter("never").unwrap(), 0);
        let ro = StateDb::open_readonly(dir.path()).unwrap();
        assert_eq!(ro.counter("x").unwrap(), 5);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let junk = b"this is a text file, not a database\n".repeat(200);
        std::fs::write(&path, &junk).unwrap();
        let e = StateDb::open(dir.path()).unwrap_err();
        assert!(matches!(e, StateError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), junk, "file untouched");
    }

    #[test]
    fn another_applications_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE invoices(id INTEGER); INSERT INTO invoices VALUES (7);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = StateDb::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("another application"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn one_lock_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        let pid = std::fs::read_to_string(&held.path).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = lock_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "is in use by another pqwatch (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        drop(held);
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "a lock never kept leaves no file behind"
        );
        let again = lock_dir(dir.path()).expect("free again once dropped");
        again.keep();
        drop(again);
        assert!(dir.path().join(LOCK_FILE).exists(), "kept");
        lock_dir(dir.path()).expect("free again");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        }
        let e = StateDb::open(dir.path()).unwrap_err();
        assert!(matches!(e, StateError::TooNew { found: 99, .. }), "{e}");
    }
}
