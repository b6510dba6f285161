"""natsdemo.drain.puller against a real server: batches, timeouts (never []), messages answered to a
fetch that was cancelled, a deleted consumer, one fetch at a time, and no task per message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from natsdemo.drain import Drainer, DrainSettings, enqueue, ensure_queue, queue_names
from natsdemo.drain.puller import NoMessages, Puller
from tests.conftest import wait_for


async def _queue(js, name: str, items: int = 0, **settings) -> tuple[Puller, object]:
    await ensure_queue(js, name, DrainSettings(**settings))
    if items:
        await enqueue(js, name, items)
    names = queue_names(name)
    return await Puller(js, names.stream, names.durable).start(), names


async def test_batches_are_capped_and_every_item_arrives_once(nc):
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-batches", 25)
    try:
        sizes, seqs = [], []
        while True:
            try:
                msgs = await puller.fetch(10, timeout=0.2)
            except NoMessages:
                break
            sizes.append(len(msgs))
            for m in msgs:
                seqs.append(m.metadata.sequence.stream)
                await m.ack()
        assert sizes == [10, 10, 5]
        assert seqs == list(range(1, 26))
    finally:
        assert await puller.stop() == []


async def test_an_empty_queue_raises_after_the_timeout_and_a_later_item_comes_at_once(nc):
    """An item published while a fetch waits is returned when it arrives, not when the timeout ends
    (a half-filled batch would hold it unseen, and with a short ack_wait the server would redeliver
    it into the same request)."""
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-empty")
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no messages in 0\.3 s"):  # a builtin TimeoutError too
            await puller.fetch(100, timeout=0.3)
        assert 0.29 <= time.monotonic() - t0 < 1.0
        later = asyncio.ensure_future(puller.fetch(100, timeout=5))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await enqueue(js, "pl-empty", 1)
        [msg] = await later
        waited = time.monotonic() - t0
        await msg.ack()
        assert waited < 1.0, f"the item waited {waited:.2f} s in a half-filled batch"
        # a batch that the queue cannot fill ends at once too: the server says "no more"
        await enqueue(js, "pl-empty", 5)
        t0 = time.monotonic()
        got = await puller.fetch(100, timeout=5)
        assert len(got) == 5 and time.monotonic() - t0 < 1.0
        for m in got:
            await m.ack()
    finally:
        await puller.stop()


async def test_a_stop_right_after_a_cancelled_fetch_strands_nothing(nc):
    """A fetch cancelled while the server is still sending its batch (a stop that timed out, say)
    leaves that request open. stop() waits for it to end, so everything it brought is returned to
    be handed back: the server's ack_pending equals what stop() returned, never more."""
    js = nc.jetstream()
    for delay in (0.003, 0.005, 0.007):
        name = f"pl-cancel-{int(delay * 1000)}"
        puller, names = await _queue(js, name, 3000, ack_wait=30, max_ack_pending=5000)
        fetching = asyncio.ensure_future(puller.fetch(3000, timeout=5))
        await asyncio.sleep(delay)
        fetching.cancel()
        got = await asyncio.gather(fetching, return_exceptions=True)
        held = await puller.stop()
        fetched = got[0] if isinstance(got[0], list) else []
        await nc.flush()
        pending = (await js.consumer_info(names.stream, names.durable)).num_ack_pending
        print(f"cancelled after {delay * 1000:.0f} ms: fetch returned {len(fetched)}, stop {len(held)}, "
              f"server ack_pending {pending}")
        assert pending == len(held) + len(fetched), "items out with this worker that it does not know of"
        for m in held + fetched:
            await m.nak()
        await js.delete_stream(names.stream)


