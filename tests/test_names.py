"""Reading a JetStream delivery's reply subject, in both layouts the server uses, and from a real one."""

from __future__ import annotations

from natsdemo.core.names import AckFields, ack_fields


def test_both_ack_subject_layouts():
    v1 = "$JS.ACK.ORDERS.worker.2.17.9.1795765123197105565.4"
    v2 = "$JS.ACK.hub.ACCHASH.ORDERS.worker.2.17.9.1795765123197105565.4.rnd"
    expected = AckFields(delivered=2, stream_seq=17, consumer_seq=9, timestamp_ns=1795765123197105565, pending=4)
    assert ack_fields(v1) == expected and ack_fields(v2) == expected
    assert ack_fields(None) is None and ack_fields("_INBOX.abc") is None


async def test_fields_of_a_real_delivery_match_nats_py_metadata(nc):
    js = nc.jetstream()
    await js.add_stream(name="ACKS", subjects=["acks.>"])
    for i in range(3):
        await js.publish("acks.x", str(i).encode())
    psub = await js.pull_subscribe("acks.>", durable="reader")
    msgs = await psub.fetch(3, timeout=2)
    for m in msgs:
        f, meta = ack_fields(m.reply), m.metadata
        assert (f.stream_seq, f.consumer_seq, f.delivered, f.pending) == (
            meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.num_pending)
