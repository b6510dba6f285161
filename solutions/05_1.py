# Exercise 05.1: kill the node that leads EOD_QUEUE in the middle of a drain.
# Answer: the queue's stream elects a new leader among the two others and the workers carry on;
# items a worker had processed but whose acks were lost with the old leader come back and are
# processed a second time: at-least-once. Nothing is lost. (1,000 items, not 20,000.)
before = (await js.stream_info("EOD_QUEUE")).state.last_seq
await drain.enqueue(js, "eod", 1000)
for _ in range(100):  # wait until the drain is under way
    if len(set(processed_seqs()) & set(range(before + 1, before + 1001))) >= 100:
        break
    await asyncio.sleep(0.05)
victim = (await js.stream_info("EOD_QUEUE")).cluster.leader
dash.kill_node(victim)
for _ in range(240):
    done = set(processed_seqs()) & set(range(before + 1, before + 1001))
    if len(done) == 1000:
        break
    await asyncio.sleep(0.5)
await dash.restart_node(victim)
await cluster.await_ready(60)
seqs = [s for s in processed_seqs() if before < s <= before + 1000]
print(f"killed {victim}; {len(set(seqs))} of 1,000 items processed, {len(seqs) - len(set(seqs))} of them twice")
assert set(seqs) == set(range(before + 1, before + 1001))
