# Exercise 01.3: carol, with a one-day certificate and subscribe-only permissions.
# Answer: add a user for carol's e-mail SAN whose publish permissions deny everything; after the
# reload she connects, receives the orders alice publishes, and her own publish to orders.> is
# refused with a permissions violation (the connection stays up). The one-day certificate means
# her access ends tomorrow unless somebody renews it.
import shutil
import tempfile
from pathlib import Path

from natsdemo.workbook.binary import config_path
from natsdemo.workbook.tls_servers import TlsServer, areload

folder = Path(tempfile.mkdtemp(prefix="nb01-ex3-"))
for name in ("ca.pem", "server.pem", "server-key.pem"):
    shutil.copy2(CERTS / name, folder / name)
carol = tls.make_client_cert(tls.load(CERTS, "ca"), "carol", days=1)
carol.write(folder, "client-carol")
conf = folder / "with-carol.conf"
text = config_path("tls-verify-and-map.conf").read_text()
conf.write_text(text)
ex_srv = await TlsServer(config=conf, certs=folder, name="nb01-ex3").astart()
try:
    conf.write_text(text.replace("  users = [\n", """  users = [
    # carol reads orders and publishes nothing
    { user: "carol@natsdemo.test"
      permissions: { publish: { deny: [">"] }, subscribe: { allow: ["orders.>", "_INBOX.>"] } }
    }
""", 1))
    await areload(ex_srv)  # SIGHUP, then wait for the server to say it reloaded
    refused = []

    async def on_error(exc):
        refused.append(str(exc))

    as_carol = await nats.connect(ex_srv.url, tls=tls.client_context(folder / "ca.pem", folder / "client-carol.pem",
                                                                  folder / "client-carol-key.pem"),
                                  error_cb=on_error, allow_reconnect=False)
    as_alice = await nats.connect(ex_srv.url, tls=tls.client_context(CERTS / "ca.pem", CERTS / "client-alice.pem",
                                                                  CERTS / "client-alice-key.pem"),
                                  allow_reconnect=False)
    sub = await as_carol.subscribe("orders.>")
    await as_carol.flush()
    await as_alice.publish("orders.1", b"an order")
    got = await sub.next_msg(timeout=2)
    await as_carol.publish("orders.2", b"carol tries to order")
    await as_carol.flush()
    await asyncio.sleep(0.3)
    print("carol received:", got.data, "| her publish:", refused)
    assert got.data == b"an order" and any("permissions violation" in r.lower() for r in refused)
    assert as_carol.is_connected
    await as_carol.close()
    await as_alice.close()
finally:
    await ex_srv.astop()
