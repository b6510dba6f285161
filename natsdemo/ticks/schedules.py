"""Server-side ticks: a nats-server (2.14+) cron message schedule that publishes on ``schedule.<name>``.

Instead of a Python :class:`natsdemo.ticks.ticker.Ticker`, the server owns the clock. One message on
``schedule._cron.<name>`` in stream ``SCHEDULE`` carries the schedule in headers
(``Nats-Schedule``, ``Nats-Schedule-Target: schedule.<name>``, ``Nats-Schedule-Time-Zone``), and
the server copies its static body ``{"schedule", "cron", "tz", "source": "server"}`` into every
tick. Those ticks carry ``Nats-Scheduler`` and ``Nats-Schedule-Next`` but no ``Nats-Msg-Id``;
:meth:`natsdemo.ticks.tick.Tick.from_msg` reads them like client ticks, deriving the slot from the
stream timestamp.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import contextlib
from typing import Any

import nats.js.errors
from nats.js import api

from natsdemo.core.cron import parse_cron
from natsdemo.core.errors import UsageError
from natsdemo.core.publish import publish_acked
from natsdemo.ticks.tick import ensure_schedule_stream
from natsdemo.ticks.wire import SCHEDULE_STREAM, ServerTickBody, server_schedule_subject, tick_subject

__all__ = ["INVALID_SCHEDULE", "install_server_schedule", "remove_server_schedule"]

INVALID_SCHEDULE = 10189  # "message schedules pattern is invalid" (nats-server 2.15)


async def install_server_schedule(
    js: Any, name: str, cron: str, tz: str = "UTC", *, replicas: int | None = None
) -> api.PubAck:
    """Let nats-server own the clock: a cron message schedule whose target is ``schedule.<name>``.

    The server copies this message's body into every tick, so the body is static:
    ``{"schedule", "cron", "tz", "source": "server"}`` with no ``scheduled_at``/``published_at``;
    :meth:`natsdemo.ticks.tick.Tick.from_msg` derives them from the stream timestamp. The produced tick
    has no ``Nats-Msg-Id`` (the server strips it) but carries ``Nats-Scheduler`` and
    ``Nats-Schedule-Next``. Publishing again replaces the schedule (one per subject);
    :func:`remove_server_schedule` stops it.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    spec = parse_cron(cron, tz)
    await ensure_schedule_stream(js, replicas=replicas)
    body = ServerTickBody(name, spec.fields, spec.tz)
    headers = {
        "Nats-Schedule": spec.fields,  # the server's cron is 6 fields, seconds first, like ours
        "Nats-Schedule-Target": tick_subject(name),
        "Nats-Schedule-Time-Zone": spec.tz,
    }
    # no msg id, so a retry after an ambiguous timeout could store the schedule twice: harmless,
    # since one schedule per subject means the second copy replaces the first
    try:
        return await publish_acked(
            js, server_schedule_subject(name), body.to_json(), stream=SCHEDULE_STREAM, headers=headers,
            idempotent=True,
        )
    except nats.js.errors.BadRequestError as exc:
        fields = spec.fields.split()
        if exc.err_code == INVALID_SCHEDULE and "L" in fields[3].upper():
            work_around = " ".join([*fields[:3], "28-31", *fields[4:]])
            raise UsageError(
                f"nats-server refused {spec.fields!r}: its schedules have no 'L' (last day of the month, error "
                f"{INVALID_SCHEDULE}); schedule days 28-31 instead ({work_around!r}) and "
                "keep only the last day in the reader (natsdemo.core.cron.is_last_day_of_month)"
            ) from None
        raise


async def remove_server_schedule(js: Any, name: str) -> None:
    """Cancel the server-side schedule of ``schedule.<name>`` (purges its schedule subject).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.purge_stream(SCHEDULE_STREAM, subject=server_schedule_subject(name))
