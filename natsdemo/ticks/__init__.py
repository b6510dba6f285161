"""Cron ticks: business time ("end of day", "end of month") as events on ``schedule.<name>``.

Lift this folder and :mod:`natsdemo.core`; nothing here needs Jupyter or a local nats-server.

* :mod:`~natsdemo.ticks.wire`: the contract (stream, subjects, msg id, JSON bodies);
* :mod:`~natsdemo.ticks.tick`: the stream, one tick published and read back;
* :mod:`~natsdemo.ticks.consumer`: :class:`TickConsumer`, each tick once through JetStream;
* :mod:`~natsdemo.ticks.ticker`: :class:`Ticker`, drift-free and replica-safe client ticks;
* :mod:`~natsdemo.ticks.schedules`: the same ticks from a nats-server cron schedule;
* :mod:`~natsdemo.ticks.service`: ``python -m natsdemo tick``.

When a slot is due is :mod:`natsdemo.core.cron` (six fields, seconds first, in an IANA zone).
"""

from natsdemo.ticks.consumer import TickConsumer
from natsdemo.ticks.schedules import install_server_schedule, remove_server_schedule
from natsdemo.ticks.tick import Tick, ensure_schedule_stream, publish_tick
from natsdemo.ticks.ticker import CATCH_UP, Fired, Ticker
from natsdemo.ticks.wire import (
    DUPLICATE_WINDOW,
    MAX_TICKS_PER_SUBJECT,
    SCHEDULE_STREAM,
    SERVER_SCHEDULE_PREFIX,
    SUBJECT_PREFIX,
    ServerTickBody,
    TickBody,
    schedule_stream_config,
    server_schedule_subject,
    tick_msg_id,
    tick_subject,
    validate_name,
)

__all__ = [
    "CATCH_UP", "DUPLICATE_WINDOW", "MAX_TICKS_PER_SUBJECT", "SCHEDULE_STREAM", "SERVER_SCHEDULE_PREFIX",
    "SUBJECT_PREFIX", "Fired", "ServerTickBody", "Tick", "TickBody", "TickConsumer", "Ticker",
    "ensure_schedule_stream", "install_server_schedule", "publish_tick", "remove_server_schedule",
    "schedule_stream_config",
    "server_schedule_subject", "tick_msg_id", "tick_subject", "validate_name",
]
