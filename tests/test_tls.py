"""TLS against real nats-servers: every bundled TLS config is valid, the whole failure matrix of
notebook 01 (each case its own server), verify_and_map permissions, certificate rotation with a
reload, mutual-TLS cluster routes and a TLS leafnode. Nothing connects that should not."""

from __future__ import annotations

import contextlib
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from natsdemo import tls
from natsdemo.workbook.binary import ServerStartError, free_ports
from natsdemo.workbook.monitor import monitor_json
from natsdemo.workbook.tls_servers import TlsServer, check_config_in, rotate_server_cert
from tests.conftest import until

TLS_CONFIGS = [
    "tls.conf", "tls-verify.conf", "tls-verify-and-map.conf", "tls-handshake-first.conf", "tls-min-1.3.conf",
    "cluster-tls.conf", "leaf-hub.conf", "leaf-spoke.conf", "gateway-tls.conf",
]
CONFIG_ENV = {
    "NATSDEMO_LEAF_PORT": "7422", "NATSDEMO_HUB_URL": "tls://hub:7422",
    "NATSDEMO_CLUSTER": "east", "NATSDEMO_GATEWAY_PORT": "7222", "NATSDEMO_GATEWAY_ADVERTISE": "e1:7222",
    "NATSDEMO_SEED": "east", "NATSDEMO_SEED_URL": "tls://e1:7222",
}


# ------------------------------------------------------------------------- material
@pytest.fixture(scope="module")
def pkidir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ (the standard set), one folder per bad server certificate, and bad client pairs at top level."""
    base = tmp_path_factory.mktemp("pki")
    good = base / "good"
    tls.ensure_certs(good, days=5)
    bad = tls.bad_certs(tls.load(good, "ca"))
    for name in ("expired", "not_yet_valid", "wrong_san", "cn_only"):
        d = base / name
        d.mkdir()
        shutil.copy(good / "ca.pem", d / "ca.pem")
        bad[name].write(d, "server")
    # an impostor: a complete set from another CA (its own ca.pem, server.pem)
    impostor = base / "impostor"
    bad["other_ca_root"].write(impostor, "ca")
    bad["other_ca"].write(impostor, "server")
    for name in ("other_ca_client", "expired_client", "wrong_eku_client", "no_eku_client", "unknown_user_client"):
        bad[name].write(base, name)
    # a route certificate with serverAuth only (routes dial out as clients too)
    serveronly = base / "serveronly"
    shutil.copytree(good, serveronly)
    tls.make_cert(tls.load(good, "ca"), "natsdemo server", hosts=tls.DEFAULT_HOSTS, eku=(tls.SERVER_AUTH,)).write(
        serveronly, "server"
    )
    # a key that does not belong to its certificate
    mismatch = base / "mismatch"
    shutil.copytree(good, mismatch)
    (mismatch / "server-key.pem").write_bytes(tls.make_server_cert(tls.load(good, "ca")).key_pem)
    return base


@contextlib.asynccontextmanager
async def serving(config: str, certs: Path, **kw: object) -> AsyncIterator[TlsServer]:
    srv = TlsServer(config=config, certs=certs, name="tlstest", **kw)  # type: ignore[arg-type]
    await srv.astart()
    try:
        yield srv
    finally:
        await srv.astop()


def ctx(base: Path, ca: str | None = "good/ca.pem", client: str | None = None, **kw: object) -> ssl.SSLContext:
    """A client context: CA path relative to ``base`` and a client pair stem (``good/client-alice``)."""
    cert = key = None
    if client:
        cert, key = base / f"{client}.pem", base / f"{client}-key.pem"
    return tls.client_context(base / ca if ca else None, cert, key, **kw)  # type: ignore[arg-type]


async def crosses(from_url: str, to_url: str, client_tls, subject: str, data: bytes) -> bool:
    """Publish on one server until a subscriber on another receives it (interest takes a moment to
    propagate over routes and leafnode connections); True once ``data`` arrived."""
    pub = await nats.connect(from_url, tls=client_tls, allow_reconnect=False)
    sub_nc = await nats.connect(to_url, tls=client_tls, allow_reconnect=False)
    try:
        sub = await sub_nc.subscribe(subject)
        await sub_nc.flush()
        for _ in range(40):
            await pub.publish(subject, data)
            with contextlib.suppress(nats.errors.TimeoutError):
                return (await sub.next_msg(0.1)).data == data
        return False
    finally:
        await pub.close()
        await sub_nc.close()


# ------------------------------------------------------------------------- configs
@pytest.mark.parametrize("config", TLS_CONFIGS)
def test_config_is_valid_when_run_in_the_certs_folder(pkidir, config):
    ok, text = check_config_in(config, pkidir / "good", CONFIG_ENV)
    assert ok, text


def test_config_paths_resolve_against_the_working_directory(pkidir, tmp_path):
    """Measured: nats-server opens relative cert paths from its cwd, not from the config's folder."""
    ok, text = check_config_in("tls.conf", tmp_path)
    assert not ok and "server.pem: no such file" in text


