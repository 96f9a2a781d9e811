"""The router's batch consumer on the in-memory broker: a batch is confirmed then acked,
one bad event is found by handling each alone, and a broker that does not confirm gets
every message back."""

from __future__ import annotations

from collections.abc import Sequence

from shared.broker import Delayed, Outgoing, Publish
from shared.consumer import BatchConsumer
from shared.messages import JobFailed, LeadsEnriched, Message, ResultLead
from tests.fakebroker import FakeBroker, FakeMessage, batch_consumer


def event(lead_id: str) -> LeadsEnriched:
    return LeadsEnriched(job_id="j", tenant="t", leads=[ResultLead(id=lead_id)])


class Router:
    """Fails any batch holding the poison lead; answers each batch with one event."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, events: list[Message]) -> Sequence[Outgoing]:
        ids = [e.leads[0].id for e in events if isinstance(e, LeadsEnriched)]
        self.batches.append(ids)
        if "poison" in ids:
            raise ValueError("cannot store the poison lead")
        return [Publish(JobFailed(job_id="j", tenant="t", reason=",".join(ids)))]


def consumer(broker: FakeBroker, router: Router) -> BatchConsumer[Message]:
    return batch_consumer(broker, router)


def messages(broker: FakeBroker, *ids: str) -> list[FakeMessage]:
    return [broker.message(event(i)) for i in ids]


async def test_a_batch_is_handled_at_once_then_acked() -> None:
    broker, router = FakeBroker(), Router()
    batch = messages(broker, "a", "b", "c")
    await consumer(broker, router)._handle_batch(list(batch))
    assert router.batches == [["a", "b", "c"]]
    [published] = broker.taken()
    assert published.item == Publish(JobFailed(job_id="j", tenant="t", reason="a,b,c"))
    assert [m.settled for m in batch] == [["ack"]] * 3


async def test_one_bad_event_is_found_and_only_it_is_retried() -> None:
    broker, router = FakeBroker(), Router()
    batch = messages(broker, "a", "poison", "c")
    await consumer(broker, router)._handle_batch(list(batch))
    assert router.batches == [["a", "poison", "c"], ["a"], ["poison"], ["c"]]
    retries = [p for p in broker.taken() if isinstance(p.item, Delayed)]
    assert [r.item.message for r in retries] == [event("poison")]
    assert [m.settled for m in batch] == [["ack"]] * 3


async def test_a_broker_that_does_not_confirm_gets_every_message_back() -> None:
    broker, router = FakeBroker(), Router()
    broker.refusing = "connection lost"
    batch = messages(broker, "a", "b")
    await consumer(broker, router)._handle_batch(list(batch))
    assert [m.settled for m in batch] == [["requeue"]] * 2
    assert broker.taken() == []


async def test_an_undecodable_event_is_dead_lettered_and_the_rest_go_on() -> None:
    broker, router = FakeBroker(), Router()
    good = broker.message(event("a"))
    bad = FakeMessage(b"\xff")
    await consumer(broker, router)._handle_batch([bad, good])
    assert router.batches == [["a"]]
    [letter] = broker.dead
    assert letter.queue == "events"
    assert bad.settled == ["ack"]
    assert good.settled == ["ack"]
