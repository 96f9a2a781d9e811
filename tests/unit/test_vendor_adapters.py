"""Contract tests of the vendor adapters against recorded vendor-format answers.

Each answer is a fixture under tests/fixtures/vendors/, taken from the vendor docs' own
examples (each file names its page). A small aiohttp server replays them and records the
requests, so each test checks both what the adapter sends (path, parameters, auth, body)
and how it maps every answer: found, not found, bad key, out of credits, rate limit with
Retry-After, server error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.config import ProviderSettings, load_provider
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.providers.apollo import ApolloProvider
from services.enricher.providers.base import (
    ProviderParked,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
    Verification,
)
from services.enricher.providers.dropcontact import DropcontactProvider
from services.enricher.providers.hunter import HunterProvider
from services.enricher.providers.pdl import PdlProvider
from services.enricher.waterfall import Waterfall
from shared.config import EnvReader, load_common
from shared.errors import ConfigError
from shared.health import Metrics
from shared.messages import Lead

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vendors"
KEY = "secret-key"


def fixture(name: str, part: str | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded[part] if part else loaded


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Replay:
    """Answers each (method, path) with the next scripted answer; records every request."""

    script: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, *answers: dict[str, Any]) -> None:
        self.script.setdefault((method, path), []).extend(answers)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                json.loads(raw) if raw else None,
            )
        )
        answers = self.script.get((request.method, request.path))
        if not answers:
            return web.json_response({"unexpected": request.path}, status=599)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.json_response(
            answer["body"], status=answer["status"], headers=answer.get("headers", {})
        )


@dataclass
class FakeControl:
    """The control stream's cooldown interface, in memory."""

    cooldowns: dict[str, float] = field(default_factory=dict)

    def cooldown_left(self, target: str) -> float:
        return 0.0

    async def start_cooldown(self, target: str, until: float) -> None:
        self.cooldowns[target] = until


@pytest.fixture
async def replay() -> AsyncIterator[Replay]:
    replay = Replay()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", replay.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    replay.url = str(server.make_url("")).rstrip("/")
    yield replay
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Harness:
    replay: Replay
    session: aiohttp.ClientSession
    control: FakeControl = field(default_factory=FakeControl)
    metrics: ProviderMetrics = field(default_factory=lambda: ProviderMetrics(Metrics()))

    def settings(self, kind: str, **overrides: Any) -> ProviderSettings:
        values: dict[str, Any] = {
            "name": kind,
            "kind": kind,
            "url": self.replay.url,
            "keys": (KEY,),
            "timeout_s": 5.0,
            "concurrency": 4,
            "rate_per_s": 0.0,
            "bulk": True,
            "cooldown_s": 30.0,
            "poll_s": 0.01,
        }
        return ProviderSettings(**{**values, **overrides})

    def build(self, kind: str) -> Any:
        return build_provider(self.settings(kind), self.session, self.control, self.metrics)


@pytest.fixture
def harness(replay: Replay, session: aiohttp.ClientSession) -> Harness:
    return Harness(replay, session)


def draft(first: str, last: str, company: str, domain: str | None = None) -> LeadDraft:
    return LeadDraft.of(
        Lead(
            id=f"{first}-{last}",
            first_name=first,
            last_name=last,
            company=company,
            company_domain=domain,
        )
    )


def only(replies: list[Reply]) -> Reply:
    assert len(replies) == 1
    return replies[0]


# --- Hunter ---------------------------------------------------------------------------


async def test_hunter_finder_request_and_found(harness: Harness) -> None:
    harness.replay.on("GET", "/v2/email-finder", fixture("hunter_email_finder"))
    hunter = harness.build("hunter")
    assert isinstance(hunter, HunterProvider)

    reply = only(
        await hunter.lookup_many([draft("Alexis", "Ohanian", "Reddit", "reddit.com")], "j1")
    )

    sent = harness.replay.requests[0]
    assert sent.method == "GET"
    assert sent.path == "/v2/email-finder"
    assert sent.query == {"domain": "reddit.com", "first_name": "Alexis", "last_name": "Ohanian"}
    assert sent.headers["X-API-KEY"] == KEY
    assert "api_key" not in sent.query  # the key stays out of URLs
    assert reply == {
        "email": "alexis@reddit.com",
        "email_status": "valid",
        "email_status_raw": "valid",
        "email_score": "97",  # Hunter's confidence score, told in sources
        "company_domain": "reddit.com",
    }


