"""Large jobs from a file upload end to end: real services, the real broker, the zero-latency
sandbox. 50,000 leads as CSV and as NDJSON complete with every lead once; a bad line, or a
body cut off, leaves no job."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.abc import AbstractStreamWriter

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, wait_until
from tests.pg import suite_pg_url

pytestmark = pytest.mark.e2e
# 50,000 leads in `make test`; the PostgreSQL pass (`make test-pg`) takes the same path with
# 10,000, so that CI's two passes fit in 30 minutes.
BIG = 50_000 if suite_pg_url() is None else 10_000
COLUMNS = ("full_name", "title", "company", "linkedin_url", "location")


def csv_file(leads: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(leads)
    return out.getvalue().encode()


def ndjson_file(leads: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(lead).encode() + b"\n" for lead in leads)


def multipart(job: dict[str, Any], leads: bytes, media_type: str) -> aiohttp.MultipartWriter:
    form = aiohttp.MultipartWriter("form-data")
    part = form.append_json(job)
    part.set_content_disposition("form-data", name="job")
    part = form.append(io.BytesIO(leads), {"Content-Type": media_type})
    part.set_content_disposition("form-data", name="leads", filename="leads")
    return form


async def upload(
    api: Api, job: dict[str, Any], leads: bytes, media_type: str
) -> tuple[int, dict[str, Any]]:
    async with api.session.post(
        api.base_url + "/v1/jobs/enrich",
        data=multipart(job, leads, media_type),
        headers=api.headers,
        timeout=aiohttp.ClientTimeout(total=180),
    ) as response:
        return response.status, await response.json(content_type=None)


async def job_ids(api: Api) -> set[str]:
    status, page = await api.request("GET", "/v1/jobs?limit=100")
    assert status == 200, page
    return {job["job_id"] for job in page["jobs"]}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def completes_with_every_lead_once(
    stack: Stack, api: Api, job_id: str, expected_ids: set[str], csv_name: str
) -> None:
    status = await api.wait_job(job_id, timeout_s=600)
    assert status["state"] == "completed", status
    assert status["progress"]["total"] == BIG
    assert status["progress"]["done"] == BIG
    stored = await api.all_leads(job_id)
    assert len(stored) == BIG
    assert {lead["id"] for lead in stored} == expected_ids

    path = stack.data_dir / "exports" / "default" / f"{csv_name}.csv"

    async def csv_complete() -> list[dict[str, str]] | None:
        rows = read_rows(path) if path.exists() else []
        return rows if len(rows) >= BIG else None

    rows = await wait_until(
        csv_complete, timeout_s=60, interval_s=0.5, what=f"{BIG} rows in {path.name}"
    )
    assert len(rows) == BIG
    assert {row["id"] for row in rows} == expected_ids


async def test_a_big_csv_upload_completes_with_every_lead_once(stack: Stack, api: Api) -> None:
    leads = make_leads(BIG, seed=1501, with_ids=False)
    job = {"destinations": [{"type": "csv", "name": "upload-csv"}]}
    status, accepted = await upload(api, job, csv_file(leads), "text/csv")
    assert status == 202, accepted
    assert accepted["state"] == "queued"
    # No ids in the file: `lead-<n>` by position, as for a JSON body.
    expected = {f"lead-{n}" for n in range(1, BIG + 1)}
    await completes_with_every_lead_once(stack, api, accepted["job_id"], expected, "upload-csv")


async def test_a_big_ndjson_upload_completes_with_every_lead_once(stack: Stack, api: Api) -> None:
    leads = make_leads(BIG, seed=1502)
    job = {"destinations": [{"type": "csv", "name": "upload-ndjson"}], "priority": "high"}
    status, accepted = await upload(api, job, ndjson_file(leads), "application/x-ndjson")
    assert status == 202, accepted
    expected = {lead["id"] for lead in leads}
    await completes_with_every_lead_once(stack, api, accepted["job_id"], expected, "upload-ndjson")


async def test_a_malformed_line_40000_is_named_and_leaves_no_job(stack: Stack, api: Api) -> None:
    leads = make_leads(50_000, seed=1503, with_ids=False)  # refused: nothing is enriched
    # Line 1 is the header: lead k is on line k + 1.
    leads[40_000 - 2]["linkedin_url"] = "https://example.com/not-a-profile"
    before = await job_ids(api)
    status, problem = await upload(api, {}, csv_file(leads), "text/csv")
    assert status == 422, problem
    assert problem["errors"] == [
        {
            "field": "linkedin_url",
            "message": "not a LinkedIn profile URL (https://www.linkedin.com/in/<handle>)",
            "line": 40_000,
        }
    ]
    assert "line 40000" in problem["detail"]
    assert await job_ids(api) == before


async def test_a_duplicate_id_names_both_lines(api: Api) -> None:
    leads = make_leads(30, seed=1504)
    leads[20]["id"] = leads[3]["id"]
    status, problem = await upload(api, {}, ndjson_file(leads), "application/x-ndjson")
    assert status == 422, problem
    assert problem["errors"] == [
        {
            "field": "id",
            "message": f"duplicate id {leads[3]['id']!r}, also used on line 4",
            "line": 21,
        }
    ]


async def test_an_upload_cut_off_mid_body_makes_no_job(stack: Stack, api: Api) -> None:
    body = multipart({}, csv_file(make_leads(5_000, seed=1505, with_ids=False)), "text/csv")
    writer = _Collect()
    await body.write(cast(AbstractStreamWriter, writer))  # it only needs `write`
    payload = bytes(writer.data)
    before = await job_ids(api)
    url = urlsplit(api.base_url)
    reader, sock = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST /v1/jobs/enrich HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: {body.content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.write(head.encode() + payload[: len(payload) // 2])
    await sock.drain()
    uploads = stack.data_dir / "uploads"

    async def spooling() -> bool:
        return any(uploads.glob("upload-*")) if uploads.exists() else False

    async def spool_removed() -> bool:
        return not await spooling()

    await wait_until(spooling, timeout_s=30, what="the gateway spooling the upload")
    sock.close()
    await sock.wait_closed()
    await wait_until(spool_removed, timeout_s=30, what="the spool removed")
    assert await job_ids(api) == before
    del reader


class _Collect:
    """A sink for `MultipartWriter.write`: the whole body, to cut."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk


