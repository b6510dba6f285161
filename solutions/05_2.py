# Exercise 05.2: kill one reservation service, restart it after its reservations' deadlines.
# Answer: the other instance fires the timeouts on time; the restarted one replays the stream,
# finds them decided already, and fires nothing: one outcome each, whoever was running. (On a
# very busy machine "b" may not have fired yet when "a" is back; then both try, and the
# expected-sequence guard lets exactly one of them write: still one outcome each.)
# (Were both instances down, the first one back would fire every overdue timeout at once.)
dash.kill_service("reservations-a")
rids = [f"{run}-ex2-{k}-{time.time_ns() % 10**6}" for k in range(3)]
for rid in rids:
    await reservations.reserve(js, rid, 1.0)
await asyncio.sleep(2)  # the deadlines pass while reservations-a is down
await dash.restart_service("reservations-a")
await services["reservations-a"].await_ready(60)
by_id = await outcomes(rids, timeout=30)
await asyncio.sleep(1)  # give the restarted instance time to (wrongly) fire again
by_id = await outcomes(rids, timeout=30)
print({rid: [(ev.type, ev.body.get("by")) for ev in by_id[rid]] for rid in rids})
assert all(len(by_id[rid]) == 2 for rid in rids), "a reservation was decided twice"
assert all(by_id[rid][1].type == "reservation-timeout" for rid in rids), by_id
