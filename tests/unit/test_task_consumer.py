"""The task consumer's retry and crash rules, in milliseconds, on the in-memory broker:
retry tiers, "later" retries that spend no attempt, give-up and dead letters, the suspect
queue, splitting, and a broker that does not confirm."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shared.broker import (
    ATTEMPT_HEADER,
    CRASHES_HEADER,
    ERROR_HEADER,
    HISTORY_HEADER,
    DeadLetter,
    Delayed,
    Publish,
    ToQueue,
)
from shared.consumer import Delivery, Handled, Retry, TaskConsumer
from shared.errors import PermanentError, TransientError
from shared.messages import (
    EnrichTask,
    JobFailed,
    JobStopped,
    Lead,
    LeadsFailed,
)
from tests.fakebroker import FakeBroker, FakeMessage, task_consumer

MAX_ATTEMPTS = 3
Handler = Callable[[EnrichTask, Delivery], Coroutine[Any, Any, Handled[EnrichTask]]]


def task(*ids: str) -> EnrichTask:
    return EnrichTask(job_id="job-1", tenant="acme", leads=[Lead(id=i) for i in ids or ("a",)])


def gave_up(task: EnrichTask, reason: str) -> list[Publish]:
    return [Publish(JobFailed(job_id=task.job_id, tenant=task.tenant, reason=reason))]


def split(task: EnrichTask) -> list[EnrichTask]:
    return [EnrichTask(job_id=task.job_id, tenant=task.tenant, leads=[lead]) for lead in task.leads]


class Recorder(list[EnrichTask]):
    """A handler that keeps every task it is given and publishes nothing."""

    async def __call__(self, task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        self.append(task)
        return Handled()


async def never_called(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
    raise AssertionError("the handler is not called")


async def consumer(broker: FakeBroker, handler: Handler) -> TaskConsumer[EnrichTask]:
    return await task_consumer(
        broker,
        "enrich",
        EnrichTask,
        handler,
        give_up=gave_up,
        max_attempts=MAX_ATTEMPTS,
        split=split,
    )


def lane(broker: FakeBroker) -> str:
    return broker.lane("enrich")


def suspect(broker: FakeBroker) -> str:
    return broker.topology.suspect_queue("enrich")


async def test_results_are_confirmed_before_the_ack() -> None:
    broker = FakeBroker()
    done = LeadsFailed(job_id="job-1", tenant="acme", leads=[])

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        return Handled(publish=[Publish(done)])

    await consumer(broker, handler)
    message = await broker.deliver(lane(broker), broker.message(task()))
    assert [p.item for p in broker.taken()] == [Publish(done)]
    assert message.settled == ["ack"]

    broker.refusing = "no confirms"
    message = await broker.deliver(lane(broker), broker.message(task()))
    assert message.settled == ["requeue"], "never acked without its results confirmed"
    assert broker.taken() == []


async def test_a_retry_spends_an_attempt_per_round_then_gives_up_with_the_handlers_outcome() -> (
    None
):
    broker = FakeBroker()
    failed = LeadsFailed(job_id="job-1", tenant="acme", leads=[])

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        retry = Retry(task, "alpha: HTTP 503", after_s=0.5, if_given_up=[Publish(failed)])
        return Handled(retries=[retry])

    await consumer(broker, handler)
    message = broker.message(task("a", "b"))
    attempts = []
    for _ in range(MAX_ATTEMPTS - 1):
        await broker.deliver(lane(broker), message)
        [retry] = broker.taken()
        assert isinstance(retry.item, Delayed)
        assert retry.to.exchange.startswith(f"{broker.topology.tasks_exchange}.retry")
        assert 0.5 <= retry.item.delay_s <= 8.0
        attempts.append(retry.to.headers[ATTEMPT_HEADER])
        message = broker.as_delivered(retry)
    assert attempts == [1, 2]

    await broker.deliver(lane(broker), message)
    given_up, parked = broker.taken()
    assert given_up.item == Publish(failed)
    assert isinstance(parked.item, DeadLetter)
    assert parked.to.exchange == broker.topology.dead_exchange
    assert parked.to.key == broker.topology.work_queue("enrich")
    assert parked.item.headers[ERROR_HEADER] == "alpha: HTTP 503"
    assert len(parked.item.headers[HISTORY_HEADER]) == MAX_ATTEMPTS
    assert message.settled == ["ack"]


async def test_a_later_retry_never_spends_an_attempt_however_long_the_storm() -> None:
    broker = FakeBroker()

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        assert delivery.attempt == 0
        return Handled(retries=[Retry(task, "alpha: cooling down", after_s=1.0, later=True)])

    await consumer(broker, handler)
    message = broker.message(task())
    for _ in range(MAX_ATTEMPTS * 5):
        await broker.deliver(lane(broker), message)
        [retry] = broker.taken()
        assert isinstance(retry.item, Delayed)
        assert retry.item.attempt == 0
        assert retry.item.delay_s == 1.0, "the provider's Retry-After, not a growing backoff"
        message = broker.as_delivered(retry)
    assert broker.dead == []


async def test_one_task_can_retry_part_later_and_part_as_an_attempt() -> None:
    broker = FakeBroker()

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        return Handled(
            retries=[
                Retry(
                    EnrichTask(job_id="job-1", tenant="acme", leads=[Lead(id="a")]),
                    "429",
                    1.0,
                    True,
                ),
                Retry(EnrichTask(job_id="job-1", tenant="acme", leads=[Lead(id="b")]), "503"),
            ]
        )

    await consumer(broker, handler)
    await broker.deliver(lane(broker), broker.message(task("a", "b"), headers={ATTEMPT_HEADER: 1}))
    later, spent = broker.taken()
    assert isinstance(later.item, Delayed)
    assert isinstance(spent.item, Delayed)
    assert (later.item.attempt, spent.item.attempt) == (1, 2)


@pytest.mark.parametrize(
    ("error", "attempt"),
    [
        (TransientError("alpha: HTTP 503"), 1),
        (RuntimeError("a bug"), 1),
        (type("Busy", (TransientError,), {"later": True})("later", retry_after_s=2.0), 0),
    ],
)
async def test_a_raised_transient_error_is_retried(error: Exception, attempt: int) -> None:
    broker = FakeBroker()

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        raise error

    await consumer(broker, handler)
    message = await broker.deliver(lane(broker), broker.message(task()))
    [retry] = broker.taken()
    assert isinstance(retry.item, Delayed)
    assert retry.item.attempt == attempt
    assert message.settled == ["ack"]


async def test_a_permanent_error_is_dead_lettered_at_once_with_the_give_up_outcome() -> None:
    broker = FakeBroker()

    async def handler(task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        raise PermanentError("no source named 'x'")

    await consumer(broker, handler)
    message = await broker.deliver(lane(broker), broker.message(task()))
    [outcome] = broker.taken()
    assert isinstance(outcome.item.message, JobFailed)
    [letter] = broker.dead
    assert letter.queue == broker.topology.work_queue("enrich")
    assert letter.headers[ERROR_HEADER] == "no source named 'x'"
    assert message.settled == ["ack"]


async def test_an_undecodable_body_is_dead_lettered() -> None:
    broker = FakeBroker()

    await consumer(broker, never_called)
    message = await broker.deliver(lane(broker), FakeMessage(b"{not json"))
    assert broker.taken() == []
    [letter] = broker.dead
    assert letter.headers[ERROR_HEADER].startswith("undecodable message")
    assert message.settled == ["ack"]


async def test_a_redelivery_goes_to_the_suspect_queue_then_splits_then_dead_letters() -> None:
    broker = FakeBroker()
    handled = Recorder()
    await consumer(broker, handled)
    first = broker.message(task("a", "b"))
    # Its consumer died holding it: the broker redelivers it, flagged.
    await broker.deliver(lane(broker), broker.redelivery(first))
    assert handled == [], "a suspect is not handled among the others"
    [copy] = broker.copied
    assert copy.queue == suspect(broker)
    assert copy.headers[CRASHES_HEADER] == 0

    # In the suspect queue it crashed its consumer again: split, one item per message.
    await broker.deliver(suspect(broker), broker.redelivery(broker.as_delivered(copy)))
    parts = broker.taken()
    assert [type(p.item) for p in parts] == [ToQueue, ToQueue]
    assert [p.to.key for p in parts] == [suspect(broker)] * 2
    assert [p.to.headers[CRASHES_HEADER] for p in parts] == [1, 1]

    # The innocent one passes; the one that keeps killing its consumer is dead-lettered.
    innocent, poison = (broker.as_delivered(p) for p in parts)
    await broker.deliver(suspect(broker), innocent)
    assert [t.leads[0].id for t in handled] == ["a"]
    for _ in range(MAX_ATTEMPTS - 1):
        await broker.deliver(suspect(broker), broker.redelivery(poison))
        poison.headers[CRASHES_HEADER] += 1
        poison.redelivered = False
    [outcome] = broker.taken()
    assert isinstance(outcome.item.message, JobFailed)
    [letter] = broker.dead
    assert "died or lost its connection 3 times" in letter.headers[ERROR_HEADER]


async def test_a_message_it_handed_back_itself_is_not_taken_for_a_crash() -> None:
    broker = FakeBroker()
    handled = Recorder()
    await consumer(broker, handled)
    message = broker.message(task())
    broker.refusing = "down"
    await broker.deliver(lane(broker), message)
    assert message.settled == ["requeue"]
    broker.refusing = None
    await broker.deliver(lane(broker), broker.redelivery(message))
    assert len(handled) == 2
    assert broker.copied == []


async def test_a_stopped_jobs_task_is_dropped_unprocessed() -> None:
    broker = FakeBroker()

    await consumer(broker, never_called)
    await broker.tell(JobStopped(job_id="job-1", tenant="acme", state="cancelled", reason="x"))
    message = await broker.deliver(lane(broker), broker.message(task()))
    assert message.settled == ["ack"]
    assert broker.taken() == []
    assert broker.dead == []
