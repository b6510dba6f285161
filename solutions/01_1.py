# Exercise 01.1: trust nothing but the system store, then take bob out of verify_and_map.
# Answer: with only the system store every server mode fails verification
# (CERTIFICATE_VERIFY_FAILED): no system knows the workbook CA. With bob removed from the users and
# the config reloaded, bob's certificate still passes TLS, but the server finds no user for his
# e-mail SAN and refuses him ("authorization violation"); alice, still listed, connects.
# The bundled config is not edited: a copy runs in a folder of its own.
import re
import shutil
import tempfile
from pathlib import Path

from natsdemo.workbook.binary import config_path
from natsdemo.workbook.labs.tls import MODES
from natsdemo.workbook.tls_servers import TlsServer, areload

for mode in MODES:
    out = await lab.attempt(mode, "nothing (system store)", "alice", "127.0.0.1", handshake_first=mode == "handshake_first")
    print(f"{mode:22} -> {out.reason or out.error}")
    assert not out.ok

folder = Path(tempfile.mkdtemp(prefix="nb01-ex1-"))
for name in ("ca.pem", "server.pem", "server-key.pem"):
    shutil.copy2(CERTS / name, folder / name)
conf = folder / "no-bob.conf"
conf.write_text(config_path("tls-verify-and-map.conf").read_text())
ex_srv = await TlsServer(config=conf, certs=folder, name="nb01-ex1").astart()
try:
    def attempt(user):
        ctx = tls.client_context(CERTS / "ca.pem", CERTS / f"client-{user}.pem", CERTS / f"client-{user}-key.pem")
        return tls.probe(ex_srv.url, ctx, timeout=2.5, server=ex_srv)
    assert (await attempt("bob")).ok
    text = conf.read_text()
    conf.write_text(re.sub(r"\n\s*# bob[^\n]*\n\s*\{ user: \"bob@natsdemo.test\".*?\n    \}\n", "\n", text, flags=re.S))
    assert "bob@" not in conf.read_text()
    await areload(ex_srv)  # SIGHUP, then wait for the server to say it reloaded
    bob, alice = await attempt("bob"), await attempt("alice")
    print("after the reload: bob ->", bob.reason or bob.error, "| alice ->", "connected" if alice.ok else alice.error)
    assert not bob.ok and alice.ok
finally:
    await ex_srv.astop()
