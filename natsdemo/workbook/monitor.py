"""Monitoring endpoints (``/varz``, ``/jsz``, ``/healthz``...) of a server the workbook knows.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol


class Monitored(Protocol):
    """Anything with a monitoring URL (``http://host:port``) or None."""

    @property
    def monitor_url(self) -> str | None: ...


def monitor_json(server: Monitored, endpoint: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET a monitoring endpoint (``varz``, ``jsz``, ``healthz``...) and decode it."""
    import urllib.request

    if not server.monitor_url:
        raise RuntimeError("this server has no monitoring port")
    with urllib.request.urlopen(f"{server.monitor_url}/{endpoint}", timeout=timeout) as resp:
        return json.loads(resp.read())


async def amonitor_json(server: Monitored, endpoint: str, timeout: float = 5.0) -> dict[str, Any]:
    """:func:`monitor_json` in a worker thread, so a notebook's event loop never waits on HTTP.

    Defined in notebooks/00_start_here.ipynb
    """
    return await asyncio.to_thread(monitor_json, server, endpoint, timeout)
