"""The server's clock, as seen from this host: for deciding "is it due yet?" by the server's time.

Deadlines in JetStream patterns come from stream timestamps, that is from the server's clock. A
host whose clock runs ahead would act on them early. :class:`ServerClock` measures the offset
with a probe message (publish, read back its stream timestamp, purge it) and keeps the estimate
on the safe side: it never reads later than the server's clock at the same moment, so a timer
that trusts it is never early (it may be late by one probe round trip).

Between probes it follows the host's monotonic clock, so a step of the wall clock (NTP, a laptop
waking up) shifts nothing; the wall clock is only used at the probe.

Not taught on its own: the reservation timer service (notebook 04) uses it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from natsdemo.core.publish import publish_acked

log = logging.getLogger("natsdemo.servertime")


class ServerClock:
    """``now()`` estimates the server's clock in epoch seconds, never ahead of it (see the module).

    ``stream`` and ``subject`` name where the probe message goes (a subject of its own that the
    stream captures, purged after each probe); ``clock`` is this host's wall clock (a test can
    pass a skewed one).
    """

    def __init__(
        self, js: Any, stream: str, subject: str, *, clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.js, self.stream, self.subject = js, stream, subject
        self._clock, self._monotonic = clock, monotonic
        self.offset = 0.0  # host wall clock minus server clock (upper bound); 0 until the first probe
        self._base = clock() - monotonic()  # wall minus monotonic at the last probe
        self.probes = 0

    def now(self) -> float:
        """The server's time as far as we can tell, never later than it really is."""
        return self._monotonic() + self._base - self.offset

    async def probe(self) -> float:
        """Measure the offset again; returns it (seconds the host's clock is ahead of the server's)."""
        t0 = self._clock()
        ack = await publish_acked(self.js, self.subject, b"", stream=self.stream, retry_for=5.0)
        t1, m1 = self._clock(), self._monotonic()
        stored = await self.js.get_msg(self.stream, ack.seq)
        server_ts = stored.time.timestamp()
        # the server stamped it between t0 and t1 (host time): t1 - stamp is the largest offset
        # consistent with that, and the safe one to subtract
        self.offset = t1 - server_ts
        self._base = t1 - m1
        self.probes += 1
        with contextlib.suppress(Exception):
            await self.js.purge_stream(self.stream, subject=self.subject)
        log.debug("server clock probe: host ahead by %.3f s (round trip %.3f s)", self.offset, t1 - t0)
        return self.offset