async def test_hunter_finder_sends_the_company_when_no_domain(harness: Harness) -> None:
    not_found = fixture("hunter_email_finder")
    not_found["body"]["data"].update(email=None, score=None, verification=None)
    harness.replay.on("GET", "/v2/email-finder", not_found)

    reply = only(
        await harness.build("hunter").lookup_many([draft("Alexis", "Ohanian", "Reddit")], "j")
    )

    assert harness.replay.requests[0].query["company"] == "Reddit"
    assert "domain" not in harness.replay.requests[0].query
    assert reply == {"company_domain": "reddit.com"}  # no email: not found, the domain helps


async def test_hunter_404_is_not_found(harness: Harness) -> None:
    harness.replay.on("GET", "/v2/email-finder", {"status": 404, "body": {"errors": []}})
    assert only(await harness.build("hunter").lookup_many([draft("A", "B", "C")], "j")) == {}


@pytest.mark.parametrize(
    ("case", "reason"), [("bad_key", "bad_key"), ("usage_limit", "out_of_credits")]
)
async def test_hunter_bad_key_and_usage_limit_park_it(
    harness: Harness, case: str, reason: str
) -> None:
    harness.replay.on("GET", "/v2/email-finder", fixture("hunter_errors", case))
    hunter = harness.build("hunter")

    first = only(await hunter.lookup_many([draft("A", "B", "C")], "j"))
    again = only(await hunter.lookup_many([draft("D", "E", "F")], "j"))

    assert isinstance(first, ProviderParked)
    assert first.reason == reason
    assert again is first  # parked: no second request
    assert len(harness.replay.requests) == 1


async def test_hunter_403_is_its_rate_limit(harness: Harness) -> None:
    harness.replay.on("GET", "/v2/email-finder", fixture("hunter_errors", "rate_limit"))

    reply = only(await harness.build("hunter").lookup_many([draft("A", "B", "C")], "j"))

    assert isinstance(reply, ProviderUnavailable)
    assert reply.retry_after_s == 7
    assert "provider:hunter:key0" in harness.control.cooldowns


async def test_hunter_400_refuses_and_5xx_is_later(harness: Harness) -> None:
    harness.replay.on(
        "GET",
        "/v2/email-finder",
        fixture("hunter_errors", "wrong_params"),
        fixture("hunter_errors", "server"),
    )
    hunter = harness.build("hunter")
    refused = only(await hunter.lookup_many([draft("A", "B", "C")], "j"))
    later = only(await hunter.lookup_many([draft("A", "B", "C")], "j"))
    assert isinstance(refused, ProviderRejected)
    assert not isinstance(refused, ProviderParked)
    assert isinstance(later, ProviderUnavailable)
    assert later.status == 503


async def test_hunter_verifier(harness: Harness) -> None:
    harness.replay.on("GET", "/v2/email-verifier", fixture("hunter_email_verifier"))

    verdict = await harness.build("hunter").verify("patrick@stripe.com", "j")

    assert harness.replay.requests[0].query == {"email": "patrick@stripe.com"}
    assert verdict == Verification(
        email="patrick@stripe.com", status="valid", raw_status="valid", score=100
    )


async def test_hunter_verifier_202_is_later(harness: Harness) -> None:
    harness.replay.on("GET", "/v2/email-verifier", {"status": 202, "body": {}})
    assert isinstance(await harness.build("hunter").verify("a@b.co", "j"), ProviderUnavailable)


# --- People Data Labs -----------------------------------------------------------------


async def test_pdl_bulk_request_and_mapping(harness: Harness) -> None:
    harness.replay.on("POST", "/v5/person/bulk", fixture("pdl_bulk"))
    pdl = harness.build("pdl")
    assert isinstance(pdl, PdlProvider)

    replies = await pdl.lookup_many(
        [draft("Sean", "Thorne", "People Data Labs"), draft("No", "Body", "Nowhere", "nowhere.io")],
        "j",
    )

    sent = harness.replay.requests[0]
    assert sent.headers["X-Api-Key"] == KEY
    assert sent.body == {
        "requests": [
            {
                "params": {
                    "first_name": "Sean",
                    "last_name": "Thorne",
                    "company": "People Data Labs",
                },
                "metadata": {"n": 0},
            },
            {
                "params": {"first_name": "No", "last_name": "Body", "company": "nowhere.io"},
                "metadata": {"n": 1},
            },
        ]
    }
    assert replies == [
        {
            "email": "sean@peopledatalabs.com",
            "email_status": "unknown",
            "company_domain": "peopledatalabs.com",
        },
        {},
    ]


@pytest.mark.parametrize(
    ("case", "reason"), [("bad_key", "bad_key"), ("out_of_credits", "out_of_credits")]
)
async def test_pdl_parks_on_401_and_402(harness: Harness, case: str, reason: str) -> None:
    harness.replay.on("POST", "/v5/person/bulk", fixture("pdl_errors", case))
    replies = await harness.build("pdl").lookup_many(
        [draft("A", "B", "C"), draft("D", "E", "F")], "j"
    )
    assert all(isinstance(r, ProviderParked) and r.reason == reason for r in replies)


