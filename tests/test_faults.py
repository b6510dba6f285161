"""The three services under network and server faults, through a fault proxy: a 20 s stall, a
peer that vanishes without a word, and the server SIGKILLed and restarted on its store. After
each, the invariants hold: no tick slot stored twice, every drain item processed (duplicates only
from the fault, counted), exactly one timeout per unpurchased reservation and none after a purchase.
The three scenarios run side by side, each on its own server."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from pathlib import Path

import pytest

from natsdemo import drain
from natsdemo import reservations as R
from natsdemo.core.connect import connect
from natsdemo.ticks import SCHEDULE_STREAM
from natsdemo.workbook.labs.drain import read_processed_log
from natsdemo.workbook.server import NatsServer
from natsdemo.workbook.services import ServiceProcess
from tests.conftest import until
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.slow
ITEMS, RESERVATIONS, TIMEOUT = 600, 12, 3.0


async def _scenario(kind: str, tmp: Path) -> dict[str, float]:
    srv = await NatsServer(name=f"test-fault-{kind}", store_dir=tmp / "store").astart()
    proxy = await FaultProxy("127.0.0.1", int(srv.url.rsplit(":", 1)[1])).start()
    log = tmp / "processed.log"
    url = ["--server", proxy.url]
    services = {
        "tick": ServiceProcess(f"{kind}-tick", ["tick", "--cron", "* * * * * *", "--name", "eod", "--quiet", *url],
                               ready=r"^ticking "),
        "drain": ServiceProcess(f"{kind}-drain", ["drain", "--name", "eod", "--worker", "w1", "--ack-wait", "5",
                                                  "--processed-log", str(log), "--quiet", *url], ready=r"^draining "),
        "reservations": ServiceProcess(f"{kind}-res", ["reservations", "--name", "r1", "--quiet", *url],
                                       ready=r" watching "),
    }
    nc = None
    try:
        for s in services.values():
            s.start()
        await asyncio.gather(*(s.await_ready(60) for s in services.values()))
        nc = await connect(srv.url, reconnect_time_wait=0.2)
        js = nc.jetstream()
        await drain.enqueue(js, "eod", ITEMS // 2)
        ids = [f"{kind}-{i}" for i in range(RESERVATIONS)]
        for rid in ids:
            await R.reserve(js, rid, TIMEOUT)
        purchased = set(ids[::3])
        for rid in purchased:
            await R.purchase(js, rid)
        figures: dict[str, float] = {}
        started = time.monotonic()
        if kind == "stall":
            proxy.stall(20)
            await until(lambda: all("disconnected from NATS" in s.log_text() for s in services.values()), 20)
            figures["noticed after s"] = time.monotonic() - started
            await asyncio.sleep(max(0.0, 20 - (time.monotonic() - started)))
        elif kind == "vanish":
            proxy.vanish()
            await until(lambda: all("disconnected from NATS" in s.log_text() for s in services.values()), 40)
            figures["noticed after s"] = time.monotonic() - started
        else:  # the server dies and comes back on the same store
            srv.kill()
            await asyncio.sleep(3)
            await srv.astart()
        figures["fault s"] = time.monotonic() - started
        await nc.close()
        nc = await connect(srv.url, reconnect_time_wait=0.2)
        js = nc.jetstream()
        await drain.enqueue(js, "eod", ITEMS // 2, start=ITEMS // 2)  # work that arrives after the fault

        async def settled():
            by_id = collections.defaultdict(list)
            for ev in await R.read_events(js):
                by_id[ev.id].append(ev.type)
            queue = (await js.stream_info(drain.queue_names("eod").stream)).state.messages
            done = all(len(by_id[r]) == 2 for r in ids) and queue == 0 and len(
                {seq for _, seq, _ in read_processed_log(str(log))}) >= ITEMS
            return by_id if done else None

        by_id = await until(settled, 90, 0.5, tolerate=(Exception,))
        assert by_id, f"{kind}: the services did not finish after the fault"
        for rid in ids:
            assert by_id[rid] == [R.RESERVED, R.PURCHASED if rid in purchased else R.TIMED_OUT], (kind, rid)
        rows = read_processed_log(str(log))
        counts = collections.Counter(seq for _, seq, _ in rows)
        figures["items processed twice"] = sum(1 for n in counts.values() if n > 1)
        slots = collections.Counter()
        ticks = await js.subscribe("schedule.eod", stream=SCHEDULE_STREAM, ordered_consumer=True)
        while True:
            try:
                msg = await ticks.next_msg(timeout=1)
            except TimeoutError:
                break
            slots[json.loads(msg.data)["scheduled_at"]] += 1
        await ticks.unsubscribe()
        assert slots and max(slots.values()) == 1, f"{kind}: a tick slot stored twice"
        figures["ticks stored"] = len(slots)
        figures["timeouts"] = sum(1 for r in ids if r not in purchased)
        return figures
    finally:
        await asyncio.gather(*(s.astop() for s in services.values()))  # never block the other scenarios
        for s in services.values():
            s.remove_log()
        if nc is not None:
            await nc.close()
        await proxy.stop()
        await srv.astop()


async def test_services_keep_their_invariants_through_stall_vanish_and_restart(tmp_path: Path):
    kinds = ("stall", "vanish", "restart")
    for k in kinds:
        (tmp_path / k).mkdir()
    results = await asyncio.gather(*(_scenario(k, tmp_path / k) for k in kinds))
    for kind, figures in zip(kinds, results, strict=True):
        print(kind, {k: round(v, 1) for k, v in figures.items()})
    by_kind = dict(zip(kinds, results, strict=True))
    assert by_kind["stall"]["noticed after s"] < 20  # within the stall: the ping settings noticed it
    assert by_kind["vanish"]["noticed after s"] < 30
