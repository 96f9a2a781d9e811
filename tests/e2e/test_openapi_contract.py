"""The gateway against its own /openapi.json, with real processes and the real broker.

schemathesis generates requests from the served document (schema-valid and schema-violating
ones) and runs every one of its checks on every answer: no 5xx; status code, content type,
headers and body (SSE events too) as documented; schema-valid requests accepted and
violating ones refused; auth enforced where declared. The run is bounded and
derandomized, so it is the same few hundred requests every time.

Three rules of a job's body are beyond JSON Schema, so the document states them in prose
(services/gateway/validation.py): lead ids unique, CSV names unique, webhook hosts that
resolve to an address webhooks may reach. Schema-valid bodies are made to keep them
(`within_prose_rules`) before they are sent; everything else is as generated. So is an
upload's: its `job` part first, and a `leads` part that is a lead file (the document
describes the file in prose).

Query parameters are generated from the document like bodies are (every parameter the
document states, with its bounds: out-of-bounds values in the negative mode). The cursor's
pattern admits exactly the cursors of positions below 10**18; half the positive cases of a
paged operation carry one of any such position. Cursors past SQLite's 64-bit integers are
schema-violating: a 422, never a 500 (`test_a_real_job_answers_as_documented`).

The stack has an API key: the document declares bearer auth, which a dev stack without
keys would not enforce.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import BaseSchema

from devtools.samples import make_leads
from devtools.stack import Stack
from services.gateway.openapi import build_openapi
from services.gateway.queries import MAX_POSITION, encode_cursor
from tests.conftest import make_stack, teardown_stack
from tests.helpers import Api

# Schemathesis cases of any operation (its type parameter is the operation's class).
Case = schemathesis.Case[Any]
pytestmark = pytest.mark.e2e

API_KEY = "contract-key-0001"
# Per operation and mode: about 250 requests in all, a few seconds.
MAX_EXAMPLES = 25
STATEFUL_EXAMPLES = 30  # sequences of up to 6 calls
DOCUMENT = build_openapi()
# Operations without parameters or body have nothing to make invalid: positive only.
CASES = [
    (method.upper(), path, mode)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    for mode in GenerationMode
    if mode.is_positive or operation.get("parameters") or operation.get("requestBody")
]
SCHEDULE_BODY = ("POST", "/v1/schedules")  # its `job` is a scrape job's body
JOB_BODIES = {("POST", "/v1/jobs/enrich"), ("POST", "/v1/jobs/scrape"), SCHEDULE_BODY}
# Loopback is a network webhooks may reach in dev; nothing listens on the discard port,
# so deliveries just fail and retry in the background.
REACHABLE_WEBHOOK = "http://127.0.0.1:9/hook"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
VALID_LEAD = {"full_name": "Ada Lovelace", "company": "Analytical Engines Ltd"}
CSV_LEADS = "full_name,company\nAda Lovelace,Analytical Engines Ltd\n"
NDJSON_LEADS = json.dumps(VALID_LEAD) + "\n"
POSITIONS = st.integers(min_value=0, max_value=10**18 - 1)


def takes_a_cursor(method: str, path: str) -> bool:
    parameters = DOCUMENT["paths"][path][method.lower()].get("parameters", [])
    return any(p["in"] == "query" and p["name"] == "cursor" for p in parameters)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every service, with an API key (replaces conftest's keyless `stack` in this module)."""
    env = {
        "LEADFLOW_API_KEYS": f"acme:{API_KEY}",
        # The negative mode sends wrong keys on purpose, from one address: throttled, every
        # later answer would be a 429 (the throttle has tests of its own).
        "LEADFLOW_AUTH_MAX_FAILURES": "0",
    }
    running = make_stack(tmp_path_factory.mktemp("stack"), env)
    try:
        running.start()
        yield running
    finally:
        teardown_stack(running)


@pytest.fixture(scope="module")
def schema(stack: Stack) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"bearerAuth": {"bearer": API_KEY}}},
        }
    )
    return schemathesis.openapi.from_url(f"{stack.url('gateway')}/openapi.json", config=config)


