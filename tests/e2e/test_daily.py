"""Daily summaries end to end: a tenant's day of outcomes across jobs, latest per lead id,
paged and formatted like a job's leads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from devtools.samples import make_leads
from tests.helpers import Api

pytestmark = pytest.mark.e2e


async def test_the_day_holds_every_lead_of_the_tenant_once_at_its_latest_outcome(api: Api) -> None:
    leads = make_leads(6, seed=1603)
    first = await api.submit({"leads": leads})
    # The same three people again in another job: each is in the day once, as the later.
    second = await api.submit({"leads": leads[:3]})
    for job in (first, second):
        assert (await api.wait_job(job["job_id"]))["state"] == "completed"
    today = datetime.now(UTC).date().isoformat()

    status, page = await api.request("GET", f"/v1/daily/{today}?limit=4")
    assert status == 200, page
    day = list(page["leads"])
    while page["next_cursor"] is not None:
        status, page = await api.request(
            "GET", f"/v1/daily/{today}?limit=4&cursor={page['next_cursor']}"
        )
        day.extend(page["leads"])
    mine = {lead["id"]: lead for lead in day if lead["id"] in {x["id"] for x in leads}}
    ids = [lead["id"] for lead in day]
    assert len(ids) == len(set(ids)), "a lead id twice in a day"
    assert set(mine) == {lead["id"] for lead in leads}
    second_ids = {lead["id"] for lead in await api.all_leads(second["job_id"])}
    assert second_ids == {lead["id"] for lead in leads[:3]}

    status, text = await api.request("GET", f"/v1/daily/{today}?format=csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["id"] for row in rows} >= set(mine)
    assert len(rows) == len(day)
    status, text = await api.request("GET", f"/v1/daily/{today}?format=ndjson")
    assert status == 200
    assert len(text.splitlines()) == len(day)

    status, page = await api.request("GET", "/v1/daily/2001-01-01")
    assert status == 200
    assert page == {"leads": [], "next_cursor": None}


@pytest.mark.parametrize("day", ["2026-13-01", "yesterday", "2026-02-30", "20261203"])
async def test_a_bad_date_is_refused_naming_it(api: Api, day: str) -> None:
    status, problem = await api.request("GET", f"/v1/daily/{day}")
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "date"
    assert day in problem["detail"]