async def test_a_cancelled_waiting_fetch_brings_its_items_to_the_next_fetch_or_the_drainer_gives_them_back(nc):
    js = nc.jetstream()
    puller, names = await _queue(js, "pl-late", ack_wait=30)
    try:
        waiting = asyncio.ensure_future(puller.fetch(5, timeout=5))
        await asyncio.sleep(0.3)  # the no_wait request found nothing; the waiting one is on the server
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await enqueue(js, "pl-late", 3)
        await wait_for(lambda: _ack_pending(js, names, 3))  # delivered to the request left open
        got = await puller.fetch(5, timeout=1)
        assert [m.metadata.sequence.stream for m in got] == [1, 2, 3]
        for m in got:
            await m.ack()
    finally:
        await puller.stop()

    # the same, through a Drainer that stops while holding it
    drainer = await Drainer(js, "pl-late", lambda msg: None, DrainSettings(ack_wait=30), listen_for_ticks=False).start()
    fetching = asyncio.ensure_future(drainer._puller.fetch(5, timeout=5))
    await asyncio.sleep(0.3)
    fetching.cancel()
    await asyncio.gather(fetching, return_exceptions=True)
    await enqueue(js, "pl-late", 2)
    await wait_for(lambda: _ack_pending(js, names, 2))
    await drainer.stop()
    # given back, not stranded until ack_wait (30 s): another worker gets them at once
    other = await Puller(js, names.stream, names.durable).start()
    try:
        t0 = time.monotonic()
        again = await other.fetch(5, timeout=5)
        assert [m.metadata.num_delivered for m in again] == [2, 2] and time.monotonic() - t0 < 2
        for m in again:
            await m.ack()
    finally:
        await other.stop()


async def test_an_item_with_its_own_status_header_is_an_item(nc):
    """Only a reply without an ack subject is a status: an application header named Status is data."""
    js = nc.jetstream()
    puller, names = await _queue(js, "pl-hdr")
    try:
        await js.publish(names.item_subject("x"), b"{}", headers={"Status": "ok"})
        [msg] = await puller.fetch(10, timeout=2)
        assert msg.headers["Status"] == "ok"
        await msg.ack()
    finally:
        await puller.stop()


async def test_a_pull_the_consumer_refuses_for_good_is_an_error_not_an_empty_queue(nc):
    from natsdemo.drain.puller import PullRefused

    js = nc.jetstream()
    await js.add_stream(name="PLMAX", subjects=["plmax.>"])
    for i in range(3):
        await js.publish(f"plmax.{i}", b"{}")
    # max_batch (max_request_batch) is not in nats-py's ConsumerConfig: create it through the JS API
    config = {"durable_name": "small", "ack_policy": "explicit", "max_batch": 10}
    reply = await nc.request("$JS.API.CONSUMER.CREATE.PLMAX.small",
                             json.dumps({"stream_name": "PLMAX", "config": config}).encode(), timeout=5)
    assert json.loads(reply.data).get("config", {}).get("max_batch") == 10, reply.data
    small = await Puller(js, "PLMAX", "small").start()
    try:
        with pytest.raises(PullRefused, match="409 Exceeded MaxRequestBatch"):
            await small.fetch(100, timeout=1)
        assert len(await small.fetch(10, timeout=1)) == 3
    finally:
        await small.stop()
        await js.delete_stream("PLMAX")


async def _ack_pending(js, names, n: int) -> bool:
    return (await js.consumer_info(names.stream, names.durable)).num_ack_pending == n


async def test_a_deleted_consumer_times_out_with_the_status_that_ended_the_request(nc):
    js = nc.jetstream()
    puller, names = await _queue(js, "pl-gone", 1)
    try:
        await js.delete_consumer(names.stream, names.durable)
        t0 = time.monotonic()
        with pytest.raises(NoMessages, match="last status: 503 no responders: the consumer does not exist") as gone:
            await puller.fetch(10, timeout=0.5)
        assert time.monotonic() - t0 >= 0.45  # waited out the timeout: a caller's loop never spins
        print(gone.value)
    finally:
        await puller.stop()


async def test_one_fetch_at_a_time_and_bad_arguments_are_refused(nc):
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-one")
    try:
        first = asyncio.ensure_future(puller.fetch(1, timeout=0.5))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="one fetch at a time"):
            await puller.fetch(1, timeout=0.5)
        with pytest.raises(NoMessages):
            await first
        for batch, timeout in ((0, 1.0), (1, 0.0), (1, float("nan"))):
            with pytest.raises(ValueError, match="batch >= 1 and timeout > 0"):
                await puller.fetch(batch, timeout)
    finally:
        await puller.stop()
    with pytest.raises(RuntimeError, match="start"):
        await puller.fetch(1, timeout=0.1)