def with_a_valid_lead(case: Case) -> Case:
    body: Any = case.body
    if isinstance(body, dict) and case.media_type != "multipart/form-data":
        body["leads"] = [VALID_LEAD, *(body.get("leads") or [])[:3]]
    return case


def within_prose_rules(case: Case) -> Case:
    """A job body (or a schedule's `job`) that keeps the three rules the document states in
    prose only; an upload (multipart) with its `job` part so, first, and a `leads` part that
    is a valid file of the media type chosen for it (a generated string is no lead file)."""
    if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
        job = case.body.get("job")
        kind = (case.multipart_content_types or {}).get("leads", "text/csv")
        leads = NDJSON_LEADS if "ndjson" in kind else CSV_LEADS
        case.body = {"job": keep_prose_rules(job), "leads": leads}
        return case
    body: Any = case.body
    if isinstance(body, dict) and (case.method.upper(), case.path) == SCHEDULE_BODY:
        body = body.get("job")
    keep_prose_rules(body)
    return case


def keep_prose_rules(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    seen_ids: set[str] = set()
    for n, lead in enumerate(body.get("leads") or []):
        if isinstance(lead, dict) and lead.get("id") is not None:
            if lead["id"] in seen_ids:
                lead["id"] = f"{lead['id']}-{n}"
            seen_ids.add(lead["id"])
    for n, dest in enumerate(body.get("destinations") or []):
        if not isinstance(dest, dict):
            continue
        if dest.get("type") == "webhook":
            dest["url"] = REACHABLE_WEBHOOK
        elif dest.get("type") == "csv":
            dest["name"] = f"{dest['name'][:100]}-{n}"
    return body


def with_a_cursor(case: Case, position: int) -> Case:
    case.query = {**(case.query or {}), "cursor": encode_cursor(position)}
    return case


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES]
)
def test_every_answer_matches_the_document(
    schema: BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    cases = operation.as_strategy(generation_mode=mode)
    if (method, path) in JOB_BODIES and mode.is_positive:
        cases = cases.map(within_prose_rules)
    if (method, path) == ("POST", "/v1/jobs/enrich") and mode.is_positive:
        # Half the bodies start with a lead that is surely valid, so that jobs get created.
        cases = st.one_of(cases, cases.map(with_a_valid_lead))
    if takes_a_cursor(method, path) and mode.is_positive:
        cases = st.one_of(cases, st.builds(with_a_cursor, cases, POSITIONS))

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    def answers_as_documented(case: Case) -> None:
        case.call_and_validate()

    answers_as_documented()
    if (method, path) == SCHEDULE_BODY:
        stop_schedules(schema)


def stop_schedules(schema: BaseSchema) -> None:
    """Delete the saved searches the generated requests made, so they do not go on running
    scrapes for the rest of the module."""
    listed = schema["/v1/schedules"]["GET"].Case().call(headers=AUTH).json()
    for saved in listed["schedules"]:
        schema["/v1/schedules/{schedule_id}"]["DELETE"].Case(
            path_parameters={"schedule_id": saved["schedule_id"]}
        ).call(headers=AUTH)


def test_sequences_of_calls_answer_as_documented(schema: BaseSchema) -> None:
    """Stateful: calls chained through the links schemathesis infers (a job submitted, then
    read, cancelled, its secret rotated, deleted...), every check on every answer.

    Left out, because their answers depend on timing and not only on the calls before
    them: saved searches (the router runs them meanwhile, so `GET /v1/schedules` answers
    differently when hypothesis replays a sequence), and rerun and resume (202 or 409 as the
    job has finished or not yet). A link drawn from such an answer is inconsistent data
    generation to hypothesis; their operations are checked one by one above.
    """
    base = schema.exclude(path_regex="^/v1/schedules|/rerun$|/resume$").as_state_machine()

    class Machine(base):  # type: ignore[misc,valid-type]
        def before_call(self, case: Case) -> None:
            meta = case.meta
            positive = meta is None or meta.generation.mode.is_positive
            if (case.method.upper(), case.path) in JOB_BODIES and positive:
                within_prose_rules(case)
            super().before_call(case)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # No shrinking: replaying a sequence against a live stack (jobs finish, the
            # router moves on) generates other links, which hypothesis reports as flaky
            # data generation and so hides the failure it was shrinking.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        )
    )


