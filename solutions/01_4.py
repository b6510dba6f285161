# Exercise 01.4: rotating the CA itself.
# Answer: every party checks certificates against its ca_file, and a certificate signed by the new
# CA means nothing to a party that trusts only the old one. So, in this order:
#   1. put old + new CA together in every ca_file (clients and ex_servers), and reload;
#   2. re-issue server and client certificates from the new CA, one by one, and reload;
#   3. when nothing signed by the old CA is left, remove it from the ca_files.
# Skip step 1 and step 2 breaks every connection between a renewed and a not-yet-updated party.
import shutil
import tempfile
from pathlib import Path

from natsdemo.workbook.tls_servers import TlsServer

old_ca = tls.load(CERTS, "ca")
new_ca = tls.make_ca("natsdemo CA, next generation")
base = Path(tempfile.mkdtemp(prefix="nb01-ex4-"))
for kind, ca in (("old", old_ca), ("new", new_ca)):
    (base / kind).mkdir()
    ca.write(base / kind, "ca")
    tls.make_server_cert(ca, days=2).write(base / kind, "server")
bundle = base / "bundle.pem"
bundle.write_bytes(old_ca.cert_pem + new_ca.cert_pem)
ex_servers = {k: await TlsServer(config="tls.conf", certs=base / k, name=f"nb01-ex4-{k}").astart() for k in ("old", "new")}
try:
    results = {}
    for trust, ca_file in (("old CA only", base / "old" / "ca.pem"), ("old + new", bundle)):
        for kind, s_ in ex_servers.items():
            out = await tls.probe(s_.url, tls.client_context(ca_file), server=s_)
            results[(trust, kind)] = out.ok
    print(results)
    assert results == {("old CA only", "old"): True, ("old CA only", "new"): False,
                       ("old + new", "old"): True, ("old + new", "new"): True}
finally:
    for s_ in ex_servers.values():
        await s_.astop()
