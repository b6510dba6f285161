# Exercise 06.2: the stream config with max_msgs_per_subject=10.
# Answer: the coupon is stored with Nats-TTL raised to the marker TTL (3600 s), so it expires an
# hour later, not after 2 s; nothing tells the publisher.
from dataclasses import replace

ex2 = replace(C.stream_config(), name="NB06_EX2", subjects=["nb06ex2.>"], max_msgs_per_subject=10)
try:
    await js.delete_stream("NB06_EX2")  # a re-run starts clean
except nats.js.errors.NotFoundError:
    pass
await js.add_stream(ex2)
ack = await js.publish("nb06ex2.c", b"{}", headers={"Nats-TTL": "2"})
stored = (await js.get_msg("NB06_EX2", ack.seq)).headers["Nats-TTL"]
await asyncio.sleep(2.5)
still_there = (await js.get_msg("NB06_EX2", subject="nb06ex2.c")).seq == ack.seq
deleted = await js.delete_stream("NB06_EX2")
print("asked for 2 s, stored with Nats-TTL", stored, "| still there after 2.5 s:", still_there)
assert stored == str(C.MARKER_TTL) and still_there and deleted
