"""How many leads an enrich task carries: the configured size for a small job, bigger tasks
(never more than LARGEST_TASK) for a job big enough to keep every worker busy anyway."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.broker import Publish
from shared.messages import EnrichTask, Lead
from shared.tasks import LARGEST_TASK, TASKS_TO_SPREAD, enrich_tasks, task_size


def test_a_small_job_keeps_the_configured_size() -> None:
    assert task_size(2_000, 25) == 25
    assert task_size(5_000, 25) == 25


def test_a_big_job_gets_bigger_tasks_up_to_the_largest() -> None:
    assert task_size(10_000, 25) == 50
    assert task_size(20_000, 25) == LARGEST_TASK
    assert task_size(1_000_000, 25) == LARGEST_TASK


def test_a_configured_size_above_the_largest_is_kept() -> None:
    assert task_size(1_000_000, 500) == 500


@given(leads=st.integers(min_value=0, max_value=2_000_000), configured=st.integers(1, 1000))
def test_a_big_job_still_makes_enough_tasks_to_spread(leads: int, configured: int) -> None:
    size = task_size(leads, configured)
    assert size >= configured
    if size > configured:
        assert leads // size >= TASKS_TO_SPREAD


def test_enrich_tasks_carry_every_lead_once_in_tasks_of_that_size() -> None:
    leads = [Lead(id=f"l{i}", full_name=f"Person {i}") for i in range(12_345)]
    tasks = []
    for out in enrich_tasks("j1", "acme", leads, 25, "normal"):
        assert isinstance(out, Publish)
        assert isinstance(out.message, EnrichTask)
        tasks.append(out.message)
    sizes = [len(task.leads) for task in tasks]
    assert max(sizes) == task_size(len(leads), 25) == 61
    assert [lead.id for task in tasks for lead in task.leads] == [lead.id for lead in leads]
