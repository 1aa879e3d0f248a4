"""The official ngrok API client (PyPI `ngrok-api`) against `gangway server`.

Run by tests/api_client.rs with the server's API URL and key in the
environment. Every call goes through the unmodified client; only its
base_url differs from ngrok's. Exits non-zero on the first failure.
"""

import os
import sys

import ngrok
from ngrok.datatypes import (
    EndpointBackendMutate,
    EndpointCircuitBreaker,
    EndpointCompression,
    EndpointIPPolicyMutate,
    EndpointMutualTLSMutate,
    EndpointRequestHeaders,
    EndpointTLSTermination,
    EndpointTLSTerminationAtEdge,
    EndpointUserAgentFilter,
    EndpointWebhookValidation,
)

client = ngrok.Client(os.environ["GANGWAY_API_KEY"], base_url=os.environ["GANGWAY_API_URL"])
BASE = os.environ["GANGWAY_BASE_DOMAIN"]
PORT = os.environ["GANGWAY_HTTPS_PORT"]


def module(cls, **props):
    return cls(client, props)


def expect_error(code, status, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ngrok.Error as e:
        assert e.error_code == code, (e.error_code, code, str(e))
        assert e.http_status_code == status, (e.http_status_code, status)
        return e
    raise AssertionError(f"expected {code}")


def expect_not_found(fn, *args):
    try:
        fn(*args)
    except ngrok.NotFoundError:
        return
    raise AssertionError("expected 404")


def check_ip_policies():
    made = [client.ip_policies.create(description=f"policy {i}") for i in range(5)]
    # The iterator follows next_page_uri, which must be absolute.
    page = client.ip_policies.list(limit="2")
    assert len(page.ip_policies) == 2 and page.next_page_uri.startswith("http"), page
    seen = [p.id for p in client.ip_policies.list(limit="2")]
    assert len(seen) == len(set(seen)), "pages overlap"
    assert {p.id for p in made} <= set(seen), "pagination lost a policy"
    assert seen == sorted(seen, reverse=True), "lists are newest first"

    p = client.ip_policies.update(made[0].id, description="changed", metadata='{"team":"ops"}')
    assert (p.description, p.metadata) == ("changed", '{"team":"ops"}')
    assert client.ip_policies.get(made[0].id).description == "changed"

    rule = client.ip_policy_rules.create(cidr="10.1.2.3/16", ip_policy_id=made[0].id, action="deny")
    assert (rule.cidr, rule.action, rule.ip_policy.id) == ("10.1.0.0/16", "deny", made[0].id)
    rule = client.ip_policy_rules.update(rule.id, cidr="2001:db8::/48", description="v6")
    assert (rule.cidr, rule.description) == ("2001:db8::/48", "v6")
    assert any(r.id == rule.id for r in client.ip_policy_rules.list())
    e = expect_error("ERR_NGROK_362", 400, client.ip_policy_rules.create,
                     cidr="10.0.0.0/33", ip_policy_id=made[0].id, action="allow")
    assert e.details["field"] == "cidr", e.details
    expect_error("ERR_NGROK_380", 400, client.ip_policy_rules.create,
                 cidr="10.0.0.0/8", ip_policy_id="ipp_" + "0" * 27, action="allow")
    client.ip_policy_rules.delete(rule.id)
    expect_not_found(client.ip_policy_rules.get, rule.id)
    for p in made:
        client.ip_policies.delete(p.id)
    expect_not_found(client.ip_policies.get, made[1].id)
    return made


def check_credentials_and_keys():
    cred = client.credentials.create(description="ci bot", acl=["bind:*.example.com", "bind:app=*"])
    assert cred.token and cred.id.startswith("cr_"), cred
    assert client.credentials.get(cred.id).token is None, "token shown once"
    cred = client.credentials.update(cred.id, acl=["bind:x.example.com"])
    assert cred.acl == ["bind:x.example.com"], cred.acl
    assert any(c.id == cred.id for c in client.credentials.list())
    e = expect_error("ERR_NGROK_600", 400, client.credentials.create, acl=["read:everything"])
    assert e.details["field"] == "acl[0]", e.details
    expect_error("ERR_NGROK_420", 400, client.credentials.create, description="x" * 256)
    expect_error("ERR_NGROK_421", 400, client.credentials.create, metadata="x" * 4097)
    client.credentials.delete(cred.id)
    expect_not_found(client.credentials.get, cred.id)

    key = client.api_keys.create(description="second key")
    assert key.token, key
    other = ngrok.Client(key.token, base_url=os.environ["GANGWAY_API_URL"])
    assert any(k.id == key.id for k in other.api_keys.list()), "the new key works"
    client.api_keys.update(key.id, description="renamed")
    assert client.api_keys.get(key.id).description == "renamed"
    client.api_keys.delete(key.id)
    expect_error("ERR_NGROK_203", 401, other.api_keys.list)


def check_reserved():
    d = client.reserved_domains.create(domain="shop.example.com", description="storefront")
    assert d.domain == "shop.example.com" and d.cname_target.endswith(".cname." + BASE), d
    expect_error("ERR_NGROK_9041", 409, client.reserved_domains.create, domain="SHOP.example.com")
    expect_error("ERR_NGROK_326", 400, client.reserved_domains.create, domain="bad_name.example.com")
    d = client.reserved_domains.update(d.id, description="renamed")
    assert d.description == "renamed"
    assert any(x.id == d.id for x in client.reserved_domains.list())

    a = client.reserved_addrs.create(description="postgres")
    host, port = a.addr.rsplit(":", 1)
    assert host and 20000 <= int(port) <= 20999, a.addr
    assert client.reserved_addrs.update(a.id, metadata="m").metadata == "m"
    client.reserved_addrs.delete(a.id)
    expect_not_found(client.reserved_addrs.get, a.id)
    return d


def check_edges(domain):
    tg = client.backends.tunnel_group.create(labels={"app": "shop"}, description="shop agents")
    assert tg.labels == {"app": "shop"}
    tg = client.backends.tunnel_group.update(tg.id, labels={"app": "shop", "env": "prod"})
    assert tg.labels == {"app": "shop", "env": "prod"}
    assert any(b.id == tg.id for b in client.backends.tunnel_group.list())

    edge = client.edges.https.create(
        description="storefront",
        hostports=[f"{domain.domain}:443", f"www.{BASE}:{PORT}"],
        tls_termination=module(EndpointTLSTerminationAtEdge, min_version="1.2"),
    )
    assert edge.id.startswith("edghts_") and edge.tls_termination.min_version == "1.2", edge
    e = expect_error("ERR_NGROK_9043", 400, client.edges.https.create, hostports=["nobody.example.org:443"])
    assert e.details["field"] == "hostports[0]", e.details
    expect_error("ERR_NGROK_9044", 409, client.edges.https.create, hostports=[f"www.{BASE}:443"])

    route = client.edges.https_routes.create(
        edge_id=edge.id,
        match_type="path_prefix",
        match="/",
        backend=module(EndpointBackendMutate, backend_id=tg.id),
        compression=module(EndpointCompression, enabled=False),
    )
    assert route.backend.backend.id == tg.id and route.compression.enabled is False, route
    route = client.edges.https_routes.update(edge_id=edge.id, id=route.id, description="root")
    assert route.description == "root" and route.match == "/", "empty match leaves it"
    expect_error("ERR_NGROK_9046", 400, client.edges.https_routes.create,
                 edge_id=edge.id, match_type="regex", match="/")

    mods = client.edge_modules
    policy = client.ip_policies.create(description="edge policy")
    r = mods.https_edge_route_ip_restriction.replace(
        edge.id, route.id, module(EndpointIPPolicyMutate, ip_policy_ids=[policy.id]))
    assert [p.id for p in r.ip_policies] == [policy.id], r
    cb = mods.https_edge_route_circuit_breaker.replace(
        edge.id, route.id, module(EndpointCircuitBreaker, tripped_duration=5, rolling_window=20,
                                  num_buckets=10, volume_threshold=50, error_threshold_percentage=0.3))
    assert (cb.tripped_duration.total_seconds(), cb.error_threshold_percentage) == (5, 0.3), cb._props
    e = expect_error("ERR_NGROK_215", 400, mods.https_edge_route_circuit_breaker.replace,
                     edge.id, route.id, module(EndpointCircuitBreaker, num_buckets=500))
    assert e.details["field"] == "circuit_breaker.num_buckets", e.details
    h = mods.https_edge_route_request_headers.replace(
        edge.id, route.id, module(EndpointRequestHeaders, add={"X-Env": "prod"}, remove=["X-Debug"]))
    assert h.add == {"x-env": "prod"} and h.remove == ["x-debug"], h
    expect_error("ERR_NGROK_215", 400, mods.https_edge_route_request_headers.replace,
                 edge.id, route.id, module(EndpointRequestHeaders, add={"bad header": "x"}))
    expect_error("ERR_NGROK_215", 400, mods.https_edge_route_user_agent_filter.replace,
                 edge.id, route.id, module(EndpointUserAgentFilter, deny=["(unclosed"]))
    expect_error("ERR_NGROK_215", 400, mods.https_edge_route_webhook_verification.replace,
                 edge.id, route.id, module(EndpointWebhookValidation, provider="nosuch", secret="s"))
    w = mods.https_edge_route_webhook_verification.replace(
        edge.id, route.id, module(EndpointWebhookValidation, provider="github", secret="s3cret"))
    assert w.provider == "github"
    assert mods.https_edge_route_circuit_breaker.get(edge.id, route.id).volume_threshold == 50
    mods.https_edge_route_webhook_verification.delete(edge.id, route.id)
    expect_not_found(mods.https_edge_route_webhook_verification.get, edge.id, route.id)
    # A policy in use cannot be deleted; the write changes nothing.
    expect_error("ERR_NGROK_9040", 409, client.ip_policies.delete, policy.id)
    assert client.ip_policies.get(policy.id).id == policy.id

    full = client.edges.https.get(edge.id)
    assert [r.id for r in full.routes] == [route.id], full
    assert full.routes[0].request_headers.add == {"x-env": "prod"}
    edge = client.edges.https.update(edge.id, hostports=[f"www.{BASE}:{PORT}"])
    assert edge.hostports == [f"www.{BASE}:{PORT}"]
    # The released name can be taken by another edge.
    other = client.edges.https.create(hostports=[f"{domain.domain}:443"])
    assert any(e.id == other.id for e in client.edges.https.list())
    client.edges.https.delete(other.id)
    # The reserved domain is free to delete once no edge serves it.
    client.reserved_domains.delete(domain.id)

    client.edges.https_routes.delete(edge.id, route.id)
    expect_not_found(client.edges.https_routes.get, edge.id, route.id)
    client.edges.https.delete(edge.id)
    expect_not_found(client.edges.https.get, edge.id)
    client.ip_policies.delete(policy.id)
    client.backends.tunnel_group.delete(tg.id)


def check_certificates_and_l4_edges():
    ca_pem = os.environ["GANGWAY_TEST_CA_PEM"]
    ca = client.certificate_authorities.create(ca_pem=ca_pem, description="test root")
    assert ca.id.startswith("ca_") and ca.subject_common_name == "Gangway Client Test CA", ca
    assert "cert_sign" in ca.key_usages and ca.not_after > ca.not_before, ca
    ca = client.certificate_authorities.update(ca.id, metadata='{"team":"edge"}')
    assert ca.metadata == '{"team":"edge"}' and ca.ca_pem == ca_pem
    e = expect_error("ERR_NGROK_9050", 400, client.certificate_authorities.create,
                     ca_pem=os.environ["GANGWAY_TEST_LEAF_PEM"])
    assert e.details["field"] == "ca_pem", e.details
    assert [c.id for c in client.certificate_authorities.list()] == [ca.id]

    cert = client.tls_certificates.create(
        certificate_pem=os.environ["GANGWAY_TEST_LEAF_PEM"],
        private_key_pem=os.environ["GANGWAY_TEST_LEAF_KEY"],
    )
    assert cert.subject_alternative_names.dns_names == [f"app.{BASE}"], cert
    assert cert.issuer_common_name == "Gangway Client Test CA" and cert.private_key_type == "ecdsa"
    assert [c.id for c in client.tls_certificates.list()] == [cert.id]

    tg = client.backends.tunnel_group.create(labels={"tier": "db"})
    addr = client.reserved_addrs.create(description="db")
    tcp = client.edges.tcp.create(
        hostports=[addr.addr], backend=module(EndpointBackendMutate, backend_id=tg.id))
    assert tcp.id.startswith("edgtcp_") and tcp.hostports == [addr.addr], tcp
    assert tcp.backend.backend.id == tg.id
    e = expect_error("ERR_NGROK_7120", 400, client.edges.tcp.create, hostports=["db.example.com:5432"])
    assert e.details["field"] == "hostports[0]"
    mods = client.edge_modules
    policy = client.ip_policies.create()
    r = mods.tcp_edge_ip_restriction.replace(tcp.id, module(EndpointIPPolicyMutate, ip_policy_ids=[policy.id]))
    assert [p.id for p in r.ip_policies] == [policy.id]
    assert client.edges.tcp.get(tcp.id).ip_restriction.ip_policies[0].id == policy.id
    mods.tcp_edge_ip_restriction.delete(tcp.id)
    expect_not_found(mods.tcp_edge_ip_restriction.get, tcp.id)
    tcp = client.edges.tcp.update(tcp.id, description="postgres")
    assert tcp.description == "postgres" and tcp.hostports == [addr.addr]

    tls = client.edges.tls.create(
        hostports=[f"app.{BASE}:443"],
        backend=module(EndpointBackendMutate, backend_id=tg.id),
        mutual_tls=module(EndpointMutualTLSMutate, certificate_authority_ids=[ca.id]),
    )
    assert tls.id.startswith("edgtls_") and tls.mutual_tls.certificate_authorities[0].id == ca.id, tls
    t = mods.tls_edge_tls_termination.replace(
        tls.id, module(EndpointTLSTermination, terminate_at="edge", min_version="1.2"))
    assert (t.terminate_at, t.min_version) == ("edge", "1.2"), t
    expect_error("ERR_NGROK_9040", 409, client.certificate_authorities.delete, ca.id)
    assert len(list(client.edges.tls.list())) == 1

    client.edges.tls.delete(tls.id)
    client.edges.tcp.delete(tcp.id)
    expect_not_found(client.edges.tcp.get, tcp.id)
    client.certificate_authorities.delete(ca.id)
    client.tls_certificates.delete(cert.id)
    client.reserved_addrs.delete(addr.id)
    client.ip_policies.delete(policy.id)
    client.backends.tunnel_group.delete(tg.id)


def check_agent_ingresses_and_live_views():
    ing = client.agent_ingresses.create(domain="connect.example.org", description="devices")
    assert ing.id.startswith("agin_") and ing.region_domains, ing
    ing = client.agent_ingresses.update(ing.id, description="fleet")
    assert ing.description == "fleet" and ing.domain == "connect.example.org"
    assert [i.id for i in client.agent_ingresses.list()] == [ing.id]
    client.agent_ingresses.delete(ing.id)
    expect_not_found(client.agent_ingresses.get, ing.id)
    # Nothing is connected in this test: the live views are empty lists.
    assert list(client.tunnel_sessions.list()) == []
    assert list(client.tunnels.list()) == []
    assert list(client.endpoints.list()) == []
    expect_not_found(client.tunnel_sessions.get, "ts_nobody")


def main():
    check_ip_policies()
    check_credentials_and_keys()
    domain = check_reserved()
    check_edges(domain)
    check_certificates_and_l4_edges()
    check_agent_ingresses_and_live_views()
    bad = ngrok.Client("not-a-key", base_url=os.environ["GANGWAY_API_URL"])
    expect_error("ERR_NGROK_203", 401, bad.credentials.list)
    print("ngrok-api client: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)
