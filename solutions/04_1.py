# Exercise 04.1: a purchase published by hand, without the guard, after the timeout.
# Answer: the server stores it, and the reservation now has both outcomes, timed out and then
# purchased: a downstream consumer reading in stream order releases the tickets and then sells
# them, and one that keeps the last event believes the purchase. Only the guard stops this.
rid = new_id("unguarded")
await R.reserve(js, rid, timeout=1)
await outcome(rid)
await js.publish(R.subject(rid), R.purchased_body(rid, request="no-guard"))  # what an unguarded purchase sends
types = [e.type for e in await history(rid)]
print(types)
assert types == [R.RESERVED, R.TIMED_OUT, R.PURCHASED]
