# Exercise 00.3: a heartbeat that blocks with time.sleep instead of awaiting asyncio.sleep.
# Answer: for two seconds nothing else on the kernel's loop runs: the click's publish waits, the
# plot does not redraw, the consumer does not receive. time.sleep blocks the thread the loop runs
# in; await asyncio.sleep hands the loop back. The watchdog below measures the freeze.
import time

gaps = []

async def watchdog():  # wakes every 50 ms and records how long it really slept
    loop = asyncio.get_running_loop()
    last = loop.time()
    for _ in range(40):
        await asyncio.sleep(0.05)
        gaps.append(loop.time() - last)
        last = loop.time()

async def blocking_heartbeat():
    for _ in range(40):  # bounded: an endless blocking loop would freeze the kernel for good
        time.sleep(0.05)

dog = asyncio.ensure_future(watchdog())
await asyncio.sleep(0.1)
blocker = asyncio.ensure_future(blocking_heartbeat())
publish_button.click()  # its publish is queued behind the blocked loop
await asyncio.gather(blocker, dog)
await panel.settle()
print(f"longest gap in the loop: {max(gaps):.2f} s (a healthy loop: about 0.05 s)")
assert max(gaps) >= 1.5
