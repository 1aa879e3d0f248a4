//! The TCP listeners of TCP endpoints and TCP edges, kept equal to the
//! ports the bindings want. Sockets are bound here, never under the
//! registry's state lock; one listener per port serves whatever the route
//! table says is on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::events::Events;
use crate::route_table::RouteTable;

/// Bound TCP listeners by port.
pub struct TcpListeners {
    ip: IpAddr,
    table: Arc<ArcSwap<RouteTable>>,
    events: Events,
    /// Dropping a guard stops its listener and frees the port.
    bound: Mutex<BTreeMap<u16, DropGuard>>,
}

/// The listeners' lock, held by whoever changes which ports are wanted
/// (so that a reconcile never drops a port another change just bound).
pub struct Held<'a> {
    owner: &'a TcpListeners,
    bound: MutexGuard<'a, BTreeMap<u16, DropGuard>>,
}

impl TcpListeners {
    pub fn new(ip: IpAddr, table: Arc<ArcSwap<RouteTable>>, events: Events) -> Self {
        TcpListeners {
            ip,
            table,
            events,
            bound: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn hold(&self) -> Held<'_> {
        Held {
            owner: self,
            bound: self.bound.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

impl Held<'_> {
    pub fn is_bound(&self, port: u16) -> bool {
        self.bound.contains_key(&port)
    }

    /// Listens on `port` unless a listener already does; false if the
    /// port cannot be bound (in use by something else).
    pub fn listen(&mut self, port: u16) -> bool {
        if self.bound.contains_key(&port) {
            return true;
        }
        let Some(listener) = bind_port(self.owner.ip, port) else {
            return false;
        };
        let cancel = CancellationToken::new();
        tokio::spawn(crate::tcp_listener::serve(
            listener,
            port,
            self.owner.table.clone(),
            self.owner.events.clone(),
            cancel.clone(),
        ));
        self.bound.insert(port, cancel.drop_guard());
        true
    }

    /// Listens on a free port of `range`, starting at a random one and
    /// skipping `taken` and what `reserved` says; `None` when none is left.
    pub fn listen_on_free(
        &mut self,
        range: &RangeInclusive<u16>,
        taken: &BTreeSet<u16>,
        reserved: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        let (first, last) = (*range.start(), *range.end());
        let span = u32::from(last - first) + 1;
        let offset = rand::random::<u32>() % span;
        for i in 0..span {
            let port = first + ((offset + i) % span) as u16;
            let free = !taken.contains(&port) && !self.bound.contains_key(&port);
            if free && !reserved(port) && self.listen(port) {
                return Some(port);
            }
        }
        None
    }

    /// Stops listeners on ports no longer `wanted` and starts the missing
    /// ones; a port that cannot be bound now is retried on the next
    /// change.
    pub fn reconcile(&mut self, wanted: &BTreeSet<u16>) {
        self.bound.retain(|p, _| wanted.contains(p));
        for &port in wanted {
            if !self.listen(port) {
                tracing::warn!(
                    port,
                    "cannot listen on a TCP port; retrying on the next change"
                );
            }
        }
    }
}

/// Binds `ip:port` now, so "in use" is known at bind time, not later.
fn bind_port(ip: IpAddr, port: u16) -> Option<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, port)).ok()?;
    l.set_nonblocking(true).ok()?;
    Some(l)
}