async def test_pdl_429_and_5xx(harness: Harness) -> None:
    harness.replay.on(
        "POST",
        "/v5/person/bulk",
        fixture("pdl_errors", "rate_limit"),
        fixture("pdl_errors", "server"),
    )
    pdl = harness.build("pdl")
    limited = only(await pdl.lookup_many([draft("A", "B", "C")], "j"))
    broken = only(await pdl.lookup_many([draft("A", "B", "C")], "j"))
    assert isinstance(limited, ProviderUnavailable)
    assert limited.retry_after_s == 4
    assert "provider:pdl:key0" in harness.control.cooldowns
    assert isinstance(broken, ProviderUnavailable)
    assert broken.status == 500


# --- Apollo ---------------------------------------------------------------------------


async def test_apollo_bulk_match_request_and_mapping(harness: Harness) -> None:
    harness.replay.on("POST", "/api/v1/people/bulk_match", fixture("apollo_bulk_match"))
    apollo = harness.build("apollo")
    assert isinstance(apollo, ApolloProvider)

    replies = await apollo.lookup_many(
        [
            draft("Tim", "Zheng", "Apollo", "apollo.io"),
            draft("No", "Body", "Nowhere"),
            draft("Roy", "Chung", "Apollo"),
        ],
        "j",
    )

    sent = harness.replay.requests[0]
    assert sent.headers["X-Api-Key"] == KEY
    assert sent.query == {"reveal_personal_emails": "false", "reveal_phone_number": "false"}
    assert sent.body["details"][0] == {
        "first_name": "Tim",
        "last_name": "Zheng",
        "domain": "apollo.io",
        "organization_name": "Apollo",
    }
    assert replies == [
        {
            "email": "tim@apollo.io",
            "email_status": "valid",
            "email_status_raw": "verified",
            "company_domain": "apollo.io",
        },
        {},
        {"company_domain": "apollo.io"},  # a locked email is no email
    ]


async def test_apollo_sends_at_most_ten_per_request(harness: Harness) -> None:
    answer = {"status": 200, "body": {"matches": [None] * 10}}
    harness.replay.on("POST", "/api/v1/people/bulk_match", answer)
    leads = [draft(f"P{i}", "Q", "C") for i in range(10)]

    await harness.build("apollo").lookup_many(leads, "j")
    assert len(harness.replay.requests) == 1
    harness.replay.script.clear()
    harness.replay.on("POST", "/api/v1/people/bulk_match", answer)

    replies = await harness.build("apollo").lookup_many([*leads, draft("X", "Y", "Z")], "j")
    # 11 leads: 10 and 1; the second answer has 10 matches for 1 person, which is malformed.
    assert [len(r.body["details"]) for r in harness.replay.requests[1:]] in ([10, 1], [1, 10])
    assert isinstance(replies[-1], ProviderUnavailable)


@pytest.mark.parametrize(
    ("case", "parked"), [("bad_key", True), ("forbidden", True), ("unprocessable", False)]
)
async def test_apollo_errors(harness: Harness, case: str, parked: bool) -> None:
    harness.replay.on("POST", "/api/v1/people/bulk_match", fixture("apollo_errors", case))
    reply = only(await harness.build("apollo").lookup_many([draft("A", "B", "C")], "j"))
    assert isinstance(reply, ProviderRejected)
    assert isinstance(reply, ProviderParked) is parked


async def test_apollo_429(harness: Harness) -> None:
    harness.replay.on("POST", "/api/v1/people/bulk_match", fixture("apollo_errors", "rate_limit"))
    reply = only(await harness.build("apollo").lookup_many([draft("A", "B", "C")], "j"))
    assert isinstance(reply, ProviderUnavailable)
    assert reply.retry_after_s == 3


# --- Dropcontact ----------------------------------------------------------------------


