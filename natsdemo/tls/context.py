"""The client side of TLS: the ``ssl.SSLContext`` nats-py takes, done right.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import os
import ssl

from natsdemo.core.connect import client_tls_context


def client_context(
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """The ``ssl.SSLContext`` to hand to nats-py (``tls=``).

    ``ca`` is the CA to trust (``None``: the system store, which does not know a self-signed CA);
    ``cert``/``key`` are presented when the server asks for a client certificate. ``max_version``
    pins an old protocol for the TLS-1.2-against-1.3 demo. ``verify=False`` builds the
    ``CERT_NONE`` context that trusts *any* server: it exists only to show why it is wrong.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    if verify:
        ctx = client_tls_context(ca, cert, key)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # must be switched off before verify_mode can be CERT_NONE
        ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx
