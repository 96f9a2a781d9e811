"""Decisions made once: one codec per worker process, one list of sample people, and an
old task's dropped field still decoding."""

from __future__ import annotations

import msgspec
import pytest

import shared.worker
from devtools import samples
from services.sandbox import sources as sandbox_sources
from services.sandbox import world
from shared.broker import Outgoing
from shared.config import EnvReader, WorkerSettings, load_common
from shared.messages import Codec, EnrichTask, Lead
from shared.worker import WorkerRuntime, WorkerSpec


def no_give_up(task: EnrichTask, reason: str) -> list[Outgoing]:
    return []


async def test_a_worker_builds_one_codec_and_shares_it(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Codec] = []

    class Counted(Codec):
        def __init__(self) -> None:
            super().__init__()
            built.append(self)

    monkeypatch.setattr(shared.worker, "Codec", Counted)
    settings = WorkerSettings(
        concurrency=1, tenant_concurrency=1, max_attempts=1, retry_base_s=1.0, retry_max_s=1.0
    )
    spec = WorkerSpec(kind="enrich", message_type=EnrichTask, settings=settings, give_up=no_give_up)
    runtime = WorkerRuntime(load_common("enricher", EnvReader({})), spec)
    assert built == [runtime.codec]
    assert runtime.control.codec is runtime.codec


def test_an_enrich_task_with_the_dropped_attempt_field_still_decodes() -> None:
    old = msgspec.json.encode(
        {"type": "task.enrich", "job_id": "j", "tenant": "t", "leads": [{"id": "a"}], "attempt": 3}
    )
    codec = Codec()
    task = codec.decode(old)
    assert task == EnrichTask(job_id="j", tenant="t", leads=[Lead(id="a")])
    assert b"attempt" not in codec.encode(task)


def test_sample_leads_and_the_sandbox_source_draw_people_from_one_list() -> None:
    leads = samples.make_leads(300)
    assert {lead["full_name"].split(" ", 1)[0].title() for lead in leads} <= set(world.FIRST)
    assert {lead["company"] for lead in leads} <= set(world.COMPANIES)
    assert {lead["title"] for lead in leads} <= set(world.TITLES)
    key, total = sandbox_sources.people("sandbox", "cto", "paris")
    people = [sandbox_sources.person(key, i, "paris") for i in range(total)]
    firsts = {p.full_name.split(" ", 1)[0] for p in people}
    assert firsts <= set(world.FIRST)
    assert len(firsts) > len(world.FIRST) // 2  # drawn from the whole list
    assert {p.company for p in people} <= set(world.COMPANIES)
