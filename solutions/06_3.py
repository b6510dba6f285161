# Exercise 06.3: re-issue an expired id, then try a redeemed one.
# Answer: issue() expects the subject's last sequence to be the marker's, so an expired id can be
# issued again at once; a redeemed id keeps its redemption (no TTL), so it is refused forever.
# Once the marker's own TTL (an hour) has passed, the subject is empty and issue() expects
# sequence 0: the id is then simply new.
again = new_id("EX3")
await C.issue(js, again, 1)
await until_expired(again)
reissued = await C.issue(js, again, 30)
assert (await C.last_event(js, again)).seq == reissued.seq
await C.redeem(js, again)
try:
    await C.issue(js, again, 30)
    raise AssertionError("a redeemed id must stay redeemed")
except C.CouponExistsError as exc:
    print("refused:", exc)
