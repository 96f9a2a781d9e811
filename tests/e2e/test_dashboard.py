"""The dashboard in headless Chromium against a real stack: the key field, a progress bar fed
live by the event stream, the job page (results, search, failed leads, CSV), problem details
shown in the page. Screenshots go to the test's tmp dir (path printed and recorded)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, wait_until

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Request

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "acme-dashboard-key-1"
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]
playwright = pytest.importorskip(
    "playwright.async_api", reason="needs the playwright package (pip install -e '.[dev]')"
)
expect = playwright.expect

# Records every value the jobs table's progress bars take, per job, as the page sets them.
RECORD_PROGRESS = """() => {
  window.progressSeen = {};
  const observer = new MutationObserver((mutations) => {
    for (const m of mutations) {
      const row = m.target.closest("tr[data-job-id]");
      if (!row) continue;
      (window.progressSeen[row.dataset.jobId] ??= []).push(
        Number(m.target.getAttribute("aria-valuenow")));
    }
  });
  observer.observe(document.querySelector("#jobs"),
    {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"]});
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
def page_errors(page: Page) -> list[object]:
    """Uncaught script errors of the page; a test ends by asserting there were none."""
    errors: list[object] = []
    page.on("pageerror", lambda error: errors.append(error))
    return errors


@pytest.fixture
def screenshots(tmp_path: Path, record_property: Callable[[str, object], None]) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    record_property("screenshots", str(folder))
    print(f"screenshots: {folder}")
    return folder


def start_stack(stack_factory: Callable[..., Stack], **env: str) -> Stack:
    stack = stack_factory({"LEADFLOW_API_KEYS": f"acme:{KEY}", **env})
    stack.start()
    return stack


async def use_key(page: Page, base_url: str, key: str) -> None:
    await page.goto(base_url + "/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Use key").click()


async def test_progress_bar_follows_a_running_job_live(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    # Latency makes the job take a few seconds; one attempt and a few provider errors give
    # it failed leads to show.
    stack = start_stack(
        stack_factory,
        LEADFLOW_SANDBOX_LATENCY_MS="300",
        LEADFLOW_ENRICH_PREFETCH="2",
        LEADFLOW_MAX_ATTEMPTS="1",
        LEADFLOW_SANDBOX_ERROR_RATE="0.05",
    )
    api = Api(stack.url("gateway"), http, KEY)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    await use_key(page, stack.url("gateway"), KEY)
    await expect(page.locator("#jobs-empty")).to_be_visible()
    await page.evaluate(RECORD_PROGRESS)

    leads = make_leads(400, seed=31)
    job = await api.submit(
        {"leads": leads, "destinations": [{"type": "csv", "name": "dash"}, {"type": "dashboard"}]}
    )
    job_id = job["job_id"]
    await page.get_by_role("button", name="Refresh").click()
    row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
    bar = row.get_by_role("progressbar")
    await expect(bar).not_to_have_attribute("aria-valuenow", "0")
    await page.screenshot(path=screenshots / "1-jobs-running.png")
    await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=TIMEOUT_MS)
    await expect(row.locator(".state")).to_have_text("completed")
    await page.screenshot(path=screenshots / "2-jobs-completed.png")

    seen = await page.evaluate(f"window.progressSeen[{job_id!r}]")
    assert any(value < 100 for value in seen), f"never saw the bar below 100%: {seen}"
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    paths = [urlsplit(r.url).path for r in requests]
    assert f"/v1/jobs/{job_id}/events" in paths, "the bar is fed by the event stream"
    assert f"/v1/jobs/{job_id}" not in paths, "no polling of the job for progress"
    stream_request = next(r for r in requests if urlsplit(r.url).path.endswith("/events"))
    assert (await stream_request.all_headers())["authorization"] == f"Bearer {KEY}"

    await row.get_by_role("link").click()
    await expect(page.locator("#job-state")).to_have_text("completed")
    await expect(page.locator("#results-count")).to_have_text("400 results")
    await expect(page.locator("#results tbody tr")).to_have_count(400)
    failed = await api.all_leads(job_id, status="failed")
    assert failed, "the sandbox error rate should fail a few leads"
    await expect(page.locator("#failed-count")).to_have_text(f"({len(failed)})")
    await expect(page.locator("#failed-leads tbody")).to_contain_text(failed[0]["error"])
    await expect(page.locator("#destinations tbody tr")).to_have_count(2)
    await expect(page.locator("#destinations tbody")).to_contain_text("dashboard")
    await page.screenshot(path=screenshots / "3-job-page.png", full_page=True)

    wanted = leads[7]
    await page.get_by_label("Search results").fill(wanted["linkedin_url"])
    await expect(page.locator("#results tbody tr")).to_have_count(1)
    await expect(page.locator("#results tbody tr")).to_have_attribute("data-lead-id", wanted["id"])
    await expect(page.locator("#results-count")).to_have_text("1 of 400 results match")
    await page.screenshot(path=screenshots / "4-job-search.png")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    assert download.suggested_filename == f"{job_id}.csv"
    text = await asyncio.to_thread(Path(await download.path()).read_text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(row["id"] for row in rows) == sorted(lead["id"] for lead in leads)
    assert page_errors == []


async def test_a_wrong_key_shows_the_problem_detail(
    stack_factory: Callable[..., Stack],
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    stack = stack_factory({"LEADFLOW_API_KEYS": f"acme:{KEY}"})
    stack.start("gateway")  # listing jobs needs nothing else

    await use_key(page, stack.url("gateway"), "not-the-key")
    error = page.get_by_role("alert")
    await expect(error).to_contain_text("send `Authorization: Bearer <api key>`")
    await expect(error).to_contain_text("(HTTP 401)")
    await page.screenshot(path=screenshots / "wrong-key.png")

    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Use key").click()
    await expect(error).to_be_hidden()
    await expect(page.locator("#jobs-empty")).to_be_visible()
    assert page_errors == []


async def test_an_empty_key_works_when_auth_is_off(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
) -> None:
    stack = stack_factory()
    stack.start("gateway")
    job_id = (await Api(stack.url("gateway"), http).submit({"leads": make_leads(2, seed=34)}))[
        "job_id"
    ]
    api_requests: list[Request] = []
    page.on(
        "request",
        lambda request: api_requests.append(request) if "/v1/" in request.url else None,
    )

    await use_key(page, stack.url("gateway"), "")

    await expect(page.locator(f'#jobs tr[data-job-id="{job_id}"]')).to_be_visible()
    await expect(page.get_by_role("alert")).to_be_hidden()
    await expect(page.locator("#key-state")).to_have_text("Using no key (auth off).")
    assert api_requests
    headers = [await request.all_headers() for request in api_requests]
    assert not [h for h in headers if "authorization" in h], "no key, no Authorization header"
    assert page_errors == []


async def test_job_page_resumes_its_stream_across_a_gateway_restart(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
) -> None:
    stack = start_stack(
        stack_factory, LEADFLOW_SANDBOX_LATENCY_MS="300", LEADFLOW_ENRICH_PREFETCH="2"
    )
    api = Api(stack.url("gateway"), http, KEY)
    leads = make_leads(300, seed=33)
    job_id = (await api.submit({"leads": leads}))["job_id"]
    streams: list[Request] = []
    page.on(
        "request",
        lambda request: streams.append(request) if "/events" in request.url else None,
    )
    await use_key(page, stack.url("gateway"), KEY)
    await page.locator(f'#jobs tr[data-job-id="{job_id}"]').get_by_role("link").click()
    await expect(page.locator("#results tbody tr").first).to_be_visible()

    stack.stop("gateway")
    stack.start("gateway")

    await expect(page.locator("#job-state")).to_have_text("completed", timeout=TIMEOUT_MS)
    await expect(page.locator("#results-count")).to_have_text("300 results")
    rows = page.locator("#results tbody tr")
    ids = await rows.evaluate_all("rows => rows.map(row => row.dataset.leadId)")
    assert sorted(ids) == sorted(lead["id"] for lead in leads), "every lead exactly once"
    job_streams = [r for r in streams if r.url.endswith(f"/v1/jobs/{job_id}/events")]
    resumed = [(await r.all_headers()).get("last-event-id") for r in job_streams[1:]]
    assert resumed, "the page should have reconnected"
    assert all(value not in (None, "0") for value in resumed), resumed
    assert page_errors == []


async def test_cancel_from_the_job_page(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    # One task in flight at a time and slow providers: the job runs long enough to cancel.
    stack = start_stack(
        stack_factory, LEADFLOW_SANDBOX_LATENCY_MS="500", LEADFLOW_ENRICH_PREFETCH="1"
    )
    api = Api(stack.url("gateway"), http, KEY)
    job_id = (await api.submit({"leads": make_leads(300, seed=32)}))["job_id"]
    await use_key(page, stack.url("gateway"), KEY)
    await page.locator(f'#jobs tr[data-job-id="{job_id}"]').get_by_role("link").click()
    await expect(page.locator("#job-id")).to_have_text(job_id)

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".message:not([hidden])")).to_be_visible()
    await page.screenshot(path=screenshots / "cancel.png")
    assert await page.get_by_role("alert").is_hidden(), await page.get_by_role("alert").inner_text()
    await expect(page.get_by_role("status")).to_contain_text("Cancellation")
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    assert (await api.job(job_id))["state"] == "cancelled"
    assert page_errors == []


async def test_schedules_page_saves_shows_runs_and_deletes(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    stack = start_stack(stack_factory, LEADFLOW_UPKEEP_INTERVAL_S="0.2")
    api = Api(stack.url("gateway"), http, KEY)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await use_key(page, stack.url("gateway"), KEY)
    await page.get_by_role("link", name="Schedules").click()
    await expect(page.locator("#schedules-empty")).to_be_visible()

    await page.get_by_role("spinbutton", name="Seconds").fill("3600")
    await page.get_by_label("Keywords").fill("chief revenue officer")
    await page.get_by_label("Max leads").fill("5")
    await page.get_by_label("Enrich").uncheck()
    await page.get_by_role("button", name="Save search").click()
    await expect(page.get_by_role("status")).to_contain_text("first run starts now")
    _, listed = await api.request("GET", "/v1/schedules")
    [saved] = listed["schedules"]
    assert saved["every_s"] == 3600
    assert saved["only_new"] is True
    assert saved["job"]["query"] == {"keywords": "chief revenue officer"}
    row = page.locator(f'#schedules tr[data-schedule-id="{saved["schedule_id"]}"]')
    await expect(row).to_contain_text("every 3600 s")
    await page.screenshot(path=screenshots / "schedules.png", full_page=True)

    await row.get_by_role("link").click()
    await expect(page.locator("#schedule-id")).to_have_text(saved["schedule_id"])
    # The first run starts at creation; the page refreshes until it shows it completed.
    run = page.locator("#schedule-runs tbody tr").first
    await expect(run.locator(".state")).to_have_text("completed")
    await page.screenshot(path=screenshots / "schedule-runs.png", full_page=True)
    await run.get_by_role("link").click()
    await expect(page.locator("#job-state")).to_have_text("completed")

    await page.go_back()
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#schedules-empty")).to_be_visible()
    status, _ = await api.request("GET", f"/v1/schedules/{saved['schedule_id']}")
    assert status == 404
    assert page_errors == []


async def test_dead_letters_page_filters_by_job_and_replays(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    stack = start_stack(stack_factory, LEADFLOW_MAX_ATTEMPTS="1")
    api = Api(stack.url("gateway"), http, KEY)
    async with http.put(
        f"{stack.url('sandbox')}/_sandbox/config", json={"unavailable_for": ["Poison Pill"]}
    ) as response:
        assert response.status == 200
    leads = make_leads(20, seed=1604)
    leads[3] = {**leads[3], "full_name": "Poison Pill"}
    poisoned = await api.submit({"leads": leads})
    clean = await api.submit({"leads": make_leads(5, seed=1605)})
    for job in (poisoned, clean):
        await api.wait_job(job["job_id"])

    async def parked() -> bool:
        _, found = await api.request("GET", f"/v1/dead-letters?job_id={poisoned['job_id']}")
        return bool(found["dead_letters"])

    await wait_until(parked, what="the poison lead parked")
    await use_key(page, stack.url("gateway"), KEY)
    await page.get_by_role("link", name="Dead letters").click()
    rows = page.locator("#dead-letters tbody tr")
    await expect(rows).to_have_count(1)
    await page.locator("#dead-letters-job").fill(clean["job_id"])
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#dead-letters-empty")).to_be_visible()
    await page.locator("#dead-letters-job").fill(poisoned["job_id"])
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(poisoned["job_id"])
    await page.screenshot(path=screenshots / "dead-letters.png", full_page=True)

    async with http.put(
        f"{stack.url('sandbox')}/_sandbox/config", json={"unavailable_for": []}
    ) as response:
        assert response.status == 200
    await rows.first.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Replay selected").click()
    await expect(page.get_by_role("status")).to_contain_text("Replayed 1 dead letters")
    await expect(page.locator("#dead-letters-empty")).to_be_visible()  # none parked now

    async def upgraded() -> bool:
        return bool((await api.job(poisoned["job_id"]))["progress"]["failed"] == 0)

    await wait_until(upgraded, what="the replayed lead enriched")
    assert page_errors == []


async def test_job_page_draws_leads_per_second(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    page: Page,
    page_errors: list[object],
    screenshots: Path,
) -> None:
    stack = start_stack(stack_factory, LEADFLOW_SANDBOX_LATENCY_MS="100")
    api = Api(stack.url("gateway"), http, KEY)
    job = await api.submit({"leads": make_leads(300, seed=1606)})
    await api.wait_job(job["job_id"])
    _, data = await api.request("GET", f"/v1/jobs/{job['job_id']}/throughput")
    assert sum(data["leads_per_s"]) * data["bucket_s"] == pytest.approx(300)

    await use_key(page, stack.url("gateway"), KEY)
    await page.goto(f"{stack.url('gateway')}/#/jobs/{job['job_id']}")
    chart = page.locator("#throughput svg g[data-buckets]")
    await expect(chart).to_have_attribute("data-buckets", str(len(data["leads_per_s"])))
    await expect(chart.locator("rect")).to_have_count(len(data["leads_per_s"]))
    await expect(page.locator("#throughput-caption")).to_contain_text("leads per second")
    await page.screenshot(path=screenshots / "throughput.png", full_page=True)
    await page.get_by_role("link", name="All jobs").click()
    await expect(page.locator("#throughput")).to_have_count(0)
    assert page_errors == []
