//! Where the control plane keeps its resources. The trait is shaped like
//! etcd's KV API so a fleet can run on etcd: ordered string keys, one global
//! revision bumped by every write, all-or-nothing transactions guarded by
//! compare clauses, watches that replay from a revision, and leases whose
//! keys vanish when they expire. [`sqlite::SqliteStore`] is the embedded
//! default.

pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

/// A point in the store's history; every committed transaction adds one.
pub type Revision = i64;
/// A lease keys can be attached to.
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key.
    pub create_revision: Revision,
    /// Revision of its last change.
    pub mod_revision: Revision,
    pub lease: Option<LeaseId>,
}

/// One change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    Delete { key: String, revision: Revision },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// A transaction's guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod_revision equals this; 0 means "the key does not exist".
    ModRevision(String, Revision),
}

/// A transaction's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// False when a compare failed; nothing was written then.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: Revision,
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<KeyValue>,
    /// Whether keys after the last one returned remain.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    /// History before this revision is gone: re-read, then watch again.
    #[error("revision {0} has been compacted")]
    Compacted(Revision),
    #[error("lease {0} does not exist")]
    NoLease(LeaseId),
    /// A watcher fell too far behind the live stream.
    #[error("watch fell behind; re-read and watch again")]
    Lagged,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Ordered key-value storage with revisions, watches and leases.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in order, after `start_after` if given,
    /// at most `limit`.
    async fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Range>;

    /// Keys starting with `prefix`, in reverse order, before `end_before`
    /// if given, at most `limit` (`more`: keys before the last one remain).
    /// Lists page newest first this way, since ids sort by creation time.
    async fn range_rev(
        &self,
        prefix: &str,
        end_before: Option<&str>,
        limit: usize,
    ) -> Result<Range>;

    /// Applies `ops` atomically if every compare holds.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult>;

    /// The current revision.
    async fn revision(&self) -> Result<Revision>;

    /// Events for keys under `prefix` from revision `from` (inclusive) on:
    /// stored history first, then live changes.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch>;

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    /// Ends a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease: None,
        };
        Ok(self.txn(Vec::new(), vec![op]).await?.revision)
    }

    async fn delete(&self, key: &str) -> Result<Revision> {
        let op = Op::Delete {
            key: key.to_string(),
        };
        Ok(self.txn(Vec::new(), vec![op]).await?.revision)
    }
}

/// A stream of events; see [`Store::watch`].
pub struct Watch {
    pub(crate) rx: tokio::sync::mpsc::Receiver<Result<Event>>,
}

impl Watch {
    /// The next event; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Result<Event>> {
        self.rx.try_recv().ok()
    }
}