async def test_a_batch_starts_no_task_per_message_where_nats_py_starts_one_each(nc):
    """The reason the Puller exists: count the asyncio tasks created while 200 items are fetched."""
    js = nc.jetstream()
    puller, names = await _queue(js, "pl-tasks", 400)
    loop = asyncio.get_running_loop()
    made = []
    factory = loop.get_task_factory()

    def counting(loop, coro, **kw):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kw) if factory is None else factory(loop, coro, **kw)

    loop.set_task_factory(counting)
    try:
        ours = await puller.fetch(200, timeout=2)
        ours_tasks = len(made)
        made.clear()
        psub = await js.pull_subscribe_bind(names.durable, stream=names.stream)
        made.clear()
        theirs = await psub.fetch(200, timeout=2)
        theirs_tasks = len(made)
    finally:
        loop.set_task_factory(factory)
    for m in ours + theirs:
        await m.ack()
    await psub.unsubscribe()
    await puller.stop()
    print(f"tasks for 200 items: Puller {ours_tasks}, nats-py fetch {theirs_tasks}")
    assert len(ours) == len(theirs) == 200
    assert ours_tasks <= 2 and theirs_tasks >= 200


async def test_a_drainer_with_a_short_ack_wait_handles_an_item_that_arrives_mid_wait_once(nc):
    """With a waiting request for a whole batch, an item that arrived during a long first fetch sat
    unseen until the timeout, and the server redelivered it into the same request every ack_wait:
    the handler then ran once per redelivery (4 times with ack_wait 1 s and a 4 s fetch)."""
    js = nc.jetstream()
    seen = []
    settings = DrainSettings(ack_wait=1, fetch_timeout=4, probe_timeout=0.1)
    drainer = await Drainer(js, "pl-short", lambda msg: seen.append(msg.metadata.num_delivered), settings,
                            listen_for_ticks=False).start()
    try:
        drain = asyncio.ensure_future(drainer.drain_once())
        await asyncio.sleep(0.3)
        await enqueue(js, "pl-short", 1)
        report = await asyncio.wait_for(drain, timeout=15)
    finally:
        await drainer.stop()
    assert seen == [1] and report.items == 1 and report.redeliveries == 0


async def test_a_batch_that_max_ack_pending_holds_back_comes_back_before_the_timeout(nc):
    """With max_ack_pending reached, the server sends what it may and then nothing, not even a
    status, until expiry: the fetch returns what came once the flow pauses, and the request stays
    open so what it brings after the acks goes to the next fetch."""
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-capped", 20, max_ack_pending=5)
    try:
        seen = []
        t0 = time.monotonic()
        first = await puller.fetch(10, timeout=5)
        took = time.monotonic() - t0
        assert len(first) == 5 and took < 1.0, f"{len(first)} items after {took:.2f} s"
        seen += first
        for m in first:
            await m.ack()
        while len(seen) < 20:  # the rest: from the request still open, then from new ones
            got = await puller.fetch(10, timeout=5)
            seen += got
            for m in got:
                await m.ack()
        assert sorted(m.metadata.sequence.stream for m in seen) == list(range(1, 21))
    finally:
        await puller.stop()