async def test_uploads_skip_the_json_bounds_but_keep_quota_and_idempotency(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {
            "LEADFLOW_MAX_BODY_BYTES": "65536",
            "LEADFLOW_MAX_LEADS_PER_JOB": "100",
            "LEADFLOW_DAILY_QUOTA_LEADS": "6000",
        }
    )
    stack.start("gateway")  # every answer here comes before any task runs
    api = Api(stack.url("gateway"), http)
    data = csv_file(make_leads(5_000, seed=1506, with_ids=False))
    assert len(data) > 65536
    key = {"Idempotency-Key": "upload-1"}

    async def send(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with http.post(
            api.base_url + "/v1/jobs/enrich",
            data=multipart({}, body, "text/csv"),
            headers=headers,
        ) as response:
            return response.status, await response.json(content_type=None)

    status, first = await send(data, key)
    assert status == 202, first  # beyond both bounds of a JSON body
    status, again = await send(data, key)
    assert (status, again["job_id"]) == (202, first["job_id"])  # charged once
    status, conflict = await send(data.replace(b"\n", b"\r\n"), key)
    assert (status, conflict["job_id"]) == (409, first["job_id"])
    status, over = await send(data, {"Idempotency-Key": "upload-2"})
    assert status == 429, over
    assert over["used"] == 5_000
    status, jobs = await api.request("GET", "/v1/jobs")
    assert [job["job_id"] for job in jobs["jobs"]] == [first["job_id"]]
