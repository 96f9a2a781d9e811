"""The dashboard's New job page in headless Chromium against a real stack: a lead file
uploaded with destinations and options opens the job's page, which follows it to the end;
a file with a bad line lists it and makes no job."""

# ruff: noqa: F811  (the dashboard's fixtures, imported above, are test parameters by name)
from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.e2e.test_dashboard import (  # noqa: F401  (browser: a fixture `page` uses)
    KEY,
    TIMEOUT_MS,
    browser,
    expect,
    page,
    page_errors,
    playwright,
    pytestmark,
    screenshots,
    start_stack,
    use_key,
)
from tests.helpers import Api

LEADS = 2_000


def write_csv(path: Path, leads: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(leads[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(leads)
    return path


async def test_a_lead_file_uploaded_from_the_new_job_page_runs_to_completion(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: playwright.Page,
    page_errors: list[object],
    screenshots: Path,
    tmp_path: Path,
) -> None:
    stack = start_stack(stack_factory)
    api = Api(stack.url("gateway"), http, KEY)
    leads = make_leads(LEADS, seed=1520)
    file = write_csv(tmp_path / "march export.csv", leads)
    await use_key(page, stack.url("gateway"), KEY)
    await page.get_by_role("link", name="New job").click()
    await expect(page.get_by_role("heading", name="New job")).to_be_visible()
    await page.get_by_label("Lead file").set_input_files(file)
    await page.get_by_label("CSV file name").fill("march")
    await page.get_by_label("Priority").select_option("high")
    await page.screenshot(path=screenshots / "1-new-job.png")
    await page.get_by_role("button", name="Upload and start").click()

    await expect(page).to_have_url(re.compile(r"#/jobs/job_"), timeout=TIMEOUT_MS)
    job_id = (await page.locator("#job-id").text_content()) or ""
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=TIMEOUT_MS)
    await page.screenshot(path=screenshots / "2-job-page.png")
    job = await api.job(job_id)
    assert job["priority"] == "high"
    assert job["progress"]["total"] == LEADS
    assert [(d["type"], d.get("name")) for d in job["destinations"]] == [
        ("csv", "march.csv"),
        ("dashboard", None),
    ]
    stored = await api.all_leads(job_id)
    assert sorted(lead["id"] for lead in stored) == sorted(lead["id"] for lead in leads)
    assert page_errors == []


async def test_a_bad_line_is_listed_and_makes_no_job(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: playwright.Page,
    page_errors: list[object],
    screenshots: Path,
    tmp_path: Path,
) -> None:
    stack = stack_factory({"LEADFLOW_API_KEYS": f"acme:{KEY}"})
    stack.start("gateway")  # refused before anything is queued
    leads = make_leads(50, seed=1521)
    leads[29]["linkedin_url"] = "https://example.com/nobody"
    file = write_csv(tmp_path / "leads.csv", leads)
    await use_key(page, stack.url("gateway"), KEY)
    await page.goto(stack.url("gateway") + "/#/new")
    await page.get_by_label("Lead file").set_input_files(file)
    await page.get_by_role("button", name="Upload and start").click()

    errors = page.get_by_role("list", name="Lines to fix")
    await expect(errors).to_have_text(
        "Line 31, linkedin_url: not a LinkedIn profile URL (https://www.linkedin.com/in/<handle>)"
    )
    await expect(page.locator("#upload-status")).to_contain_text("HTTP 422")
    await page.screenshot(path=screenshots / "3-refused.png")
    status, listing = await Api(stack.url("gateway"), http, KEY).request("GET", "/v1/jobs")
    assert status == 200
    assert listing["jobs"] == []
    assert page_errors == []
