# Exercise 01.2: a certificate for another host name, and tls_hostname.
# Answer: `--host my-laptop.local` adds that name to the server certificate's SANs. Dialling
# 127.0.0.1 while telling TLS to expect "my-laptop.local" (tls_hostname) checks the certificate
# against that name, so it connects even though my-laptop.local resolves nowhere here; without
# the --host the same attempt fails the host-name check.
import sys
import tempfile
from pathlib import Path

from natsdemo.workbook.tls_servers import TlsServer

folder = Path(tempfile.mkdtemp(prefix="nb01-ex2-"))
made = await asyncio.create_subprocess_exec(sys.executable, "-m", "natsdemo", "certs", "--out", str(folder),
                                            "--host", "my-laptop.local", stdout=asyncio.subprocess.DEVNULL)
assert await asyncio.wait_for(made.wait(), 60) == 0
ex_srv = await TlsServer(config="tls.conf", certs=folder, name="nb01-ex2").astart()
try:
    ok = await tls.probe(ex_srv.url, tls.client_context(folder / "ca.pem"), tls_hostname="my-laptop.local", server=ex_srv)
    other = await tls.probe(ex_srv.url, tls.client_context(folder / "ca.pem"), tls_hostname="your-laptop.local",
                            server=ex_srv)
    print("my-laptop.local ->", "connected" if ok.ok else ok.error, "| your-laptop.local ->", other.reason or other.error)
    assert ok.ok and not other.ok
finally:
    await ex_srv.astop()
