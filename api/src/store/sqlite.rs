//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`,
//! so a write that returned has reached the disk and survives `kill -9`.
//! Tables: `kv` (current keys), `log` (history for watches, trimmed to the
//! last [`HISTORY_REVISIONS`]), `leases`, and `meta` (revision counters).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::{
    Compare, Event, KeyValue, LeaseId, Op, Range, Result, Revision, Store, StoreError, TxnResult,
    Watch,
};

/// How many revisions of history watches can replay.
pub const HISTORY_REVISIONS: i64 = 10_000;
/// How often expired leases are swept.
const LEASE_SWEEP: Duration = Duration::from_millis(250);
/// Live events buffered per watcher before it counts as lagging.
const WATCH_BUFFER: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL,
    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, lease INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL, idx INTEGER NOT NULL, key TEXT NOT NULL,
    value BLOB, create_rev INTEGER, lease INTEGER,
    PRIMARY KEY (rev, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ttl_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL
);
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Inner {
    conn: Mutex<Connection>,
    /// Each committed transaction's events, sent while the connection is
    /// still locked so watchers see commits in order.
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The SQLite-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`. Inside a Tokio
    /// runtime it also starts the lease sweeper.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let store = SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                events,
            }),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&store.inner);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_SWEEP).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let store = SqliteStore { inner };
                    if let Err(e) = store.blocking(sweep_leases).await {
                        warn!(error = %e, "lease sweep");
                    }
                }
            });
        }
        Ok(store)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("store task: {e}")))?
    }
}

fn meta(tx: &Connection, name: &str) -> Result<i64> {
    tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(backend)
}

fn kv_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        lease: r.get(4)?,
    })
}

/// Upper bound for keys starting with `prefix` (exclusive), or none.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Rows to ask for: one more than `limit`, to learn whether more remain.
fn fetch(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Runs a range query fetching `limit + 1` rows and returns one page.
fn page(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    limit: usize,
    revision: Revision,
) -> Result<Range> {
    let mut stmt = conn.prepare(sql).map_err(backend)?;
    let mut kvs = stmt
        .query_map(params, kv_from_row)
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    let more = kvs.len() > limit;
    kvs.truncate(limit);
    Ok(Range {
        kvs,
        more,
        revision,
    })
}

/// Runs a transaction on a locked connection and publishes its events.
fn apply(
    inner: &Inner,
    conn: &mut Connection,
    compares: &[Compare],
    ops: &[Op],
) -> Result<TxnResult> {
    let tx = conn.transaction().map_err(backend)?;
    let current = meta(&tx, "revision")?;
    for c in compares {
        let Compare::ModRevision(key, want) = c;
        let have: Option<i64> = tx
            .query_row("SELECT mod_rev FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if have.unwrap_or(0) != *want {
            return Ok(TxnResult {
                succeeded: false,
                revision: current,
            });
        }
    }
    if ops.is_empty() {
        return Ok(TxnResult {
            succeeded: true,
            revision: current,
        });
    }
    let rev = current + 1;
    let events = write_ops(&tx, rev, ops)?;
    tx.execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", [rev])
        .map_err(backend)?;
    if rev % 1000 == 0 {
        let floor = rev - HISTORY_REVISIONS;
        tx.execute("DELETE FROM log WHERE rev <= ?1", [floor])
            .map_err(backend)?;
        tx.execute(
            "UPDATE meta SET value = MAX(value, ?1) WHERE name = 'compacted'",
            [floor],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    if !events.is_empty() {
        // No receivers is fine.
        let _ = inner.events.send(Arc::new(events));
    }
    Ok(TxnResult {
        succeeded: true,
        revision: rev,
    })
}

fn write_ops(tx: &Transaction<'_>, rev: Revision, ops: &[Op]) -> Result<Vec<Event>> {
    let mut events = Vec::with_capacity(ops.len());
    for (idx, op) in ops.iter().enumerate() {
        match op {
            Op::Put { key, value, lease } => {
                if let Some(id) = lease {
                    let known: Option<i64> = tx
                        .query_row("SELECT id FROM leases WHERE id = ?1", [id], |r| r.get(0))
                        .optional()
                        .map_err(backend)?;
                    if known.is_none() {
                        return Err(StoreError::NoLease(*id));
                    }
                }
                let created: Option<i64> = tx
                    .query_row("SELECT create_rev FROM kv WHERE key = ?1", [key], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(backend)?;
                let create_rev = created.unwrap_or(rev);
                tx.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key, value, create_rev, rev, lease],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO log VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![rev, idx as i64, key, value, create_rev, lease],
                )
                .map_err(backend)?;
                events.push(Event::Put(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: create_rev,
                    mod_revision: rev,
                    lease: *lease,
                }));
            }
            Op::Delete { key } => {
                let gone = tx
                    .execute("DELETE FROM kv WHERE key = ?1", [key])
                    .map_err(backend)?;
                if gone > 0 {
                    tx.execute(
                        "INSERT INTO log (rev, idx, key) VALUES (?1, ?2, ?3)",
                        params![rev, idx as i64, key],
                    )
                    .map_err(backend)?;
                    events.push(Event::Delete {
                        key: key.clone(),
                        revision: rev,
                    });
                }
            }
        }
    }
    Ok(events)
}

/// Deletes `lease` and its keys in one transaction.
fn revoke(inner: &Inner, conn: &mut Connection, lease: LeaseId) -> Result<bool> {
    let keys: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")
            .map_err(backend)?;
        let rows = stmt.query_map([lease], |r| r.get(0)).map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    // Keys first: a crash in between leaves a lease without keys, which
    // the next sweep removes, never keys without their lease.
    let ops: Vec<Op> = keys.into_iter().map(|key| Op::Delete { key }).collect();
    apply(inner, conn, &[], &ops)?;
    let existed = conn
        .execute("DELETE FROM leases WHERE id = ?1", [lease])
        .map_err(backend)?
        > 0;
    Ok(existed)
}

fn sweep_leases(inner: &Inner) -> Result<()> {
    let mut conn = inner.lock();
    let expired: Vec<LeaseId> = {
        let mut stmt = conn
            .prepare("SELECT id FROM leases WHERE expires_ms <= ?1")
            .map_err(backend)?;
        let rows = stmt.query_map([now_ms()], |r| r.get(0)).map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    for id in expired {
        revoke(inner, &mut conn, id)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner
                .lock()
                .query_row(
                    "SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?1",
                    [key],
                    kv_from_row,
                )
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Range> {
        let prefix = prefix.to_string();
        let after = start_after.map(str::to_string);
        self.blocking(move |inner| {
            let conn = inner.lock();
            let revision = meta(&conn, "revision")?;
            let lower = after.unwrap_or_default();
            let upper = prefix_end(&prefix);
            page(
                &conn,
                "SELECT key, value, create_rev, mod_rev, lease FROM kv
                 WHERE key >= ?1 AND key > ?2 AND (?3 IS NULL OR key < ?3)
                 ORDER BY key LIMIT ?4",
                params![prefix, lower, upper, fetch(limit)],
                limit,
                revision,
            )
        })
        .await
    }

    async fn range_rev(
        &self,
        prefix: &str,
        end_before: Option<&str>,
        limit: usize,
    ) -> Result<Range> {
        let prefix = prefix.to_string();
        let before = end_before.map(str::to_string);
        self.blocking(move |inner| {
            let conn = inner.lock();
            let revision = meta(&conn, "revision")?;
            let upper = match (before, prefix_end(&prefix)) {
                (Some(b), Some(end)) => Some(b.min(end)),
                (b, end) => b.or(end),
            };
            page(
                &conn,
                "SELECT key, value, create_rev, mod_rev, lease FROM kv
                 WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)
                 ORDER BY key DESC LIMIT ?3",
                params![prefix, upper, fetch(limit)],
                limit,
                revision,
            )
        })
        .await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult> {
        self.blocking(move |inner| {
            let mut conn = inner.lock();
            apply(inner, &mut conn, &compares, &ops)
        })
        .await
    }

    async fn revision(&self) -> Result<Revision> {
        self.blocking(|inner| meta(&inner.lock(), "revision")).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        let prefix = prefix.to_string();
        let wanted = prefix.clone();
        // Subscribe and read history under the lock: no commit can fall
        // between the two.
        let (history, mut live, at) = self
            .blocking(move |inner| {
                let conn = inner.lock();
                let live = inner.events.subscribe();
                let at = meta(&conn, "revision")?;
                if from <= 0 || from > at {
                    return Ok((Vec::new(), live, at));
                }
                if from <= meta(&conn, "compacted")? {
                    return Err(StoreError::Compacted(from));
                }
                let mut stmt = conn
                    .prepare(
                        "SELECT rev, key, value, create_rev, lease FROM log
                         WHERE rev >= ?1 AND substr(key, 1, length(?2)) = ?2
                         ORDER BY rev, idx",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![from, prefix], |r| {
                        let rev: i64 = r.get(0)?;
                        let key: String = r.get(1)?;
                        let value: Option<Vec<u8>> = r.get(2)?;
                        Ok(match value {
                            Some(value) => Event::Put(KeyValue {
                                key,
                                value,
                                create_revision: r.get(3)?,
                                mod_revision: rev,
                                lease: r.get(4)?,
                            }),
                            None => Event::Delete { key, revision: rev },
                        })
                    })
                    .map_err(backend)?;
                let history = rows
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?;
                Ok((history, live, at))
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            for ev in history {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(batch) => {
                        for ev in batch.iter() {
                            let fresh = ev.revision() > at && ev.key().starts_with(&wanted);
                            if fresh && tx.send(Ok(ev.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(Err(StoreError::Lagged)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Watch { rx })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.blocking(move |inner| {
            let conn = inner.lock();
            conn.execute(
                "INSERT INTO leases (ttl_ms, expires_ms) VALUES (?1, ?2)",
                params![ttl_ms, now_ms().saturating_add(ttl_ms)],
            )
            .map_err(backend)?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.blocking(move |inner| {
            let n = inner
                .lock()
                .execute(
                    "UPDATE leases SET expires_ms = ?1 + ttl_ms WHERE id = ?2",
                    params![now_ms(), lease],
                )
                .map_err(backend)?;
            if n == 0 {
                Err(StoreError::NoLease(lease))
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.blocking(move |inner| {
            let mut conn = inner.lock();
            if revoke(inner, &mut conn, lease)? {
                Ok(())
            } else {
                Err(StoreError::NoLease(lease))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            lease: None,
        }
    }

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.put("/a", b"1".to_vec()).await.unwrap(), 1);
            assert_eq!(s.put("/a", b"2".to_vec()).await.unwrap(), 2);
            s.put("/b", b"3".to_vec()).await.unwrap();
            s.delete("/b").await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let a = s.get("/a").await.unwrap().unwrap();
        assert_eq!(
            (a.value, a.create_revision, a.mod_revision),
            (b"2".to_vec(), 1, 2)
        );
        assert_eq!(s.get("/b").await.unwrap(), None);
        assert_eq!(s.revision().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn ranges_are_ordered_prefixed_and_paged() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let ops = ["/r/c", "/r/a", "/r/b", "/q/x", "/rz"]
            .iter()
            .map(|k| put(k, k))
            .collect();
        s.txn(Vec::new(), ops).await.unwrap();
        let page = s.range("/r/", None, 2).await.unwrap();
        let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!((keys, page.more), (vec!["/r/a", "/r/b"], true));
        let page = s.range("/r/", Some("/r/b"), 2).await.unwrap();
        let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!((keys, page.more), (vec!["/r/c"], false));
        assert_eq!(page.revision, 1, "one transaction, one revision");
        let page = s.range_rev("/r/", None, 2).await.unwrap();
        let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!((keys, page.more), (vec!["/r/c", "/r/b"], true));
        let page = s.range_rev("/r/", Some("/r/b"), 2).await.unwrap();
        let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!((keys, page.more), (vec!["/r/a"], false));
    }

    #[tokio::test]
    async fn compare_guards_the_whole_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        // Create-if-absent succeeds once.
        let create = || {
            (
                vec![Compare::ModRevision("/k".into(), 0)],
                vec![put("/k", "v1"), put("/idx", "k")],
            )
        };
        let (c, o) = create();
        assert!(s.txn(c, o).await.unwrap().succeeded);
        let (c, o) = create();
        let r = s.txn(c, o).await.unwrap();
        assert!(!r.succeeded);
        assert_eq!(r.revision, 1, "a failed txn writes nothing");
        // Update guarded by the revision read.
        let kv = s.get("/k").await.unwrap().unwrap();
        let upd = s
            .txn(
                vec![Compare::ModRevision("/k".into(), kv.mod_revision)],
                vec![put("/k", "v2")],
            )
            .await
            .unwrap();
        assert!(upd.succeeded);
        let stale = s
            .txn(
                vec![Compare::ModRevision("/k".into(), kv.mod_revision)],
                vec![put("/k", "v3")],
            )
            .await
            .unwrap();
        assert!(!stale.succeeded);
        assert_eq!(s.get("/k").await.unwrap().unwrap().value, b"v2");
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        s.put("/w/1", b"a".to_vec()).await.unwrap();
        s.put("/other", b"x".to_vec()).await.unwrap();
        s.put("/w/2", b"b".to_vec()).await.unwrap();
        let mut w = s.watch("/w/", 1).await.unwrap();
        s.delete("/w/1").await.unwrap();
        s.put("/w/3", b"c".to_vec()).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.push((
                ev.key().to_string(),
                ev.revision(),
                matches!(ev, Event::Put(_)),
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("/w/1".into(), 1, true),
                ("/w/2".into(), 3, true),
                ("/w/1".into(), 4, false),
                ("/w/3".into(), 5, true),
            ]
        );
    }

    #[tokio::test]
    async fn keys_of_an_expired_lease_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let lease = s.grant_lease(Duration::from_millis(300)).await.unwrap();
        let op = Op::Put {
            key: "/sessions/a".into(),
            value: b"edge-1".to_vec(),
            lease: Some(lease),
        };
        s.txn(Vec::new(), vec![op]).await.unwrap();
        let mut w = s.watch("/sessions/", 0).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(ev, Event::Delete { ref key, .. } if key == "/sessions/a"));
        assert_eq!(s.get("/sessions/a").await.unwrap(), None);
        assert!(matches!(
            s.keep_alive(lease).await,
            Err(StoreError::NoLease(_))
        ));
        let bad = Op::Put {
            key: "/x".into(),
            value: Vec::new(),
            lease: Some(lease),
        };
        assert!(matches!(
            s.txn(Vec::new(), vec![bad]).await,
            Err(StoreError::NoLease(_))
        ));
    }
}
