# Exercise 04.2: reservations whose deadlines pass while every instance is down.
# Answer: the restarted instance replays the stream, finds every deadline in the past and fires
# them all at once, as soon as its replay has caught up; each is late by the downtime, none is
# early, and each still fires exactly once. (1 s timeouts and 3 s of downtime, not 30 s and 40 s.)
ids = [new_id(f"down-{k}") for k in range(5)]
for rid in ids:
    await R.reserve(js, rid, timeout=1)
for name in instances.alive():
    instances.crash(name)
await asyncio.sleep(3)
instances.restart()
await instances.wait_ready()
ready = time.time()
late = []
for rid in ids:
    reserved, fired = await outcome(rid)
    assert fired.type == R.TIMED_OUT and len(await history(rid)) == 2
    late.append((fired.ts_ns - reserved.ts_ns) / 1e9 - 1)
print("late by (s):", [round(x, 2) for x in late], "| fired within", round(max(late) - min(late), 2), "s of each other")
assert min(late) >= 0 and max(late) >= 1.5
while instances.crashed():  # bring the others back too
    instances.restart()
await instances.wait_ready()
