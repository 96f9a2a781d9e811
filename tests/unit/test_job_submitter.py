"""The gateway's job submitter on the in-memory broker and a real store on a temporary
file: a job is answered `queued` only once its lane notices and tasks are confirmed; a
broker that does not confirm leaves a failed job (and a stop broadcast), never a
`queued` one whose tasks were never sent."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.errors import NotSent
from services.gateway.submit import JobSubmitter, NewJob
from shared.broker import Publish
from shared.jobs import JobSpec
from shared.messages import EnrichTask, JobStopped, LaneOpened, Lead
from shared.store import Store
from shared.tasks import enrich_tasks
from tests.fakebroker import FakeBroker

LEADS = [Lead(id=f"l{i}") for i in range(5)]


def new_job(leads: list[Lead] = LEADS) -> NewJob:
    return NewJob(
        kind="enrich",
        priority="normal",
        timeout_s=3600,
        spec=JobSpec(),
        total=len(leads),
        charged=len(leads),
        tasks=lambda job_id: enrich_tasks(job_id, "acme", leads, 2, "normal"),
        lanes=("enrich",),
    )


async def job_row(store: Store, job_id: str) -> dict[str, Any]:
    row = await store.run(
        lambda c: c.execute("SELECT state, error FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    )
    return {"state": row[0], "error": row[1]}


async def test_a_job_is_queued_once_its_lane_and_tasks_are_confirmed(store: Store) -> None:
    broker = FakeBroker()
    submitter = JobSubmitter(store, broker, 5.0, daily_quota_leads=1000)
    submission = await submitter.submit("acme", new_job(), None, b"{}")
    assert submission.state == "queued"
    assert broker.lanes == {("enrich", "acme")}
    notice, *tasks = (p.item.message for p in broker.taken())
    assert isinstance(notice, LaneOpened)
    assert [len(t.leads) for t in tasks if isinstance(t, EnrichTask)] == [2, 2, 1]
    assert (await job_row(store, submission.job_id))["state"] == "queued"

    # The lane was announced: the next job of the tenant publishes only its tasks.
    again = await submitter.submit("acme", new_job(), None, b"{}")
    assert all(isinstance(p.item.message, EnrichTask) for p in broker.taken())
    assert again.state == "queued"


async def test_unconfirmed_tasks_fail_the_job_and_stop_what_may_have_landed(
    store: Store,
) -> None:
    broker = FakeBroker()
    submitter = JobSubmitter(store, broker, 5.0, daily_quota_leads=1000)
    broker.refusing = "broker did not confirm within 5s"
    with pytest.raises(NotSent) as refused:
        await submitter.submit("acme", new_job(), None, b"{}")
    job_id = refused.value.job_id
    assert job_id is not None
    row = await job_row(store, job_id)
    assert row["state"] == "failed"
    assert "could not queue the job's tasks" in row["error"]
    assert broker.taken() == [], "the stop could not be broadcast either"

    broker.refusing = None
    await submitter.broadcast_stop(job_id, "acme", "why")
    [stop] = broker.taken()
    assert stop.item == Publish(
        JobStopped(job_id=job_id, tenant="acme", state="failed", reason="why")
    )


async def test_a_disconnected_broker_refuses_before_anything_is_recorded(store: Store) -> None:
    broker = FakeBroker()
    broker.is_connected = False
    submitter = JobSubmitter(store, broker, 5.0, daily_quota_leads=1000)
    with pytest.raises(NotSent):
        await submitter.submit("acme", new_job(), None, b"{}")
    count = await store.run(lambda c: c.execute("SELECT count(*) FROM jobs").fetchone()[0])
    assert count == 0


async def test_a_replayed_idempotency_key_answers_the_first_job_and_publishes_nothing(
    store: Store,
) -> None:
    broker = FakeBroker()
    submitter = JobSubmitter(store, broker, 5.0, daily_quota_leads=1000)
    first = await submitter.submit("acme", new_job(), "key-1", b'{"leads": 5}')
    broker.taken()
    replay = await submitter.submit("acme", new_job(), "key-1", b'{"leads": 5}')
    assert replay.job_id == first.job_id
    assert replay.replayed
    assert broker.taken() == []
