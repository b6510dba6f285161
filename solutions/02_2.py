# Exercise 02.2: the replicas cell with a core subscription only.
# Answer: a drain service listening on a core subscription runs once per *publish*, so two
# replicas make it drain twice per slot: 6 drains for 3 slots.
drains = []

async def drain_on_tick(msg):  # what the seed's drainer does on every message it hears
    drains.append(msg.subject)

core_only = await nc.subscribe("schedule.replicated-core", cb=drain_on_tick)
pair = [Ticker(js, "replicated-core", "* * * * * *", replica=r) for r in ("a", "b")]
await asyncio.gather(*(r.run(max_ticks=3) for r in pair))
await nc.flush()
await asyncio.sleep(0.3)
await core_only.unsubscribe()
print(f"{len(drains)} drains for 3 slots")
assert len(drains) == 6
