"""natsdemo.core.connect's JetStream helpers against a real server: racing creators, overlapping subjects."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import StreamConfig

from natsdemo.core.streams import create_stream_if_missing


async def test_racing_creators_all_get_the_same_stream(nc):
    js = nc.jetstream()
    infos = await asyncio.gather(*(create_stream_if_missing(js, StreamConfig(name="RACE", subjects=["race.>"]))
                                   for _ in range(5)))
    assert {i.config.name for i in infos} == {"RACE"}
    assert len(await js.streams_info()) == 1


async def test_a_stream_whose_subjects_are_taken_is_a_clear_error(nc):
    js = nc.jetstream()
    await js.add_stream(name="FIRST", subjects=["shared.>"])
    with pytest.raises(RuntimeError, match="another stream already capture"):
        await create_stream_if_missing(js, StreamConfig(name="SECOND", subjects=["shared.>"]))
