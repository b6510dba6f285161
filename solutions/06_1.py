# Exercise 06.1: issue with a TTL while `coupons watch` runs, then redeem twice.
# Answer: the first redeem (before the TTL runs out) exits 0 and the watcher prints "redeemed ID";
# the second exits 1 ("redeemed already"), and no "expired" line ever comes: the redemption
# replaced the coupon, so there was nothing left to expire. (Shorter times than the exercise's 5 s.)
watcher = ServiceProcess("coupons-watch", ["coupons", "watch", "--server", srv.url], ready="^watching")
watcher.start()
await watcher.await_ready(30)
ex_id = new_id("EX1")
print(await cli("coupons", "issue", ex_id, "--ttl", "2"))
await asyncio.sleep(1)
first = await cli("coupons", "redeem", ex_id)
await asyncio.sleep(2)  # past the TTL
second = await cli("coupons", "redeem", ex_id)
lines = [ln for ln in watcher.log_text().splitlines() if f" {ex_id} " in ln]
await watcher.astop()
print(first, second, lines, sep="\n")
assert first[0] == 0 and second[0] == 1 and "redeemed already" in second[1]
assert len(lines) == 1 and lines[0].startswith(f"redeemed {ex_id} ")