async def test_a_real_job_answers_as_documented(schema: BaseSchema, api: Api) -> None:
    """Generated ids are unknown jobs; here every read is of a real, finished job."""
    body: Any = {
        "leads": make_leads(3, seed=77),
        "destinations": [{"type": "csv", "name": "contract"}, {"type": "dashboard"}],
    }
    submit = schema["/v1/jobs/enrich"]["POST"].Case(
        body=body, media_type="application/json", headers={"Idempotency-Key": "contract-1"}
    )
    first = submit.call_and_validate(headers=AUTH)
    assert first.status_code == 202
    job_id = first.json()["job_id"]
    replay = submit.call_and_validate(headers=AUTH)
    assert replay.json()["job_id"] == job_id

    status = await api.with_key(API_KEY).wait_job(job_id)
    assert status["state"] == "completed"
    job = {"job_id": job_id}
    answers = [
        schema["/v1/jobs/{job_id}"]["GET"].Case(path_parameters=job),
        schema["/v1/jobs"]["GET"].Case(query={"state": "completed", "limit": 1}),
        schema["/v1/jobs/{job_id}/leads"]["GET"].Case(path_parameters=job, query={"limit": 2}),
        leads_case(schema, job_id, {"format": "ndjson"}),
        leads_case(schema, job_id, {"format": "csv", "limit": 2}),
        schema["/v1/jobs/{job_id}/cancel"]["POST"].Case(path_parameters=job),
        # Generated job ids are unknown (404 before the cursor is read): a real job here.
        leads_case(schema, job_id, {"cursor": encode_cursor(MAX_POSITION + 1)}),
        leads_case(schema, job_id, {"format": "csv", "cursor": encode_cursor(2**64)}),
    ]
    got = [case.call_and_validate(headers=AUTH) for case in answers]
    assert [r.status_code for r in got[:5]] == [200] * 5
    assert got[0].json()["progress"]["done"] == 3
    assert [j["job_id"] for j in got[1].json()["jobs"]] == [job_id]
    assert len(got[2].json()["leads"]) == 2
    assert got[2].json()["next_cursor"]
    assert len(got[3].text.splitlines()) == 3
    assert len(got[4].text.splitlines()) == 3  # header and two rows
    assert got[4].headers["x-next-cursor"]  # schemathesis: lower-case keys, list values
    # Cancelling a finished job: 409 once the endpoint exists, 404 until then.
    assert got[5].status_code in (404, 409)
    assert [r.status_code for r in got[6:]] == [422, 422]


def test_a_real_upload_answers_as_documented(schema: BaseSchema) -> None:
    upload = schema["/v1/jobs/enrich"]["POST"].Case(
        body={"job": {"destinations": [{"type": "dashboard"}]}, "leads": CSV_LEADS},
        media_type="multipart/form-data",
    )
    assert upload.call_and_validate(headers=AUTH).status_code == 202
    bad = schema["/v1/jobs/enrich"]["POST"].Case(
        body={"job": {}, "leads": "full_name,email\nAda,not-an-email\n"},
        media_type="multipart/form-data",
    )
    refused = bad.call(headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "email", "message": "not an email address", "line": 2}
    ]


def leads_case(schema: BaseSchema, job_id: str, query: dict[str, Any]) -> Case:
    operation = schema["/v1/jobs/{job_id}/leads"]["GET"]
    return operation.Case(path_parameters={"job_id": job_id}, query=query)


async def test_the_document_is_public_and_unsupported_methods_name_the_allowed_ones(
    api: Api,
) -> None:
    status, document = await api.request("GET", "/openapi.json")
    assert status == 200
    assert document == DOCUMENT
    async with api.session.delete(api.base_url + "/v1/jobs", headers=AUTH) as response:
        assert response.status == 405
        assert response.content_type == "application/problem+json"
        assert "GET" in response.headers["Allow"]
