# Exercise 02.3: a 1-second duplicate window and a replica that is 2 s late.
# Answer: the late replica publishes the slot's msg id after the window has closed, so the stream
# stores the slot a second time. The window must cover replica skew plus the longest catch-up.
from natsdemo.ticks import publish_tick

info = await js.stream_info(SCHEDULE_STREAM)
window = info.config.duplicate_window
cfg = info.config
cfg.duplicate_window = 1.0
await js.update_stream(cfg)
try:
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # a slot nobody else uses
    first = await publish_tick(js, "late-replica", scheduled_at=slot)
    await asyncio.sleep(2)  # the slow replica
    second = await publish_tick(js, "late-replica", scheduled_at=slot)
finally:
    cfg.duplicate_window = window
    await js.update_stream(cfg)  # put the notebook's window back
print("first seq", first.seq, "| second seq", second.seq, "| duplicate:", second.duplicate)
assert not second.duplicate and second.seq != first.seq
