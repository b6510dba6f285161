# Exercise 00.1: publish to greetings.dee, fetch again with a new consumer.
# Answer: the new consumer gets every message the stream still holds (the three greetings and dee),
# not only the new one: a stream keeps messages until a limit or a purge removes them, and a new
# consumer starts at the first message stored.
await js.publish("greetings.dee", b"hello")
fresh = await js.pull_subscribe("greetings.>", durable=None)
got = []
while True:
    try:
        batch = await fresh.fetch(10, timeout=0.5)
    except TimeoutError:  # nats.errors.TimeoutError is one: nothing more right now
        break
    if not batch:  # fetch can also return an empty list for "nothing right now"
        break
    got += batch
await fresh.unsubscribe()
print(len(got), "messages:", [m.subject for m in got])
assert len(got) == (await js.stream_info("HELLO")).state.messages and got[-1].subject == "greetings.dee"
