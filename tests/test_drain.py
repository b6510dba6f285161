"""natsdemo.drain in one process, against a real server: names, idempotent setup, coalesced ticks,
failures and dead letters, graceful stop, and the CLI's one-shot modes and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import pytest

from natsdemo.core.errors import UsageError
from natsdemo.drain import (
    Drainer,
    DrainSettings,
    dead_letters,
    enqueue,
    ensure_queue,
    queue_names,
    queue_state,
)
from natsdemo.ticks import publish_tick
from tests.conftest import assert_one_line_error, run_cli, wait_for

FAST = DrainSettings(batch=50, ack_wait=5, max_deliver=3, nak_delay=0.05, max_nak_delay=0.2, fetch_timeout=0.3)


async def settled(js, name):
    st = await queue_state(js, name)
    return st if st["pending"] == 0 and st["ack_pending"] == 0 else None


async def settled_acks(js):
    st = await queue_state(js, "eod")
    return st if st["ack_pending"] == 0 else None


def test_names_derive_from_the_queue_name():
    n = queue_names("end-of-day")
    assert (n.stream, n.subjects, n.durable) == ("END_OF_DAY_QUEUE", "end-of-day-queue.>", "end-of-day")
    assert (n.dead_stream, n.tick_subject) == ("END_OF_DAY_DEAD", "schedule.end-of-day")
    assert n.dead_subject("end-of-day-queue.orders.7") == "end-of-day-dead.orders.7"
    for bad in ("a.b", "", "x y", "eod>", "*", "eod\n", "x" * 49):  # "eod\n" slipped past a "^...$" regex
        with pytest.raises(UsageError, match="is not subject-safe"):
            queue_names(bad)
    with pytest.raises(UsageError, match="--batch"):
        DrainSettings(batch=0).validate()


async def test_setup_is_idempotent_and_updates_settings(nc):
    js = nc.jetstream()
    first = await ensure_queue(js, "eod", FAST)
    again = await ensure_queue(js, "eod", FAST)
    assert first.config.ack_wait == again.config.ack_wait == 5
    assert str(getattr(first.config.ack_policy, "value", first.config.ack_policy)) == "explicit"
    changed = await ensure_queue(js, "eod", DrainSettings(ack_wait=7, max_deliver=4))
    assert (changed.config.ack_wait, changed.config.max_deliver) == (7, 4)
    assert len(await js.consumers_info("EOD_QUEUE")) == 1
    retention = (await js.stream_info("EOD_QUEUE")).config.retention
    assert str(getattr(retention, "value", retention)) == "workqueue"


async def test_ticks_during_a_drain_coalesce_into_one_follow_up(nc):
    js = nc.jetstream()
    active, most = 0, 0

    async def slow(msg):
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.002)
        active -= 1

    d = await Drainer(js, "eod", slow, FAST).start()
    try:
        await enqueue(js, "eod", 600)
        await publish_tick(js, "eod")
        await wait_for(lambda: d.draining)
        slot = datetime.now(UTC)
        for i in range(3):  # three more ticks (three different slots) while draining
            await publish_tick(js, "eod", scheduled_at=slot.replace(year=slot.year + 1 + i))
        await wait_for(lambda: d.metrics.drains >= 2 and not d.draining)
        await asyncio.sleep(0.3)
        assert d.metrics.ticks == 4
        assert d.metrics.drains == 2, d.metrics  # one drain + one follow-up, not four
        assert d.metrics.coalesced >= 3
        assert most == 1  # never two drains at once in one worker
        assert d.metrics.items == 600
        assert await settled(js, "eod")
    finally:
        await d.stop()


async def test_a_duplicate_tick_drains_once(nc):
    js = nc.jetstream()
    d = await Drainer(js, "eod", lambda m: None, FAST).start()
    try:
        slot = datetime.now(UTC)
        a = await publish_tick(js, "eod", scheduled_at=slot)
        b = await publish_tick(js, "eod", scheduled_at=slot)  # a second ticker, same slot
        assert b.duplicate and b.seq == a.seq
        await wait_for(lambda: d.metrics.drains == 1 and not d.draining)
        await asyncio.sleep(0.5)
        assert d.metrics.ticks == 1
    finally:
        await d.stop()


async def test_poison_item_goes_to_dead_letters_and_the_rest_drains(nc):
    js = nc.jetstream()
    done: list[bytes] = []
    attempts = 0

    def handler(msg):
        nonlocal attempts
        if b"poison" in msg.data:
            attempts += 1
            raise ValueError("cannot parse this item")
        done.append(msg.data)

    terminated = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>")
    d = await Drainer(js, "eod", handler, FAST).start()
    try:
        await enqueue(js, "eod", 100)
        await js.publish("eod-queue.orders.7", b'{"id": "poison"}')
        await enqueue(js, "eod", 100, start=100)
        await publish_tick(js, "eod")
        await wait_for(lambda: settled(js, "eod"))
        assert len(done) == 200 and attempts == 3
        [dead] = await dead_letters(js, "eod")
        assert dead["subject"] == "eod-queue.orders.7"
        assert dead["deliveries"] == 3 and dead["stream_seq"] == 101
        assert dead["reason"] == "ValueError: cannot parse this item"
        assert json.loads(dead["data"]) == {"id": "poison"}
        assert d.metrics.dead_lettered == 1 and d.metrics.failures == 3 and d.metrics.redeliveries == 2
        assert (await queue_state(js, "eod"))["stored"] == 0  # terminated, so gone from the work queue
        adv = json.loads((await terminated.next_msg(timeout=2)).data)
        assert adv["stream_seq"] == 101 and "cannot parse" in adv.get("reason", "")
    finally:
        await d.stop()


async def test_graceful_stop_naks_the_rest_of_the_batch(nc):
    js = nc.jetstream()
    count = 0

    async def slow(msg):
        nonlocal count
        await asyncio.sleep(0.01)
        count += 1

    settings = DrainSettings(batch=200, ack_wait=60, fetch_timeout=0.3)
    d = await Drainer(js, "eod", slow, settings, listen_for_ticks=False).start()
    await enqueue(js, "eod", 1000)
    d.request_drain()
    await wait_for(lambda: count >= 20)
    await d.stop()
    first = count
    assert d.metrics.items == first and d.metrics.last.ended == "stopped"
    # the unfinished rest of the batch was nak'd: a second worker gets it at once, not after ack_wait (60 s)
    d2 = await Drainer(js, "eod", lambda m: None, settings, listen_for_ticks=False).start()
    try:
        report = await asyncio.wait_for(d2.drain_once(), timeout=10)
    finally:
        await d2.stop()
    assert first + report.items == 1000
    assert 0 < report.redeliveries <= 2 * 200 - first  # this batch and the prefetched one
    assert await settled(js, "eod")


def test_cli_rejects_bad_input_before_connecting():
    bad = [
        (["--name", "a.b"], "not subject-safe"),
        (["--batch", "0"], "--batch"),
        (["--fail-rate", "2"], "--fail-rate"),
        (["--ack-wait", "0"], "--ack-wait"),
    ]
    for args, fragment in bad:
        proc = run_cli("drain", *args, "--server", "nats://127.0.0.1:1", timeout=20)
        assert proc.returncode == 2
        assert_one_line_error(proc, "natsdemo drain: error:", fragment)


async def test_cli_enqueue_then_drain_once_with_a_poison_item(nats_server, nc, tmp_path):
    url, log = nats_server.url, tmp_path / "processed.log"
    proc = run_cli("drain", "--name", "cli-q", "--server", url, "--enqueue", "300", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "enqueued 300 items on cli-q-queue.item" in proc.stdout
    await nc.jetstream().publish("cli-q-queue.bad", b'{"id": "poison-1"}')
    proc = await asyncio.to_thread(
        run_cli, "drain", "--name", "cli-q", "--server", url, "--once", "--worker", "w1", "--fail-match", "poison",
        "--max-deliver", "2", "--nak-delay", "0.05", "--processed-log", str(log), timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "w1: drained 300 items" in proc.stdout and "1 dead-lettered; empty" in proc.stdout, proc.stdout
    assert len(log.read_text().splitlines()) == 300
    [dead] = await dead_letters(nc.jetstream(), "cli-q")
    assert dead["subject"] == "cli-q-queue.bad" and "poison item" in dead["reason"] and dead["worker"] == "w1"


def test_bench_drain_quick_runs_all_three_contenders(tmp_path):
    out = run_cli("bench", "drain", "--quick", "--json", str(tmp_path / "b.json"), timeout=120)
    assert out.returncode == 0, out.stderr
    figures = {f["name"]: f["value"] for f in json.loads((tmp_path / "b.json").read_text())["figures"]}
    for name in ("Drainer", "hand-tuned fetch+ack loop", "seed's Fetch(10) loop", "Drainer / hand-tuned"):
        assert figures[name] > 0, figures


async def test_slow_batches_are_kept_alive_with_in_progress(nc):
    js = nc.jetstream()
    seen: list[bytes] = []

    async def slow(msg):
        await asyncio.sleep(0.1)
        seen.append(msg.data)

    # a batch of 10 takes ~1 s and the prefetched one waits as long: both outlive ack_wait (1 s)
    settings = DrainSettings(batch=10, ack_wait=1, fetch_timeout=0.3)
    d = await Drainer(js, "eod", slow, settings, listen_for_ticks=False).start()
    try:
        await enqueue(js, "eod", 30)
        report = await asyncio.wait_for(d.drain_once(), timeout=20)
    finally:
        await d.stop()
    assert report.items == 30 and report.redeliveries == 0
    assert len(seen) == len(set(seen)) == 30


async def test_an_item_never_acked_stops_at_max_deliver_and_stays_in_the_stream(nc):
    # a worker that crashes on every delivery never acks, naks or terms: no dead letter is written
    js = nc.jetstream()
    names = queue_names("crashy")
    await ensure_queue(js, "crashy", DrainSettings(ack_wait=0.5, max_deliver=2))
    advisories = await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{names.stream}.{names.durable}")
    ack = await js.publish(names.item_subject("orders.9"), b'{"id": "crash"}')
    psub = await js.pull_subscribe_bind(names.durable, stream=names.stream)
    try:
        delivered = []
        for _ in range(2):  # each fetch is one "crashed" attempt: the item comes back after ack_wait
            [msg] = await psub.fetch(1, timeout=3)
            delivered.append(msg.metadata.num_delivered)
        assert delivered == [1, 2]
        with pytest.raises(TimeoutError):  # max_deliver reached: no third attempt
            await psub.fetch(1, timeout=1.5)
        advisory = json.loads((await advisories.next_msg(timeout=2)).data)
    finally:
        await psub.unsubscribe()
    assert advisory["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
    assert advisory["stream_seq"] == ack.seq and advisory["deliveries"] == 2
    kept = await js.get_msg(names.stream, ack.seq)  # never acked, so the work-queue stream keeps it
    assert kept.data == b'{"id": "crash"}' and (await js.stream_info(names.stream)).state.messages == 1
    assert (await js.stream_info(names.dead_stream)).state.messages == 0  # nobody wrote a dead letter


async def test_dead_letters_of_an_empty_queue_is_an_empty_list(nc):
    from natsdemo.drain import dead_letters, ensure_queue

    js = nc.jetstream()
    await ensure_queue(js, "empty-dead")
    assert await dead_letters(js, "empty-dead") == []


async def test_default_queue_contract_is_as_documented(nc):
    """README: work-queue stream on NAME-queue.>, durable NAME, explicit acks, 30 s / 5 / 4096."""
    from nats.js.api import AckPolicy, RetentionPolicy

    js = nc.jetstream()
    info = await ensure_queue(js, "docs-q")
    assert info.name == "docs-q" and info.stream_name == "DOCS_Q_QUEUE"
    cfg = info.config
    assert (cfg.ack_policy, cfg.ack_wait, cfg.max_deliver, cfg.max_ack_pending) == (AckPolicy.EXPLICIT, 30, 5, 4096)
    stream = await js.stream_info("DOCS_Q_QUEUE")
    assert stream.config.subjects == ["docs-q-queue.>"] and stream.config.retention == RetentionPolicy.WORK_QUEUE
    assert (await js.stream_info("DOCS_Q_DEAD")).config.subjects == ["docs-q-dead.>"]


async def test_a_stale_status_ends_a_nats_py_fetch_early_but_not_a_puller_fetch(nc):
    """nats-py's fetch sometimes returns [] instead of raising (nats.py #709): the server's "request
    timeout" of an earlier pull on the same inbox arrives while a later fetch waits, and ends it.
    The Puller gives each request its own reply subject, so a stale status is ignored: the same
    sequence of earlier pulls never yields [] and drains count no phantom batch."""
    from natsdemo.drain.puller import Puller

    js = nc.jetstream()
    name = "emptyfetch"
    settings = DrainSettings(fetch_timeout=0.05, probe_timeout=0.05, prefetch=False)
    await ensure_queue(js, name, settings)
    names = queue_names(name)

    async def outcomes(fetch) -> list[str]:
        seen = []
        for _ in range(30):
            for _ in range(3):  # earlier pulls that found nothing, their 408s still on the way
                with contextlib.suppress(TimeoutError):
                    await fetch(settings.batch, timeout=0.05)
            try:
                seen.append("[]" if await fetch(settings.batch, timeout=0.05) == [] else "msgs")
            except TimeoutError:
                seen.append("timeout")
        return seen

    psub = await js.pull_subscribe_bind(names.durable, stream=names.stream)
    try:
        bug = await outcomes(psub.fetch)
    finally:
        await psub.unsubscribe()
    puller = await Puller(js, names.stream, names.durable).start()
    try:
        fixed = await outcomes(puller.fetch)
    finally:
        assert await puller.stop() == []
    print(f"nats-py fetch returned [] {bug.count('[]')} times in 30; the Puller {fixed.count('[]')} times")
    assert bug.count("[]") > 0, "the [] case did not occur: this test would prove nothing"
    assert fixed == ["timeout"] * 30

    drainer = await Drainer(js, name, lambda msg: None, settings, listen_for_ticks=False).start()
    try:
        reports = [await drainer.drain_once() for _ in range(10)]
        assert [(r.items, r.batches, r.ended) for r in reports] == [(0, 0, "empty")] * 10
        await enqueue(js, name, 30)
        full = await drainer.drain_once()
        assert full.items == 30 and full.ended == "empty" and 1 <= full.batches <= 30
        assert drainer.metrics.items == 30 and drainer.metrics.batches == full.batches
    finally:
        await drainer.stop()


async def test_a_dead_letter_whose_first_publish_fails_still_lands(nc):
    """The dead-letter stream answers nothing for a moment (as in an election) when the poison item
    makes its last attempt: the dead letter is retried with back-off and stored once."""
    js = nc.jetstream()
    name = "dlretry"
    settings = DrainSettings(max_deliver=2, nak_delay=0.05, max_nak_delay=0.1, fetch_timeout=0.2, probe_timeout=0.1)

    async def handler(msg):
        raise ValueError("always fails")

    drainer = Drainer(js, name, handler, settings, listen_for_ticks=False)
    await drainer.start()
    names = queue_names(name)
    dead_config = (await js.stream_info(names.dead_stream)).config
    try:
        await js.delete_stream(names.dead_stream)  # gone: the first dead-letter publish gets no answer

        async def come_back() -> None:
            await asyncio.sleep(1.0)
            await js.add_stream(dead_config)

        back = asyncio.ensure_future(come_back())
        await js.publish(names.item_subject("x"), b'{"id": "poison"}')
        report = await drainer.drain_once()
        await back
        dead = await dead_letters(js, name)
        assert report.dead_lettered == 1 and [d["reason"] for d in dead] == ["ValueError: always fails"]
        assert (await js.stream_info(names.stream)).state.messages == 0
    finally:
        await drainer.stop()


async def test_concurrent_handlers_run_at_once_and_each_item_is_acked_once(nc):
    js = nc.jetstream()
    running = peak = 0
    seen: list[bytes] = []

    async def waits_on_io(msg):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        seen.append(msg.data)

    settings = DrainSettings(batch=50, ack_wait=5, fetch_timeout=0.3)
    d = await Drainer(js, "eod", waits_on_io, settings, listen_for_ticks=False, concurrency=8).start()
    try:
        await enqueue(js, "eod", 400)
        report = await asyncio.wait_for(d.drain_once(), timeout=30)
    finally:
        await d.stop()
    assert peak == 8, peak  # never more than asked for, and the slots were used
    assert report.items == 400 and report.redeliveries == 0 and report.failures == 0
    assert len(seen) == len(set(seen)) == 400
    assert await settled(js, "eod")


async def test_a_concurrent_worker_that_stops_finishes_what_it_holds_and_gives_back_the_rest(nc):
    js = nc.jetstream()
    finished: list[bytes] = []

    async def slow(msg):
        await asyncio.sleep(0.2)
        finished.append(msg.data)

    settings = DrainSettings(batch=100, ack_wait=60, fetch_timeout=0.3)
    d = await Drainer(js, "eod", slow, settings, listen_for_ticks=False, concurrency=10).start()
    await enqueue(js, "eod", 500)
    d.request_drain()
    await wait_for(lambda: len(finished) >= 20)
    await d.stop()
    first = len(finished)
    assert d.metrics.items == first  # every item whose handler ran was acked, none is left running
    d2 = await Drainer(js, "eod", lambda m: None, settings, listen_for_ticks=False).start()
    try:  # the rest comes at once (nak'd), not after ack_wait (60 s)
        report = await asyncio.wait_for(d2.drain_once(), timeout=10)
    finally:
        await d2.stop()
    assert first + report.items == 500
    assert await settled(js, "eod")


def test_impossible_concurrency_settings_are_refused_before_connecting():
    bad = [
        (["--concurrency", "0"], "--concurrency must be between 1 and 1024"),
        (["--concurrency", "64", "--max-ack-pending", "10"], "--max-ack-pending 10 is below --concurrency 64"),
        (["--concurrency", "64", "--batch", "10"], "--batch 10 is below --concurrency 64"),
        (["--concurrency", "4", "--ack-wait", "0.5"], "--ack-wait 0.5 is too short for --concurrency 4"),
    ]
    for args, fragment in bad:
        proc = run_cli("drain", *args, "--server", "nats://127.0.0.1:1", timeout=20)
        assert proc.returncode == 2, proc.stderr
        assert_one_line_error(proc, "natsdemo drain: error:", fragment)


async def test_concurrency_needs_an_async_handler(nc):
    with pytest.raises(UsageError, match="needs an async handler"):
        Drainer(nc.jetstream(), "eod", lambda m: None, concurrency=4)


async def test_the_drain_command_with_concurrency_8_processes_every_item_once(nats_server, nc, tmp_path):
    url, log = nats_server.url, tmp_path / "processed.log"
    assert run_cli("drain", "--name", "conc", "--server", url, "--enqueue", "400", timeout=30).returncode == 0
    proc = await asyncio.to_thread(
        run_cli, "drain", "--name", "conc", "--server", url, "--once", "--worker", "w1", "--concurrency", "8",
        "--work-ms", "20", "--batch", "100", "--processed-log", str(log), timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "w1: drained 400 items" in proc.stdout, proc.stdout
    seqs = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sorted(seqs) == list(range(1, 401))  # every item once: no loss, no duplicate
    assert await settled(nc.jetstream(), "conc")
