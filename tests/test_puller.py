"""natsdemo.drain.puller against a real server: batches, timeouts (never []), messages answered to a
fetch that was cancelled, a deleted consumer, one fetch at a time, and no task per message."""

from __future__ import annotations

import asyncio
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


async def test_an_empty_queue_raises_after_the_timeout_and_a_later_item_is_fetched(nc):
    js = nc.jetstream()
    puller, _ = await _queue(js, "pl-empty")
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no messages in 0\.3 s"):  # a builtin TimeoutError too
            await puller.fetch(100, timeout=0.3)
        assert 0.29 <= time.monotonic() - t0 < 1.0
        # a waiting fetch returns the item published while it waits
        later = asyncio.ensure_future(puller.fetch(100, timeout=3))
        await asyncio.sleep(0.3)
        await enqueue(js, "pl-empty", 1)
        [msg] = await later
        await msg.ack()
    finally:
        await puller.stop()


async def test_messages_answered_to_a_cancelled_fetch_are_kept_and_handed_back(nc):
    """A fetch cancelled while its request waits on the server (a stop, a timeout of the caller)
    leaves that request open: what the server sends to it later must not be stranded until
    ack_wait. The next fetch returns it; a Drainer's stop hands it back at once."""
    js = nc.jetstream()
    puller, names = await _queue(js, "pl-late", ack_wait=30)
    try:
        waiting = asyncio.ensure_future(puller.fetch(5, timeout=5))
        await asyncio.sleep(0.3)  # the no_wait request found nothing; the waiting one is on the server
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await enqueue(js, "pl-late", 3)
        await wait_for(lambda: _ack_pending(js, names, 3))  # delivered to the open request
        got = await puller.fetch(5, timeout=0.2)
        assert [m.metadata.sequence.stream for m in got] == [1, 2, 3]
        for m in got:
            await m.ack()
    finally:
        await puller.stop()

    # the same, through a Drainer that stops while holding them
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
