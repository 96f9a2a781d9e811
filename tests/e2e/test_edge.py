"""The edge: bad input refused with a field-level problem and no side effect; auth and
tenants; a broker that is down or refuses the job's tasks; settings that fail fast."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aio_pika
import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import ROOT, Stack
from services.gateway.queries import encode_cursor
from tests.helpers import AMQP_URL, Api, free_port, wait_until

pytestmark = pytest.mark.e2e

ONE_LEAD = {"full_name": "Ada Lovelace", "company": "Analytical Engines Ltd"}
BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("unparseable JSON", b'{"leads": [', 400, ""),
    ("empty body", b"", 400, ""),
    ("wrong type", {"leads": [{"full_name": 42}]}, 422, "leads[0].full_name"),
    ("leads not a list", {"leads": "ada"}, 422, "leads"),
    ("no leads field", {"destinations": []}, 422, "leads"),
    ("empty leads", {"leads": []}, 422, "leads"),
    ("unknown lead field", {"leads": [{**ONE_LEAD, "shoe_size": 44}]}, 422, "leads[0].shoe_size"),
    ("lead without a name", {"leads": [ONE_LEAD, {"title": "CEO"}]}, 422, "leads[1]"),
    (
        "invalid LinkedIn URL",
        {
            "leads": [
                ONE_LEAD,
                ONE_LEAD,
                {**ONE_LEAD, "linkedin_url": "https://evil.example/in/ada"},
            ]
        },
        422,
        "leads[2].linkedin_url",
    ),
    ("invalid email", {"leads": [{**ONE_LEAD, "email": "ada-at-home"}]}, 422, "leads[0].email"),
    (
        "duplicate ids",
        {"leads": [{**ONE_LEAD, "id": "a"}, {**ONE_LEAD, "id": "a"}]},
        422,
        "leads[1].id",
    ),
    (
        "unknown destination type",
        {"leads": [ONE_LEAD], "destinations": [{"type": "ftp", "host": "x"}]},
        422,
        "destinations[0].type",
    ),
    (
        "CSV name with a path",
        {"leads": [ONE_LEAD], "destinations": [{"type": "csv", "name": "../../etc/passwd"}]},
        400,
        "destinations[0].name",
    ),
    (
        "non-http webhook",
        {"leads": [ONE_LEAD], "destinations": [{"type": "webhook", "url": "ftp://example.com/x"}]},
        422,
        "destinations[0].url",
    ),
    (
        "webhook into a private network",
        {"leads": [ONE_LEAD], "destinations": [{"type": "webhook", "url": "http://10.1.2.3/x"}]},
        422,
        "destinations[0].url",
    ),
    (
        "unknown field in a fields mapping",
        {
            "leads": [ONE_LEAD],
            "destinations": [{"type": "csv", "name": "x", "fields": {"E": "mail"}}],
        },
        422,
        "destinations[0].fields.E",
    ),
    (
        "CSV name with a line break",
        {"leads": [ONE_LEAD], "destinations": [{"type": "csv", "name": "report\n"}]},
        400,
        "destinations[0].name",
    ),
    (
        "CSV name of a Windows device",
        {"leads": [ONE_LEAD], "destinations": [{"type": "csv", "name": "NUL"}]},
        422,
        "destinations[0].name",
    ),
    (
        "lead field over its limit",
        {"leads": [ONE_LEAD, {**ONE_LEAD, "company": "," * 501}]},
        422,
        "leads[1].company",
    ),
    (
        "webhook to NAT64 of a private address",
        {
            "leads": [ONE_LEAD],
            "destinations": [{"type": "webhook", "url": "http://[64:ff9b::a9fe:a9fe]/x"}],
        },
        422,
        "destinations[0].url",
    ),
    ("bad priority", {"leads": [ONE_LEAD], "priority": "urgent"}, 422, "priority"),
    ("too many leads", {"leads": [ONE_LEAD] * 10_001}, 413, "leads"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
async def test_bad_input_is_refused_and_changes_nothing(
    stack: Stack, api: Api, case: str, body: Any, status: int, field: str
) -> None:
    _, jobs_before = await api.request("GET", "/v1/jobs?limit=200")
    published_before = await published_count(api, stack)
    raw = body if isinstance(body, bytes) else None
    answer, problem = await api.request(
        "POST",
        "/v1/jobs/enrich",
        json=None if raw is not None else body,
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert answer == status, problem
    assert problem["status"] == status
    assert problem["type"].startswith("https://leadflow.dev/problems/")
    assert problem["title"]
    assert problem["detail"]
    if field:
        assert field in [e["field"] for e in problem["errors"]], problem
    _, jobs_after = await api.request("GET", "/v1/jobs?limit=200")
    assert jobs_after["jobs"] == jobs_before["jobs"]
    assert await published_count(api, stack) == published_before


async def published_count(api: Api, stack: Stack) -> float:
    async with api.session.get(stack.url("gateway") + "/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("leadflow_messages_published_total{")
    )


async def test_unknown_job_is_404_problem(api: Api) -> None:
    status, problem = await api.request("GET", "/v1/jobs/job_nope")
    assert status == 404
    assert problem["status"] == 404


async def test_bad_query_parameters_name_the_parameter(api: Api) -> None:
    for path, query, param in (
        ("/v1/jobs", "state=sleeping", "state"),
        ("/v1/jobs", "limit=0", "limit"),
        ("/v1/jobs", "limit=%2B5", "limit"),
        ("/v1/jobs", "cursor=zz", "cursor"),
        ("/v1/jobs", f"cursor={encode_cursor(2**64)}", "cursor"),
        ("/v1/dead-letters", f"cursor={encode_cursor(2**63)}", "cursor"),
        ("/v1/dead-letters", "job_id=" + "j" * 101, "job_id"),
        ("/v1/usage", "from=2024-W01-1", "from"),
    ):
        status, problem = await api.request("GET", f"{path}?{query}")
        assert status == 422, query
        assert problem["errors"][0]["field"] == param


async def test_formulas_are_neutralised_in_csv_and_cursors_are_bounded(
    stack: Stack, api: Api
) -> None:
    """Item 5 and 7 of the hardening issue, through the real services."""
    formula = '=HYPERLINK("http://evil.example","open")'
    lead = {"id": "f1", "full_name": "Ada Lovelace", "company": formula, "title": "-2+3"}
    body = {
        "leads": [lead],
        "destinations": [{"type": "csv", "name": "formulas", "fields": {"@Company": "company"}}],
    }
    job_id = (await api.submit(body))["job_id"]
    assert (await api.wait_job(job_id))["state"] == "completed"

    (result,) = await api.all_leads(job_id)
    assert (result["company"], result["title"]) == (formula, "-2+3")  # JSON keeps the value
    status, text = await api.request("GET", f"/v1/jobs/{job_id}/leads?format=csv")
    assert status == 200
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    assert row[header.index("company")] == "'" + formula
    assert row[header.index("title")] == "'-2+3"
    export = stack.data_dir / "exports" / "default" / "formulas.csv"
    with export.open(newline="") as f:
        assert list(csv.reader(f)) == [["'@Company"], ["'" + formula]]

    too_far = encode_cursor(2**63)
    for path in (
        "/v1/jobs?",
        f"/v1/jobs/{job_id}/leads?",
        f"/v1/jobs/{job_id}/leads?format=csv&",
        "/v1/dead-letters?",
    ):
        status, problem = await api.request("GET", f"{path}cursor={too_far}")
        assert status == 422, (path, problem)
        assert problem["errors"][0]["field"] == "cursor"


async def test_tenants_see_only_their_own_jobs(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_API_KEYS": "acme:acme-key-123,globex:globex-key-456"})
    stack.start()
    anonymous = Api(stack.url("gateway"), http)
    acme, globex = anonymous.with_key("acme-key-123"), anonymous.with_key("globex-key-456")

    status, problem = await anonymous.request("POST", "/v1/jobs/enrich", json={"leads": [ONE_LEAD]})
    assert status == 401
    assert problem["status"] == 401
    status, _ = await anonymous.with_key("wrong-key-000").request("GET", "/v1/jobs")
    assert status == 401

    job = await acme.submit({"leads": make_leads(3, seed=40)})
    await acme.wait_job(job["job_id"])
    status, _ = await globex.request("GET", f"/v1/jobs/{job['job_id']}")
    assert status == 404
    status, _ = await globex.request("GET", f"/v1/jobs/{job['job_id']}/leads")
    assert status == 404
    _, listing = await globex.request("GET", "/v1/jobs")
    assert listing["jobs"] == []
    _, listing = await acme.request("GET", "/v1/jobs")
    assert [j["job_id"] for j in listing["jobs"]] == [job["job_id"]]


async def test_post_answers_503_while_the_broker_is_unreachable(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    closed_port = stack_port_nobody_listens_on()
    stack = stack_factory({"LEADFLOW_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed_port}/"})
    gateway = stack.process("gateway")
    stack.services["gateway"] = gateway
    gateway.start()
    api = Api(stack.url("gateway"), http)

    async def serving() -> int | None:
        try:
            status, _ = await api.request("GET", "/readyz")
        except aiohttp.ClientError:
            return None
        return status

    assert await wait_until(serving, what="gateway serving /readyz") == 503
    _, ready = await api.request("GET", "/readyz")
    assert "broker" in ready["reason"]
    status, problem = await api.request("POST", "/v1/jobs/enrich", json={"leads": [ONE_LEAD]})
    assert status == 503
    assert problem["status"] == 503
    _, listing = await api.request("GET", "/v1/jobs")
    assert [j for j in listing["jobs"] if j["state"] == "queued"] == []


async def test_job_is_failed_when_the_broker_refuses_its_tasks(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory()
    stack.start("gateway")
    api = Api(stack.url("gateway"), http)
    await api.submit({"leads": [ONE_LEAD]})  # the tenant's lane now exists, known to the gateway
    # Without the lane the tasks are unroutable: mandatory publishing must notice.
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{stack.env['LEADFLOW_BROKER_PREFIX']}.enrich.tenant.default")

    status, problem = await api.request("POST", "/v1/jobs/enrich", json={"leads": [ONE_LEAD]})
    assert status == 503
    job = await api.job(problem["job_id"])
    assert job["state"] == "failed"
    assert "could not queue" in job["error"]


def stack_port_nobody_listens_on() -> int:
    return free_port()


@pytest.mark.parametrize("service", ["gateway", "enricher", "router", "sandbox"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEADFLOW_HTTP_PORT", "eighty"),
        ("LEADFLOW_AMQP_URL", "http://not-amqp"),
        ("LEADFLOW_ENV", "staging"),
    ],
)
def test_malformed_setting_stops_the_service_naming_it(
    service: str, variable: str, value: str
) -> None:
    env = {**os.environ, "LEADFLOW_ENV": "dev", variable: value}
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


@pytest.mark.parametrize(
    ("service", "variable"),
    [("gateway", "LEADFLOW_API_KEYS"), ("enricher", "LEADFLOW_PROVIDERS")],
)
def test_production_refuses_unsafe_dev_defaults(service: str, variable: str) -> None:
    env = {
        **os.environ,
        "LEADFLOW_ENV": "production",
        "LEADFLOW_AMQP_URL": "amqp://leadflow:secret@127.0.0.1:5672/",
        "LEADFLOW_DATA_DIR": "/tmp/leadflow-prod-test",
    }
    env.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert variable in result.stderr
