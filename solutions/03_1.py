# Exercise 03.1: the same items drained with batch 1 and batch 500.
# Answer: batch 1 makes one round trip to the server per item (1,000 batches), so the drain takes longer and
# `ack pending` stays tiny; batch 500 asks for many items per round trip, so the drain
# is quick and up to a whole batch is out with the worker at once. (The Drainer fetches the next
# batch while it works on this one, so batch 1 can have 2 items out.) (1,000 items, not 2,000.)
await stop_leftovers()  # the lab's and the notebook's workers would take a share
took = {}
for batch in (1, 500):
    peak = 0

    async def peak_watch():
        global peak
        while True:
            peak = max(peak, (await queue_state(js, NAME))["ack_pending"])
            await asyncio.sleep(0.02)

    w = await Drainer(js, NAME, handle, DrainSettings(batch=batch, ack_wait=10), worker=f"batch-{batch}").start()
    await enqueue(js, NAME, 1000, start=50_000 + batch)
    watch = asyncio.ensure_future(peak_watch())
    await publish_tick(js, NAME)
    await wait_drained(w, timeout=60)
    took[batch] = (w.metrics.busy_seconds, peak, w.metrics.batches)  # drain time without the polling
    watch.cancel()
    await w.stop()
print({b: f"{t:.2f} s in {n} batches, ack pending at most {p}" for b, (t, p, n) in took.items()})
# one round trip per item against a handful (times are printed, not asserted: a busy machine blurs them)
assert took[1][2] == 1000 and took[500][2] <= 10 and took[1][1] <= 2 < took[500][1]
