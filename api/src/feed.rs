//! Config push: reads every stored resource, compiles the
//! [`ControlConfig`] an edge serves, then follows the store's watch and
//! recompiles after each burst of changes. The callback swaps the result
//! in at the edge; nothing is restarted.

use std::sync::Arc;
use std::time::Duration;

use gangway_config::control::{ControlConfig, Resources};
use gangway_config::resources::{
    ApiKey, CertificateAuthority, CloudEndpoint, Credential, HttpsEdge, HttpsEdgeRoute, IpPolicy,
    IpPolicyRule, ReservedAddr, ReservedDomain, TcpEdge, TlsCertificate, TlsEdge,
    TunnelGroupBackend,
};
use serde::de::DeserializeOwned;

use crate::resources::routes::ROUTE_KIND;
use crate::resources::Resource;
use crate::store::{Event, Revision, Store, StoreError};

const PREFIX: &str = "/r/";

/// Receives each newly compiled config.
pub type Apply = Arc<dyn Fn(Arc<ControlConfig>) + Send + Sync>;

/// Loads the current config, hands it to `apply`, and keeps doing so on
/// every change until the store goes away. Returns the first config once
/// it is applied, so a server can wait for it before accepting agents.
pub async fn start(store: Arc<dyn Store>, apply: Apply) -> Result<Arc<ControlConfig>, StoreError> {
    let (res, rev) = load(store.as_ref()).await?;
    let first = Arc::new(ControlConfig::compile(&res, rev));
    apply(first.clone());
    tokio::spawn(follow(store, apply, res, rev));
    Ok(first)
}

async fn follow(store: Arc<dyn Store>, apply: Apply, mut res: Resources, mut rev: Revision) {
    loop {
        let mut watch = match store.watch(PREFIX, rev + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "config watch failed; reloading");
                tokio::time::sleep(Duration::from_millis(200)).await;
                match load(store.as_ref()).await {
                    Ok((r, v)) => {
                        (res, rev) = (r, v);
                        apply(Arc::new(ControlConfig::compile(&res, rev)));
                    }
                    Err(e) => tracing::error!(error = %e, "reloading config"),
                }
                continue;
            }
        };
        loop {
            let Some(first) = watch.next().await else {
                return; // store closed
            };
            let mut failed = false;
            let mut ev = Some(first);
            // Apply the whole burst, then compile once.
            while let Some(e) = ev.take() {
                match e {
                    Ok(e) => {
                        rev = rev.max(e.revision());
                        apply_event(&mut res, &e);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "config watch interrupted; reloading");
                        failed = true;
                        break;
                    }
                }
                ev = watch.try_next();
            }
            if failed {
                match load(store.as_ref()).await {
                    Ok((r, v)) => (res, rev) = (r, v),
                    Err(e) => {
                        tracing::error!(error = %e, "reloading config");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                apply(Arc::new(ControlConfig::compile(&res, rev)));
                break;
            }
            apply(Arc::new(ControlConfig::compile(&res, rev)));
        }
    }
}

/// Every resource under `/r/`, and the revision it was read at.
pub async fn load(store: &dyn Store) -> Result<(Resources, Revision), StoreError> {
    let mut res = Resources::default();
    let mut after: Option<String> = None;
    let mut revision = None;
    loop {
        let page = store.range(PREFIX, after.as_deref(), 1000).await?;
        revision.get_or_insert(page.revision);
        for kv in &page.kvs {
            put(&mut res, &kv.key, &kv.value);
        }
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    Ok((res, revision.unwrap_or(0)))
}

fn apply_event(res: &mut Resources, e: &Event) {
    match e {
        Event::Put(kv) => put(res, &kv.key, &kv.value),
        Event::Delete { key, .. } => delete(res, key),
    }
}

/// `/r/<kind>/…/<id>` → (kind, id).
fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (kind, tail) = rest.split_once('/')?;
    Some((kind, tail.rsplit('/').next().unwrap_or(tail)))
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(%key, error = %e, "skipping a stored resource that does not decode");
            None
        }
    }
}

fn put(res: &mut Resources, key: &str, value: &[u8]) {
    let Some((kind, id)) = split(key) else { return };
    let id = id.to_string();
    macro_rules! put_into {
        ($map:ident) => {
            if let Some(v) = decode(key, value) {
                res.$map.insert(id, v);
            }
        };
    }
    match kind {
        k if k == ApiKey::KIND.store => put_into!(api_keys),
        k if k == Credential::KIND.store => put_into!(credentials),
        k if k == ReservedDomain::KIND.store => put_into!(reserved_domains),
        k if k == ReservedAddr::KIND.store => put_into!(reserved_addrs),
        k if k == IpPolicy::KIND.store => put_into!(ip_policies),
        k if k == IpPolicyRule::KIND.store => put_into!(ip_policy_rules),
        k if k == TunnelGroupBackend::KIND.store => put_into!(tunnel_groups),
        k if k == HttpsEdge::KIND.store => put_into!(https_edges),
        k if k == TcpEdge::KIND.store => put_into!(tcp_edges),
        k if k == TlsEdge::KIND.store => put_into!(tls_edges),
        k if k == CertificateAuthority::KIND.store => put_into!(certificate_authorities),
        k if k == TlsCertificate::KIND.store => put_into!(tls_certificates),
        k if k == CloudEndpoint::KIND.store => put_into!(cloud_endpoints),
        k if k == ROUTE_KIND.store => {
            if let Some(v) = decode::<HttpsEdgeRoute>(key, value) {
                res.https_routes.insert(id, v);
            }
        }
        _ => {}
    }
}

fn delete(res: &mut Resources, key: &str) {
    let Some((kind, id)) = split(key) else { return };
    match kind {
        k if k == ApiKey::KIND.store => drop(res.api_keys.remove(id)),
        k if k == Credential::KIND.store => drop(res.credentials.remove(id)),
        k if k == ReservedDomain::KIND.store => drop(res.reserved_domains.remove(id)),
        k if k == ReservedAddr::KIND.store => drop(res.reserved_addrs.remove(id)),
        k if k == IpPolicy::KIND.store => drop(res.ip_policies.remove(id)),
        k if k == IpPolicyRule::KIND.store => drop(res.ip_policy_rules.remove(id)),
        k if k == TunnelGroupBackend::KIND.store => drop(res.tunnel_groups.remove(id)),
        k if k == HttpsEdge::KIND.store => drop(res.https_edges.remove(id)),
        k if k == TcpEdge::KIND.store => drop(res.tcp_edges.remove(id)),
        k if k == TlsEdge::KIND.store => drop(res.tls_edges.remove(id)),
        k if k == CertificateAuthority::KIND.store => drop(res.certificate_authorities.remove(id)),
        k if k == TlsCertificate::KIND.store => drop(res.tls_certificates.remove(id)),
        k if k == CloudEndpoint::KIND.store => drop(res.cloud_endpoints.remove(id)),
        k if k == ROUTE_KIND.store => drop(res.https_routes.remove(id)),
        _ => {}
    }
}