async def test_dropcontact_submits_then_polls_by_request_id(harness: Harness) -> None:
    harness.replay.on("POST", "/v1/enrich/all", fixture("dropcontact", "submitted"))
    harness.replay.on(
        "GET",
        "/v1/enrich/all/qzmxkpvlrtdnhwa",
        fixture("dropcontact", "not_ready"),
        fixture("dropcontact", "result"),
    )
    dropcontact = harness.build("dropcontact")
    assert isinstance(dropcontact, DropcontactProvider)

    replies = await dropcontact.lookup_many(
        [
            draft("Denis", "Dupont", "companyTest"),
            draft("Jane", "Doe", "Catchall Example", "catchall-example.com"),
            draft("Nobody", "Known", "Nowhere"),
        ],
        "j",
    )

    submit, *polls = harness.replay.requests
    assert (submit.method, submit.path) == ("POST", "/v1/enrich/all")
    assert submit.headers["X-Access-Token"] == KEY
    assert submit.body["data"][1] == {
        "first_name": "Jane",
        "last_name": "Doe",
        "company": "Catchall Example",
        "website": "catchall-example.com",
    }
    assert submit.body["siren"] is False
    assert [p.path for p in polls] == ["/v1/enrich/all/qzmxkpvlrtdnhwa"] * 2
    assert replies == [
        {
            "email": "denis@companyTest.com",  # the nominative one, not the generic one
            "email_status": "valid",
            "email_status_raw": "nominative@pro",
            "company_domain": "www.companyTest.fr",
        },
        {
            "email": "jane@catchall-example.com",
            "email_status": "accept_all",
            "email_status_raw": "catch_all@pro",
            "company_domain": "catchall-example.com",
        },
        {},
    ]


async def test_dropcontact_never_ready_is_later(harness: Harness) -> None:
    harness.replay.on("POST", "/v1/enrich/all", fixture("dropcontact", "submitted"))
    harness.replay.on("GET", "/v1/enrich/all/qzmxkpvlrtdnhwa", fixture("dropcontact", "not_ready"))
    reply = only(await harness.build("dropcontact").lookup_many([draft("A", "B", "C")], "j"))
    assert isinstance(reply, ProviderUnavailable)
    assert "not ready" in str(reply)


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("bad_key", "bad_key"),
        ("out_of_credits", "out_of_credits"),
        ("too_many_records", None),
        ("rate_limit", "later"),
    ],
)
async def test_dropcontact_errors(harness: Harness, case: str, kind: str | None) -> None:
    harness.replay.on("POST", "/v1/enrich/all", fixture("dropcontact", case))
    reply = only(await harness.build("dropcontact").lookup_many([draft("A", "B", "C")], "j"))
    if kind == "later":
        assert isinstance(reply, ProviderUnavailable)
        assert reply.retry_after_s == 2
    elif kind is None:
        assert isinstance(reply, ProviderRejected)
        assert not isinstance(reply, ProviderParked)
    else:
        assert isinstance(reply, ProviderParked)
        assert reply.reason == kind


# --- the waterfall and settings -------------------------------------------------------


async def test_a_parked_provider_is_neither_cached_nor_paid(
    harness: Harness, tmp_path: Path
) -> None:
    harness.replay.on("GET", "/v2/email-finder", fixture("hunter_errors", "usage_limit"))
    cache = ProviderCache(tmp_path / "cache.db", ttl_s=3600)
    await cache.open()
    try:
        lead = draft("Alexis", "Ohanian", "Reddit", "reddit.com")
        hunter = harness.build("hunter")
        [result] = await Waterfall([hunter], cache, harness.metrics).run([lead], {}, "j", "t")
        cached = await cache.get_many("t", "hunter", [fingerprint(hunter.query(lead))], job_id="j")
    finally:
        await cache.close()
    assert result.rejections
    assert "out of credits" in result.rejections[0]
    assert not result.calls  # no paid call
    assert "hunter" not in result.answers  # nothing carried or cached as its answer
    assert cached == {}


def env(**values: str) -> EnvReader:
    return EnvReader({"LEADFLOW_SANDBOX_URL": "http://127.0.0.1:9", **values})


def test_kind_defaults_to_the_name_of_a_vendor() -> None:
    reader = env()
    common = load_common("enricher", reader)
    hunter = load_provider(reader, common, "hunter")
    alpha = load_provider(reader, common, "alpha")
    assert (hunter.kind, hunter.url) == ("hunter", "http://127.0.0.1:9/vendors/hunter")
    assert (alpha.kind, alpha.url) == ("http", "http://127.0.0.1:9/providers/alpha")


def test_a_second_account_names_its_kind() -> None:
    reader = env(LEADFLOW_PROVIDER_HUNTER2_KIND="hunter", LEADFLOW_PROVIDER_HUNTER2_KEY="k2")
    second = load_provider(reader, load_common("enricher", reader), "hunter2")
    assert (second.kind, second.key, second.url) == (
        "hunter",
        "k2",
        "http://127.0.0.1:9/vendors/hunter",
    )


def test_an_unknown_kind_is_refused() -> None:
    reader = env(LEADFLOW_PROVIDER_X_KIND="clearbit")
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_X_KIND"):
        load_provider(reader, load_common("enricher", reader), "x")
