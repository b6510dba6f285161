# Exercise 00.2: a 10 ms heartbeat, counted over one second.
# Answer: fewer than 100. Each asyncio.sleep(0.01) lasts at least 10 ms, and the loop's own work
# (waking up, appending, scheduling) comes on top of every beat, so the beats drift later.
beats.clear()

async def fast_heartbeat():
    while True:
        beats.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.01)

fast = asyncio.ensure_future(fast_heartbeat())
await asyncio.sleep(1.0)
fast.cancel()
print(len(beats), "beats in one second; 100 would need zero overhead per beat")
assert 30 <= len(beats) <= 101
