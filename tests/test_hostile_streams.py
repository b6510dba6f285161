"""Hostile messages on the streams: each is logged and skipped (or dead-lettered, where the pattern
has dead letters), and the valid events around it are still served."""

from __future__ import annotations

import json

from natsdemo import reservations as R
from natsdemo.drain import Drainer, DrainSettings, dead_letters, queue_names
from natsdemo.reservations import TimeoutService
from natsdemo.ticks import TickConsumer, publish_tick
from tests.conftest import wait_for

HOSTILE = [
    b"",  # empty
    b"\xff\xfe\xfd",  # not UTF-8
    b"[1, 2, 3]",  # JSON, not an object
    b'{"type": 5, "id": "h"}',  # the wrong shape
    b'{"type": "tickets-refunded", "id": "h"}',  # an unknown type
    b'{"type": "tickets-reserved", "id": "h", "timeout": "soon"}',  # a bad field
    b"{" + b'"x": 1, ' * 100_000 + b'"y": 2}',  # about 800 KB of JSON of no use
    b'{"type": "tickets-reserved", "id": "h", "timer": "sundial"}',
]


async def test_the_timer_service_skips_hostile_events_and_serves_the_rest(nc, caplog):
    js = nc.jetstream()
    svc = TimeoutService(js, name="hostile")
    await svc.start()
    try:
        await R.reserve(js, "before", timeout=0.5)
        for i, payload in enumerate(HOSTILE):
            await js.publish(R.subject(f"h{i}" if i % 2 else "h"), payload, stream=R.STREAM)
        await js.publish("events.reservation.a.b", b'{"type": "tickets-reserved", "id": "a.b"}')  # two tokens
        await R.reserve(js, "after", timeout=0.5)

        async def both():
            done = {e.id for e in await R.read_events(js) if e.type == R.TIMED_OUT}
            return {"before", "after"} <= done

        await wait_for(both, timeout=10)
        assert svc.stats["skipped"] == len(HOSTILE) + 1 and svc.stats["stored"] == 2
        assert "Traceback" not in caplog.text
    finally:
        await svc.stop()


async def test_a_drain_item_that_is_not_text_is_dead_lettered_as_base64(nc):
    js = nc.jetstream()
    name = "binary"

    async def handler(msg):
        msg.data.decode()  # a handler that expects text: raises on the bytes below

    drainer = Drainer(js, name, handler, DrainSettings(max_deliver=1, fetch_timeout=0.2, probe_timeout=0.1),
                      listen_for_ticks=False)
    await drainer.start()
    try:
        await js.publish(queue_names(name).item_subject("bin"), b"\xff\xfe\x00")
        await js.publish(queue_names(name).item_subject("ok"), b'{"id": 1}')
        report = await drainer.drain_once()
        (dead,) = await dead_letters(js, name)
        assert report.items == 1 and report.dead_lettered == 1
        assert dead["data_encoding"] == "base64" and "UnicodeDecodeError" in dead["reason"]
        json.dumps(dead)  # the dead letter itself is clean JSON
    finally:
        await drainer.stop()


async def test_a_tick_reader_keeps_going_after_hostile_messages(nc):
    """Any message on schedule.<name> is a tick (its body only describes the slot): garbage yields
    a tick stamped by the stream, never an exception, and real ticks after it still arrive."""
    js = nc.jetstream()
    ticks = TickConsumer(js, "hostile")
    await ticks.start()
    try:
        for payload in HOSTILE[:4]:
            await js.publish("schedule.hostile", payload)
        real = await publish_tick(js, "hostile")
        got = [await ticks.next(timeout=3) for _ in range(5)]
        assert [t.schedule for t in got] == ["hostile"] * 5 and got[-1].seq == real.seq
    finally:
        await ticks.stop()
