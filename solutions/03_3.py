# Exercise 03.3: ack_wait 1 s and a handler that needs longer per item.
# Answer: a plain fetch-and-work loop holds its batch longer than ack_wait, so the server hands
# those items to the next worker that asks: here a second worker receives copies delivered a
# second time, and those items are processed twice. The Drainer tells the server, about every
# ack_wait / 3, that the items it holds are in progress, so every item arrives once.
# (3 items of 1.2 s, not 20 of 2 s.)
await stop_leftovers()
slow = DrainSettings(batch=3, ack_wait=1, max_deliver=5)
await ensure_queue(js, NAME, slow)  # the last one to set the consumer wins

async def plain_worker(psub, done):  # fetch a batch, work, ack: no in-progress signal
    for msg in await psub.fetch(3, timeout=2):
        await asyncio.sleep(1.2)
        done.append(msg.metadata.sequence.stream)
        await msg.ack()

async def second_worker(psub, copies, seconds=4.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for msg in await psub.fetch(3, timeout=0.5):
                copies.append(msg.metadata.num_delivered)
                await msg.ack()
        except TimeoutError:
            pass

a = await js.pull_subscribe_bind(names.durable, stream=names.stream)
b = await js.pull_subscribe_bind(names.durable, stream=names.stream)
await enqueue(js, NAME, 3, start=60_000)
done, copies = [], []
first = asyncio.ensure_future(plain_worker(a, done))
await asyncio.sleep(0.3)  # the plain worker takes the whole batch first
await asyncio.gather(first, second_worker(b, copies))
await a.unsubscribe()
await b.unsubscribe()

deliveries = []
async def slow_handler(msg):
    deliveries.append(msg.metadata.num_delivered)
    await asyncio.sleep(1.2)

w = await Drainer(js, NAME, slow_handler, slow, worker="slow").start()
await wait_drained(w, timeout=30)  # anything left over goes first
deliveries.clear()
await enqueue(js, NAME, 3, start=61_000)
await publish_tick(js, NAME)
await wait_drained(w, timeout=60)
await w.stop()
await ensure_queue(js, NAME, settings)  # give the notebook's consumer its settings back
print(f"plain loop: {len(done)} items done, {len(copies)} delivered again {copies}; Drainer: deliveries {deliveries}")
assert copies and min(copies) >= 2 and deliveries == [1, 1, 1]
