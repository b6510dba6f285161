"""``publish_acked``: the one way to publish something that must not be lost.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import nats.errors
import nats.js.errors

from natsdemo.core.errors import Unavailable

log = logging.getLogger("natsdemo.publish")

WRONG_LAST_SEQUENCE = 10071  # server error code for a failed Nats-Expected-Last-Subject-Sequence
# measured on 2.15.1: a clustered (R3) stream may answer the same refusal with 10164 instead
WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, 10164})

FIRST_DELAY = 0.1  # seconds before the first retry
MAX_DELAY = 2.0  # the longest wait between two tries
# How long a client call (reserve, purchase, issue, redeem) keeps retrying while a stream has no
# leader. `bench cluster` measured the gap after SIGKILLing an R3 leader at 5-8 s on an idle
# 2-core machine, and a busy CI machine saw it pass 10 s: 30 s covers an election with room to spare.
CLIENT_RETRY_FOR = 30.0


def backoff(attempt: int, first: float = FIRST_DELAY, cap: float = MAX_DELAY, rng: random.Random | None = None
            ) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): exponential, capped, with full jitter.

    Jitter spreads the retries of many publishers (every timer service after a leader election)
    instead of sending them all at the same instant.
    """
    ceiling = min(cap, first * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def refused_by_guard(exc: Exception) -> bool:
    """True if the server refused a publish because its expected last subject sequence was wrong.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return getattr(exc, "err_code", None) in WRONG_LAST_SEQUENCE_CODES


async def publish_acked(
    js: Any,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, str] | None = None,
    stream: str | None = None,
    timeout: float = 2.0,
    retry_for: float = 15.0,
    idempotent: bool | None = None,
) -> Any:
    """``js.publish`` that rides out a stream leader election, and never reports a false ack.

    * "no responders" means no stream took the message (no leader, or no server): nothing was
      stored, so retrying is always safe;
    * a timeout is ambiguous (the stream may have stored it): it is retried only when a retry
      cannot store a second copy, that is with ``Nats-Msg-Id`` (the stream de-duplicates it) or
      when the caller says so with ``idempotent=True`` (for example a publish guarded by
      ``Nats-Expected-Last-Subject-Sequence``, which the stream refuses once the first copy landed:
      the caller must then read back whether that copy was its own);
    * "duplicate message id is in process" (10158) means an earlier try is still being replicated:
      waiting and retrying returns its acknowledgement (marked duplicate).

    Retries wait :func:`backoff` (exponential, with jitter). After ``retry_for`` seconds it logs
    one line (INFO) and raises :class:`natsdemo.core.errors.Unavailable` saying which case it was.
    """
    if idempotent is None:
        idempotent = bool(headers and headers.get("Nats-Msg-Id"))
    deadline = asyncio.get_running_loop().time() + retry_for
    attempt = 0
    last: Exception
    while True:
        try:
            return await js.publish(subject, payload, timeout=timeout, stream=stream, headers=headers)
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError) as exc:
            last, maybe_stored = exc, False
        except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
            last, maybe_stored = exc, True
            if not idempotent:
                break
        except nats.js.errors.APIError as exc:
            if exc.err_code != 10158:  # "duplicate message id is in process": an earlier try is in flight
                raise
            last, maybe_stored = exc, True
        attempt += 1
        delay = backoff(attempt)
        if asyncio.get_running_loop().time() + delay > deadline:
            break
        await asyncio.sleep(delay)
    if not maybe_stored:
        hint = "nothing was stored; it is safe to retry"
    elif headers and headers.get("Nats-Msg-Id"):
        hint = "it may have been stored; retry with the same Nats-Msg-Id so the stream de-duplicates it"
    elif idempotent:
        hint = ("it may have been stored; a retry is safe (its expected-sequence guard refuses a second copy), "
                "then read back which copy landed")
    else:
        hint = "it may have been stored: check the stream before publishing it again"
    # INFO: the caller gets the Unavailable and decides; the services log INFO, so the line is there
    log.info("giving up on %s after %d tries in %.0f s: %r", subject, attempt + 1, retry_for, last)
    raise Unavailable(
        f"JetStream did not acknowledge {subject} ({type(last).__name__}): the stream has no leader or no quorum "
        f"(are most cluster nodes down?); {hint}"
    )
