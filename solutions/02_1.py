# Exercise 02.1: two replicas with the same cron in different zones.
# Answer: 20:00 in Berlin and 20:00 in London are different instants, so the replicas' slots, and
# therefore their msg ids, differ: de-duplication cannot help, and a second "end of day" is stored.
# What catches it: one source of configuration for every replica, and a reader that checks the
# tick body's cron and tz (every client tick carries them) against what it expects.
from natsdemo.ticks import Ticker

a = Ticker(js, "eod-exercise", "0 0 20 * * *", "Europe/Berlin", replica="a")
b = Ticker(js, "eod-exercise", "0 0 20 * * *", "Europe/London", replica="b")
now = datetime.now(UTC)
slot_a, slot_b = a.spec.next_after(now), b.spec.next_after(now)
print("a:", slot_a, tick_msg_id("eod-exercise", slot_a))
print("b:", slot_b, tick_msg_id("eod-exercise", slot_b))
assert slot_a != slot_b and tick_msg_id("eod-exercise", slot_a) != tick_msg_id("eod-exercise", slot_b)
