"""The dashboard's credits in headless Chromium against a real stack: a job paused by its
budget shows why and a Resume button that finishes it; the Usage page shows each provider's
credits per day (equal to what the sandbox charged), hit rate and credits per email."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from devtools.stack import Stack
from tests.e2e.test_credits import people, sandbox_stats, vendor_env
from tests.e2e.test_dashboard import (  # noqa: F401 (fixtures)
    CHROMIUM,
    KEY,
    browser,
    expect,
    page,
    page_errors,
    playwright,
    screenshots,
    start_stack,
    use_key,
)
from tests.helpers import Api

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
]


async def test_a_paused_job_resumes_from_its_page_and_usage_shows_the_credits(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: playwright.Page,  # noqa: F811 (the fixture imported above)
    page_errors: list[object],  # noqa: F811
    screenshots: Path,  # noqa: F811
) -> None:
    stack = start_stack(stack_factory, **vendor_env(("pdl", "apollo")))
    base = stack.url("gateway")
    api = Api(base, http, KEY)
    job = await api.submit({"leads": people(200), "max_credits": 20})
    job_id = job["job_id"]
    await api.wait_job(job_id, ("paused",), timeout_s=120)

    await use_key(page, base, KEY)
    await page.goto(f"{base}/#/jobs/{job_id}")
    await expect(page.locator("#job-state")).to_have_text("paused")
    await expect(page.locator("#job-paused")).to_contain_text("the job's credit budget")
    await expect(page.locator("#job-credits")).to_contain_text("of 20")
    await page.screenshot(path=screenshots / "paused.png", full_page=True)

    await page.locator("#resume-cap").fill("100000")
    await page.get_by_role("button", name="Resume").click()
    done = await api.wait_job(job_id, timeout_s=180)
    assert done["state"] == "completed"
    await expect(page.locator("#job-state")).to_have_text("completed")
    await expect(page.locator("#job-paused")).to_have_count(0)
    spent = done["progress"]["credits"]
    await expect(page.locator("#job-credits")).to_contain_text(f"Credits: {spent} of 100000")

    stats = await sandbox_stats(http, stack)
    assert sum(stats["credits"].values()) == spent
    await page.get_by_role("link", name="Usage").click()
    table = page.locator("#usage-credits")
    await expect(table).to_be_visible()
    total = table.locator("tr.total td")
    await expect(total).to_have_text(
        [str(stats["credits"].get("apollo", 0)), str(stats["credits"]["pdl"]), str(spent)]
    )
    pdl = page.locator('#usage-providers tr[data-provider="pdl"] td')
    await expect(pdl.nth(0)).to_have_text("pdl")
    _, usage = await api.request("GET", "/v1/usage")
    hit_rate = usage["providers"]["pdl"]["hit_rate"]
    await expect(pdl.nth(3)).to_have_text(f"{100 * hit_rate:.1f}%")
    per_email = usage["providers"]["pdl"]["credits_per_email"]
    await expect(pdl.nth(6)).to_have_text(f"{per_email:.2f}")
    await page.screenshot(path=screenshots / "usage.png", full_page=True)
    assert page_errors == []