def test_leaf_spoke_needs_its_hub_url_from_the_environment(pkidir):
    ok, text = check_config_in("leaf-spoke.conf", pkidir / "good", {})
    assert not ok and "NATSDEMO_HUB_URL" in text


async def test_tls_server_is_ready_and_reports_its_certificate(pkidir):
    async with serving("tls.conf", pkidir / "good") as srv:
        assert srv.client_port and srv.monitor_port  # readiness lines parsed with TLS on
        varz = monitor_json(srv, "varz")
        assert varz["tls_required"] is True
        cert = tls.load_cert(pkidir / "good" / "server.pem")
        assert varz["tls_cert_not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        presented = await tls.server_certificate(srv.url)
        assert presented.serial_number == cert.serial_number


# ------------------------------------------------------------------------- the failure matrix
# (id, config, server cert folder, client context args, probe kwargs, connects?, words in the reason)
MATRIX = [
    ("control: trusted CA", "tls.conf", "good", {}, {}, True, ""),
    ("client without the CA", "tls.conf", "good", {"ca": None}, {}, False, "does not trust the CA"),
    ("client trusting another CA", "tls.conf", "good", {"ca": "impostor/ca.pem"}, {}, False, "does not trust the CA"),
    ("host not in SAN", "tls.conf", "wrong_san", {}, {}, False, "not in the certificate's SANs"),
    ("control: tls_hostname names a SAN", "tls.conf", "wrong_san", {}, {"tls_hostname": "nats.example.test"}, True, ""),
    ("CN only, no SAN", "tls.conf", "cn_only", {}, {}, False, "not in the certificate's SANs"),
    ("expired server certificate", "tls.conf", "expired", {}, {}, False, "the server certificate has expired"),
    ("not yet valid server certificate", "tls.conf", "not_yet_valid", {}, {}, False, "not valid yet"),
    ("no client certificate on verify", "tls-verify.conf", "good", {}, {}, False, "requires a client certificate"),
    ("control: client certificate", "tls-verify.conf", "good", {"client": "good/client-alice"}, {}, True, ""),
    ("client certificate from another CA", "tls-verify.conf", "good", {"client": "other_ca_client"}, {}, False,
     "does not trust the CA that signed the client"),
    ("expired client certificate", "tls-verify.conf", "good", {"client": "expired_client"}, {}, False,
     "refused the client certificate because it has expired"),
    ("client certificate with serverAuth EKU only", "tls-verify.conf", "good", {"client": "wrong_eku_client"}, {},
     False, "client authentication"),
    ("identity not in users", "tls-verify-and-map.conf", "good", {"client": "unknown_user_client"}, {}, False,
     "no user in the server's list"),
    ("control: mapped user", "tls-verify-and-map.conf", "good", {"client": "good/client-bob"}, {}, True, ""),
    ("TLS 1.2 client against min_version 1.3", "tls-min-1.3.conf", "good", {"max_version": ssl.TLSVersion.TLSv1_2},
     {}, False, "share no TLS version"),
    ("control: TLS 1.3 client", "tls-min-1.3.conf", "good", {}, {}, True, ""),
    ("control: handshake first on both sides", "tls-handshake-first.conf", "good", {}, {"handshake_first": True},
     True, ""),
    ("handshake_first server, client waits for INFO", "tls-handshake-first.conf", "good", {}, {}, False,
     "tls_handshake_first=True"),
    ("handshake-first client, ordinary server", "tls.conf", "good", {}, {"handshake_first": True}, False,
     "plaintext INFO"),
]


@pytest.mark.parametrize(("case", "config", "folder", "cargs", "pargs", "connects", "words"), MATRIX,
                         ids=[m[0] for m in MATRIX])
async def test_failure_matrix(pkidir, case, config, folder, cargs, pargs, connects, words):
    cargs = dict(cargs)
    context = ctx(pkidir, cargs.pop("ca", "good/ca.pem"), cargs.pop("client", None), **cargs)
    async with serving(config, pkidir / folder) as srv:
        outcome = await tls.probe(srv.url, context, timeout=2.5, server=srv, **pargs)
    assert outcome.ok is connects, outcome
    if not connects:
        assert words in f"{outcome.reason} {outcome.fix}", outcome
        assert outcome.fix


async def test_client_certificate_without_any_eku_is_accepted(pkidir):
    """Recorded behaviour: Go treats a certificate with no EKU extension as good for any purpose, so
    a `verify` server accepts it; an EKU that lists only serverAuth is refused ("incompatible key usage")."""
    async with serving("tls-verify.conf", pkidir / "good") as srv:
        no_eku = await tls.probe(srv.url, ctx(pkidir, client="no_eku_client"), server=srv)
        wrong = await tls.probe(srv.url, ctx(pkidir, client="wrong_eku_client"), server=srv)
        logged = await until(lambda: srv.log_lines("incompatible key usage"), 3)
    assert no_eku.ok, no_eku
    assert not wrong.ok and "does not allow client authentication" in wrong.reason, wrong
    assert logged, srv.log_text()


async def test_plaintext_client_against_a_tls_server(pkidir):
    async with serving("tls.conf", pkidir / "good") as srv:
        outcome = await tls.plaintext_probe(srv.url, server=srv)
    # measured on 2.15: no -ERR, the server expects a ClientHello after INFO, logs and hangs up
    assert not outcome.ok
    assert "connection closed" in outcome.error and "tls_required" in outcome.error
    assert "spoke plaintext" in outcome.reason


async def test_cert_none_accepts_an_impostor(pkidir):
    """Why CERT_NONE is wrong: a server with a certificate from a CA nobody trusts is accepted."""
    async with serving("tls.conf", pkidir / "impostor") as srv:
        reckless = await tls.probe(srv.url, tls.client_context(verify=False))
        careful = await tls.probe(srv.url, ctx(pkidir))
    assert reckless.ok
    assert not careful.ok and "does not trust the CA" in careful.reason


def test_key_that_does_not_match_its_certificate(pkidir):
    srv = TlsServer(config="tls.conf", certs=pkidir / "mismatch", name="tlstest")
    try:
        with pytest.raises(ServerStartError, match="private key does not match public key"):
            srv.start()
    finally:
        srv.stop()
    assert not srv.running()


# ------------------------------------------------------------------------- verify_and_map
async def test_verify_and_map_users_and_permissions(pkidir):
    good = pkidir / "good"
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async with serving("tls-verify-and-map.conf", good) as srv:
        alice = await nats.connect(srv.url, tls=ctx(pkidir, client="good/client-alice"), allow_reconnect=False)
        bob = await nats.connect(
            srv.url, tls=ctx(pkidir, client="good/client-bob"), allow_reconnect=False, error_cb=on_error
        )
        try:
            js = alice.jetstream()
            await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
            await js.publish("orders.1", b"from alice")
            seen = await bob.subscribe("orders.>")
            await bob.publish("orders.2", b"from bob")  # not allowed: bob may only publish reports.>
            await bob.publish("reports.daily", b"fine")
            await bob.flush(2)
            assert await until(lambda: errors, 3)
            info = await js.stream_info("ORDERS")
            assert info.state.messages == 1  # bob's order was never stored
            assert 'permissions violation for publish to "orders.2"' in str(errors[0]).lower()
            assert "may not publish" in tls.explain(errors[0]).reason
            assert bob.is_connected  # a permissions violation does not disconnect
            with pytest.raises(nats.errors.TimeoutError):
                await seen.next_msg(0.3)
            # the server knows who is who from the certificate alone: no password was sent
            connz = monitor_json(srv, "connz?auth=true")
            users = sorted(c.get("authorized_user", "") for c in connz["connections"])
            assert users == ["alice@natsdemo.test", "bob@natsdemo.test"]
        finally:
            await alice.close()
            await bob.close()


# ------------------------------------------------------------------------- rotation
async def test_rotation_with_reload_keeps_clients_and_serves_the_new_certificate(pkidir, tmp_path):
    certs = tmp_path / "rot"
    shutil.copytree(pkidir / "good", certs)
    old = tls.load_cert(certs / "server.pem")
    async with serving("tls.conf", certs) as srv:
        before = await nats.connect(srv.url, tls=ctx(pkidir), allow_reconnect=False)
        try:
            sub = await before.subscribe("rot")
            new = await rotate_server_cert(srv, tls.load(certs, "ca"), days=4)
            want = new.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert monitor_json(srv, "varz")["tls_cert_not_after"] == want
            await before.publish("rot", b"after the reload")
            assert (await sub.next_msg(2)).data == b"after the reload"
            assert before.is_connected and before.stats["reconnects"] == 0
            presented = await tls.server_certificate(srv.url)
            assert presented.serial_number == new.serial != old.serial_number
            assert (await tls.probe(srv.url, ctx(pkidir))).ok
        finally:
            await before.close()
        assert srv.log_lines("Reloaded server configuration")


# ------------------------------------------------------------------------- routes and leafnodes
async def test_cluster_routes_use_mutual_tls_and_refuse_an_untrusted_node(pkidir):
    ports = free_ports(4)
    urls = [f"nats://127.0.0.1:{p}" for p in ports]
    nodes: list[TlsServer] = []
    try:
        for i in range(4):
            folder = pkidir / ("good" if i < 3 else "impostor")
            routes = ",".join(u for j, u in enumerate(urls[:3]) if j != i)
            node = TlsServer(
                config="cluster-tls.conf", certs=folder, name="tlstest", server_name=f"n{i + 1}",
                extra_args=["--cluster", urls[i], "--routes", routes],
            )
            nodes.append(node)
            await node.astart()

        def peers(node: TlsServer) -> set[str]:
            return {r["remote_name"] for r in monitor_json(node, "routez")["routes"]}

        full = await until(lambda: all(peers(n) == {f"n{k}" for k in (1, 2, 3)} - {f"n{i + 1}"}
                                       for i, n in enumerate(nodes[:3])))
        assert full, [peers(n) for n in nodes]
        # n4 holds a certificate from another CA: it dials the others and is refused both ways
        assert await until(lambda: nodes[3].log_lines("TLS route handshake error", "TLS handshake error"), 5)
        assert peers(nodes[3]) == set() and all("n4" not in peers(n) for n in nodes[:3])
        # a message crosses the routes
        client_tls = ctx(pkidir)
        assert await crosses(nodes[0].url, nodes[2].url, client_tls, "over.routes", b"hi")
    finally:
        for node in nodes:
            await node.astop()


async def test_leafnode_over_mutual_tls(pkidir):
    hub = TlsServer(config="leaf-hub.conf", certs=pkidir / "good", name="tlstest",
                        env={"NATSDEMO_LEAF_PORT": "-1"})
    servers = [hub]
    try:
        await hub.astart()
        leaf_port = monitor_json(hub, "varz")["leaf"]["port"]
        assert leaf_port > 0
        hub_url = f"tls://127.0.0.1:{leaf_port}"
        leaf = TlsServer(config="leaf-spoke.conf", certs=pkidir / "good", name="tlstest",
                             env={"NATSDEMO_HUB_URL": hub_url})
        impostor = TlsServer(config="leaf-spoke.conf", certs=pkidir / "impostor", name="tlstest",
                                 env={"NATSDEMO_HUB_URL": hub_url})
        servers += [leaf, impostor]
        await leaf.astart()
        await impostor.astart()
        assert await until(lambda: monitor_json(hub, "leafz")["leafnodes"] >= 1)
        assert await until(lambda: impostor.log_lines("handshake error"), 5), impostor.log_text()
        assert monitor_json(hub, "leafz")["leafnodes"] == 1  # the impostor never joins
        client_tls = ctx(pkidir)
        assert await crosses(leaf.url, hub.url, client_tls, "via.leaf", b"hello hub")
    finally:
        for s in servers:
            await s.astop()


async def test_a_route_certificate_needs_the_client_auth_eku(pkidir):
    """Measured: with serverAuth alone, each node refuses the other's route (it arrives as a client)."""
    ports = free_ports(2)
    urls = [f"nats://127.0.0.1:{p}" for p in ports]
    nodes = [
        TlsServer(config="cluster-tls.conf", certs=pkidir / "serveronly", name="tlstest", server_name=f"e{i}",
                      extra_args=["--cluster", urls[i], "--routes", urls[1 - i]])
        for i in range(2)
    ]
    try:
        for node in nodes:
            await node.astart()
        assert await until(lambda: nodes[0].log_lines("incompatible key usage"), 5), nodes[0].log_text()
        assert all(monitor_json(n, "routez")["num_routes"] == 0 for n in nodes)
    finally:
        for node in nodes:
            await node.astop()


async def test_reload_is_refused_when_the_name_came_from_the_command_line(pkidir, tmp_path):
    """Measured on 2.15: `-n NAME` with no matching server_name in the config makes every SIGHUP fail
    ("config reload not supported for ServerName"), so TlsServer passes -n only when asked to."""
    certs = tmp_path / "named"
    shutil.copytree(pkidir / "good", certs)
    async with serving("tls.conf", certs, server_name="named") as srv:
        with pytest.raises(RuntimeError, match="config reload not supported for ServerName"):
            await rotate_server_cert(srv, tls.load(certs, "ca"), days=3)


async def test_cn_only_certificate_is_refused_even_by_host_name(tmp_path):
    """Python's default context falls back to the CN when a certificate has no SANs; ours, like Go, does not."""
    import ssl as _ssl

    from natsdemo import tls as _tls
    from natsdemo.workbook.labs.tls import TlsLab

    _tls.ensure_certs(tmp_path)
    lab = await TlsLab.open(tmp_path)
    try:
        async with lab.variant("cn_only") as srv:
            url = srv.url.replace("127.0.0.1", "localhost")
            lenient = await _tls.probe(url, _ssl.create_default_context(cafile=tmp_path / "ca.pem"), server=srv)
            strict = await _tls.probe(url, _tls.client_context(tmp_path / "ca.pem"), server=srv)
        assert lenient.ok, "Python's default context should accept the CN (if this changes, update notebook 01)"
        assert not strict.ok and "CERTIFICATE_VERIFY_FAILED" in strict.error
    finally:
        await lab.stop()
