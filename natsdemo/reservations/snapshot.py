"""Snapshots of the pending reservations, so a timer service starts in time bounded by the live work.

Without them a starting service replays ``RESERVATIONS`` from its first message: after a month of
traffic, a restart (the moment timers matter most) reads the whole month. With them a running
service writes, now and then, the set of reservations still undecided after stream sequence ``S``
("the snapshot covers ``S``"); a starting service loads the newest snapshot and replays only the
events after ``S``. The pending set after ``S`` is a function of the events up to ``S`` alone, so
whichever instance wrote the snapshot, loading it and replaying the tail rebuilds exactly what a full
replay would: the same timers, the same deadlines, the same reserved sequences for the guard.

Stream ``RESERVATION_SNAPSHOTS`` on ``snapshots.reservation.>``:

* ``snapshots.reservation.chunk.<writer>.<S>``: the entries, ``{"type": "reservation-snapshot-chunk",
  "index": i, "entries": [[id, reserved seq, deadline], ...]}``, at most ``chunk`` entries each
  (a message stays far below the 1 MB payload limit);
* ``snapshots.reservation.head``: written last, ``{"type": "reservation-snapshot", "covers": S,
  "stream_created": ..., "chunks": n, "entries": m, "subject": ..., "by": writer}``.

A crash at any point leaves a usable state: chunks without a head are never read (the previous
head and its chunks are only removed after the new head is stored), and a head is only written if
no other head landed since the writer looked (``Nats-Expected-Last-Subject-Sequence``), so two
instances snapshotting at once cannot leave a head whose chunks the other purged. A reader checks
the head against the stream (same creation time, ``S`` not past its last sequence) and the chunks
against the head; anything that does not add up means a full replay (slow, never wrong), logged.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from natsdemo.core.names import check_token
from natsdemo.core.publish import publish_acked, refused_by_guard
from natsdemo.core.streams import create_stream_if_missing, replicas_for, retrying

log = logging.getLogger("natsdemo.reservations")

SNAPSHOT_STREAM = "RESERVATION_SNAPSHOTS"
SNAPSHOTS = "snapshots.reservation"
HEAD = f"{SNAPSHOTS}.head"
CHUNK_ENTRIES = 5_000  # about 300 KB of JSON per chunk with 64-character ids
SNAPSHOT_EVERY = 60.0  # seconds: at most this long between snapshots while events arrive
SNAPSHOT_EVENTS = 10_000  # events: a snapshot as soon as this many arrived since the last one
HEAD_TYPE, CHUNK_TYPE = "reservation-snapshot", "reservation-snapshot-chunk"

# reservation id, seq of its tickets-reserved event, deadline in epoch seconds (a JSON float: exact both ways)
Entry = tuple[str, int, float]


def chunk_subject(writer: str, covers: int) -> str:
    """``snapshots.reservation.chunk.<writer>.<S>``."""
    return f"{SNAPSHOTS}.chunk.{check_token(writer, 'writer', 64)}.{covers}"


def chunk_body(index: int, entries: list[Entry]) -> bytes:
    """``{"type": "reservation-snapshot-chunk", "index", "entries"}``, compact JSON."""
    return json.dumps({"type": CHUNK_TYPE, "index": index, "entries": entries}, separators=(",", ":")).encode()


def head_body(*, covers: int, stream_created: str, chunks: int, entries: int, subject: str, by: str) -> bytes:
    """``{"type": "reservation-snapshot", "covers", "stream_created", "chunks", "entries", "subject", "by"}``."""
    return json.dumps({"type": HEAD_TYPE, "covers": covers, "stream_created": stream_created, "chunks": chunks,
                       "entries": entries, "subject": subject, "by": by}).encode()


def snapshot_stream_config(replicas: int = 1) -> api.StreamConfig:
    """``RESERVATION_SNAPSHOTS``: file storage; old snapshots are purged by the writer of a newer one."""
    return api.StreamConfig(
        name=SNAPSHOT_STREAM, subjects=[f"{SNAPSHOTS}.>"], storage=api.StorageType.FILE, num_replicas=replicas,
        max_msg_size=1024 * 1024,
    )


async def ensure_snapshot_stream(js: Any, replicas: int | None = None) -> Any:
    return await create_stream_if_missing(js, snapshot_stream_config(replicas_for(js, replicas)))


@dataclass
class Snapshot:
    """A loaded snapshot: every entry undecided after stream sequence ``covers``."""

    covers: int
    entries: list[Entry]
    by: str


async def _last_head(js: Any) -> tuple[int, dict[str, Any] | None]:
    """(stream seq of the newest head or 0, its body or None)."""
    try:
        msg = await js.get_last_msg(SNAPSHOT_STREAM, HEAD)
    except nats.js.errors.NotFoundError:  # no stream, or no head yet
        return 0, None
    try:
        body = json.loads(msg.data)
    except ValueError:
        body = None
    return msg.seq, body if isinstance(body, dict) and body.get("type") == HEAD_TYPE else None


async def load(js: Any, stream_info: Any, *, timeout: float = 10.0) -> Snapshot | None:
    """The newest usable snapshot of ``RESERVATIONS`` (described by ``stream_info``), or None.

    None (and a log line saying why) when there is none, or it belongs to an earlier incarnation of
    the stream, or its chunks do not match its head: the caller then replays everything.
    """
    _, head = await _last_head(js)
    if head is None:
        return None
    created = getattr(stream_info, "created", None)
    problem = None
    if str(head.get("stream_created")) != str(created):
        problem = "it was taken of an earlier RESERVATIONS stream"
    elif not isinstance(head.get("covers"), int) or head["covers"] > stream_info.state.last_seq:
        problem = f"it covers seq {head.get('covers')}, past the stream's last ({stream_info.state.last_seq})"
    elif stream_info.state.first_seq > head["covers"] + 1:  # purged, or aged out: the tail is incomplete
        problem = (f"events after seq {head['covers']} are gone from the stream "
                   f"(it starts at {stream_info.state.first_seq})")
    if problem:
        log.warning("ignoring the reservation snapshot by %s: %s; replaying everything", head.get("by"), problem)
        return None
    try:
        entries = await _read_chunks(js, head, timeout)
    except (ValueError, TypeError, KeyError, TimeoutError, nats.errors.Error) as exc:
        log.warning("ignoring the reservation snapshot by %s (%s); replaying everything", head.get("by"), exc)
        return None
    return Snapshot(covers=head["covers"], entries=entries, by=str(head.get("by")))


async def _read_chunks(js: Any, head: dict[str, Any], timeout: float) -> list[Entry]:
    chunks, want = int(head["chunks"]), int(head["entries"])
    entries: list[Entry] = []
    stored = (await js.stream_info(SNAPSHOT_STREAM, subjects_filter=str(head["subject"]))).state.subjects or {}
    if stored.get(str(head["subject"]), 0) != chunks:
        raise ValueError(f"{stored.get(str(head['subject']), 0)} chunks stored where the head says {chunks}")
    if chunks:
        sub = await js.subscribe(str(head["subject"]), stream=SNAPSHOT_STREAM, ordered_consumer=True,
                                 pending_msgs_limit=-1)
        try:
            for index in range(chunks):
                msg = await sub.next_msg(timeout=timeout)
                body = json.loads(msg.data)
                if body.get("type") != CHUNK_TYPE or body.get("index") != index:
                    raise ValueError(f"chunk {index} is missing or out of order")
                entries.extend((str(e[0]), int(e[1]), float(e[2])) for e in body["entries"])
        finally:
            await sub.unsubscribe()
    if len(entries) != want:
        raise ValueError(f"{len(entries)} entries where the head says {want}")
    return entries


async def write(
    js: Any, *, covers: int, entries: list[Entry], stream_created: str, writer: str, chunk: int = CHUNK_ENTRIES,
    timeout: float = 5.0,
) -> bool:
    """Store a snapshot covering ``covers``; True if its head landed (False: another writer's did first).

    Order: chunks, then the head (guarded by the head sequence seen before starting), then the
    purge of every older chunk and head. ``entries`` must not change while this runs (pass a copy).
    """
    seen, _ = await _last_head(js)
    subject = chunk_subject(writer, covers)
    first = None
    chunks = -(-len(entries) // chunk)
    for index in range(chunks):
        body = chunk_body(index, entries[index * chunk:(index + 1) * chunk])
        ack = await publish_acked(js, subject, body, stream=SNAPSHOT_STREAM, timeout=timeout, retry_for=timeout)
        first = ack.seq if first is None else first
        await asyncio.sleep(0)  # a large snapshot does not hold the timers up
    head = head_body(covers=covers, stream_created=stream_created, chunks=chunks, entries=len(entries),
                     subject=subject, by=writer)
    try:
        ack = await publish_acked(js, HEAD, head, stream=SNAPSHOT_STREAM, timeout=timeout,
                                  retry_for=timeout, headers={"Nats-Expected-Last-Subject-Sequence": str(seen)})
    except nats.js.errors.BadRequestError as exc:
        if not refused_by_guard(exc):
            raise
        log.info("snapshot by %s not used: another instance wrote one meanwhile", writer)
        await js.purge_stream(SNAPSHOT_STREAM, subject=subject)
        return False
    # older snapshots go: every chunk stored before this one's first, and every earlier head
    await js.purge_stream(SNAPSHOT_STREAM, subject=f"{SNAPSHOTS}.chunk.>", seq=first or ack.seq)
    await js.purge_stream(SNAPSHOT_STREAM, subject=HEAD, keep=1)
    return True


class Snapshotter:
    """One service's snapshots: the newest one loaded at start, a new one written whenever events
    arrived and ``every`` seconds passed or ``events`` events arrived since the last, and one at stop.

    ``position()`` is the stream sequence of the last event the service applied; ``take()`` returns
    ``(that sequence, the pending entries)`` in one synchronous step, so the two always match.
    """

    def __init__(self, js: Any, writer: str, position: Callable[[], int], take: Callable[[], tuple[int, list[Entry]]],
                 *, every: float = SNAPSHOT_EVERY, events: int = SNAPSHOT_EVENTS, chunk: int = CHUNK_ENTRIES,
                 timeout: float = 5.0) -> None:
        self.js, self.writer, self.position, self.take = js, writer, position, take
        self.every, self.events, self.chunk, self.timeout = every, events, chunk, timeout
        self.loaded: Snapshot | None = None
        self.written = 0
        self.at = 0  # what the last snapshot written or loaded covers
        self.stream_created = ""
        self._task: asyncio.Task[None] | None = None

    async def load(self, replicas: int | None = None) -> Snapshot | None:
        """Ensure the snapshot stream and load the newest usable snapshot of ``RESERVATIONS``."""
        await retrying(f"creating stream {SNAPSHOT_STREAM}", lambda: ensure_snapshot_stream(self.js, replicas))
        info = await retrying("reading stream RESERVATIONS", lambda: self.js.stream_info("RESERVATIONS"))
        self.stream_created = str(info.created)
        # a snapshot stream just created on a cluster may still be electing its leader
        self.loaded = await retrying("reading the newest snapshot", lambda: load(self.js, info))
        if self.loaded is not None:
            self.at = self.loaded.covers
        return self.loaded

    async def write_now(self) -> bool:
        """A snapshot of what is pending now; True if it was stored (and is the newest)."""
        covers, entries = self.take()
        if covers == 0 or covers == self.at:
            return False
        stored = await write(self.js, covers=covers, entries=entries, stream_created=self.stream_created,
                             writer=self.writer, chunk=self.chunk, timeout=self.timeout)
        if stored:
            self.at = covers
            self.written += 1
            log.info("%s: snapshot of %d pending reservations covering seq %d", self.writer, len(entries), covers)
        return stored

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self, final: bool = True) -> None:
        """Stop the loop; with ``final``, write one last snapshot (failures are logged)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if final:
                try:
                    await self.write_now()
                except Exception as exc:
                    log.warning("%s: no snapshot at stop (%r)", self.writer, exc)

    async def _loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.every))
            behind = self.position() - self.at
            if behind <= 0 or (behind < self.events and time.monotonic() - last < self.every):
                continue
            last = time.monotonic()
            try:
                await self.write_now()
            except Exception as exc:  # the next round tries again; a start without it replays more
                log.warning("%s: snapshot not written (%r)", self.writer, exc)


__all__ = [
    "CHUNK_ENTRIES", "HEAD", "SNAPSHOTS", "SNAPSHOT_EVENTS", "SNAPSHOT_EVERY", "SNAPSHOT_STREAM", "Snapshot",
    "Snapshotter", "chunk_body", "chunk_subject", "ensure_snapshot_stream", "head_body", "load",
    "snapshot_stream_config", "write",
]
