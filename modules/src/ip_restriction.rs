//! `ip_restriction`: the layer-4 source address against one allow/deny
//! set (never X-Forwarded-For, which the client controls).

use gangway_config::control::IpSet;

use crate::chain::{ConnInfo, Cx, Flow, RouteModule, Stage};
use crate::decisions::Access;
use crate::refusal::Refusal;

#[derive(Debug, Clone)]
pub struct IpRestriction {
    set: IpSet,
}

impl IpRestriction {
    pub fn new(set: IpSet) -> Self {
        IpRestriction { set }
    }

    /// Whether a connection from `conn` may be served. No known source
    /// (a Unix socket, say) is blocked: the policy cannot be checked.
    pub fn admits(&self, conn: &ConnInfo) -> bool {
        self.set.admits(conn.client.map(|c| c.ip()))
    }
}

impl RouteModule for IpRestriction {
    fn stage(&self) -> Stage {
        Stage::IpRestriction
    }

    type State = ();

    fn on_connect(&self, conn: &ConnInfo, cx: Cx<'_, ()>) -> Flow {
        if self.admits(conn) {
            cx.facts.decisions.ip_policy = Some(Access::Allow);
            return Flow::Continue;
        }
        cx.facts.decisions.ip_policy = Some(Access::Block);
        Flow::Refuse(Refusal::IpBlocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::TestCx;

    fn conn(ip: &str) -> ConnInfo {
        ConnInfo {
            client: Some(format!("{ip}:1234").parse().unwrap()),
            ..ConnInfo::default()
        }
    }

    fn v6(ip: &str) -> ConnInfo {
        ConnInfo {
            client: Some(format!("[{ip}]:1234").parse().unwrap()),
            ..ConnInfo::default()
        }
    }

    #[test]
    fn deny_wins_over_allow_on_v4_and_v6() {
        let set = IpSet::from_cidrs(
            &["10.0.0.0/8".into(), "2001:db8::/32".into()],
            &["10.1.0.0/16".into(), "2001:db8:bad::/48".into()],
        )
        .unwrap();
        let m = IpRestriction::new(set);
        let mut t = TestCx::default();
        assert_eq!(m.on_connect(&conn("10.2.3.4"), t.cx()), Flow::Continue);
        assert_eq!(t.facts.decisions.ip_policy, Some(Access::Allow));
        assert_eq!(
            m.on_connect(&conn("10.1.3.4"), t.cx()),
            Flow::Refuse(Refusal::IpBlocked)
        );
        assert_eq!(t.facts.decisions.ip_policy, Some(Access::Block));
        assert!(m.admits(&v6("2001:db8:1::1")));
        assert!(!m.admits(&v6("2001:db8:bad::1")));
        assert!(
            !m.admits(&conn("192.168.0.1")),
            "matching nothing is blocked"
        );
        assert!(
            m.admits(&v6("::ffff:10.2.3.4")),
            "mapped v4 is matched as v4"
        );
        assert!(!m.admits(&ConnInfo::default()));
    }

    #[test]
    fn agent_form_without_allow_list_allows_everything_not_denied() {
        let set = IpSet::from_cidrs(&[], &["127.0.0.1".into()]).unwrap();
        let m = IpRestriction::new(set);
        assert!(!m.admits(&conn("127.0.0.1")));
        assert!(m.admits(&conn("127.0.0.2")));
        let err = IpSet::from_cidrs(&[], &["10.0.0.0/8".into(), "nope".into()]).unwrap_err();
        assert_eq!((err.list, err.index), ("deny_cidrs", 1));
    }
}