async def test_no_request_is_sent_while_disconnected_and_nothing_is_stranded_by_the_outage(tmp_path):
    """nats-py buffers what is published while it reconnects and sends it afterwards: a pull request
    buffered that way would be answered long after its fetch gave up. The Puller sends none while
    the connection is down, so after the outage every item out with it is one it returned."""
    import nats

    from natsdemo.workbook.server import NatsServer

    srv = await NatsServer(name="test-pl-outage", store_dir=tmp_path / "store").astart()
    nc = await nats.connect(srv.url, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        puller, names = await _queue(js, "pl-outage", 3000, ack_wait=30)
        srv.kill()
        await wait_for(lambda: not nc.is_connected, timeout=10)
        with pytest.raises(NoMessages, match="not connected"):
            await puller.fetch(500, timeout=0.5)
        await srv.astart()  # same port, same store
        got = []
        for _ in range(60):
            with contextlib.suppress(NoMessages):
                got = await puller.fetch(500, timeout=0.5)
                break
        held = await puller.stop()
        await nc.flush()
        out = (await js.consumer_info(names.stream, names.durable)).num_ack_pending
        assert len(got) == 500 and out == len(got) + len(held), (len(got), len(held), out)
    finally:
        await nc.close()
        await srv.astop()


async def test_workers_stopped_one_after_another_never_get_back_what_they_gave_back(nc):
    """A stopping worker naks what it holds. If one of its pull requests is still open (the
    prefetch's, or one that max_ack_pending holds), the server hands those items straight back to
    it, and it gives them back again, one delivery more each time, up to max_deliver unhandled.
    The Drainer waits until its Puller has no request open before it naks."""
    import collections

    from natsdemo.drain import dead_letters

    js = nc.jetstream()
    name, n = "pl-handoff", 2000
    settings = DrainSettings(batch=100, max_ack_pending=150, ack_wait=30, max_deliver=5)
    await ensure_queue(js, name, settings)
    await enqueue(js, name, n)
    received = collections.Counter()  # (worker, stream seq) -> deliveries that worker received
    handled = collections.Counter()

    def handler(worker):
        async def handle(msg):  # about 1 ms an item, so the stops come in the middle of the drain
            await asyncio.sleep(0.001)
            handled[msg.metadata.sequence.stream] += 1
        return handle

    workers = []
    for w in range(3):
        d = await Drainer(js, name, handler(w), settings, listen_for_ticks=False, worker=f"w{w}").start()
        real = d._puller._arrived

        async def counting(msg, w=w, real=real):
            if msg.reply:
                received[(w, msg.metadata.sequence.stream)] += 1
            await real(msg)

        d._puller._arrived = counting
        # the subscription holds the callback it was made with: make a new one that counts
        await d._puller._sub.unsubscribe()
        d._puller._sub = await nc.subscribe(f"{d._puller._inbox}.*", cb=counting)
        workers.append(d)
    for d in workers:
        d.request_drain()
    await asyncio.sleep(0.3)
    for d in workers:  # one after another, while the others still pull
        await d.stop()
    last = await Drainer(js, name, handler(9), settings, listen_for_ticks=False, worker="last").start()
    try:
        report = await asyncio.wait_for(last.drain_once(), timeout=30)
    finally:
        await last.stop()
    again = {key: count for key, count in received.items() if count > 1}
    print(f"the last worker handled {report.items} of {n}; items a stopping worker got twice: {len(again)}")
    assert not again, f"a stopping worker got back what it gave back: {list(again.items())[:5]}"
    assert sorted(handled) == list(range(1, n + 1)) and report.ended == "empty"
    assert await dead_letters(js, name) == []


async def test_a_fetch_that_gives_up_leaves_no_request_of_its_own_open(nc):
    """A request still open after its fetch raised NoMessages would be answered into a pool that
    nobody reads until the next fetch: a drain that ended "empty" right then left those items out
    until ack_wait. The request's expires ends before the fetch's deadline, and the fetch waits a
    little for a late final word."""
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-giveup", ack_wait=30)
    try:
        left_open = 0
        for i in range(30):
            with pytest.raises(NoMessages):
                await puller.fetch(100, timeout=0.05)
            left_open += puller._open is not None
            await enqueue(js, "pl-giveup", 1, start=i)  # published right after the give-up
            [msg] = await puller.fetch(100, timeout=2)
            assert msg.metadata.num_delivered == 1
            await msg.ack()
        assert left_open == 0, f"{left_open} of 30 fetches gave up with their request still open"
    finally:
        await puller.stop()


async def test_a_message_that_arrives_just_before_the_deadline_is_returned_not_left_behind(nc):
    """With max_ack_pending 1, a fetch returns its one message after QUIET and leaves its request
    open; the next fetch waits on that request. If the next message arrives less than QUIET before
    that fetch's deadline, it must be returned, not left in the pool behind a NoMessages."""
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-edge", 40, max_ack_pending=1, ack_wait=30)
    try:
        [first] = await puller.fetch(5, timeout=2)
        behind = 0
        for offset_ms in range(185, 200):  # ack the message in hand just before the next deadline
            ack_later = asyncio.get_running_loop().call_later(offset_ms / 1000, asyncio.ensure_future, first.ack())
            try:
                got = await puller.fetch(5, timeout=0.2)
            except NoMessages:
                behind += len(puller._pool) > 0  # (holding, in the public API)
                got = await puller.fetch(5, timeout=2)
            ack_later.cancel()
            assert len(got) == 1
            first = got[0]
        await first.ack()
        assert behind == 0, f"{behind} of 15 fetches raised NoMessages with a message in hand"
    finally:
        await puller.stop()
