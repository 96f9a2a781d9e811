"""The fake enrichment providers: a person-match API in the shape real ones use.

`POST /providers/{name}/v1/person` takes what is known of a person and answers what the
provider knows (email, its status, the company's domain) or 404. `.../v1/person/bulk`
takes up to 100 people at once, as real providers' bulk endpoints do. Each provider
knows a different, stable share of people, so a waterfall over several finds more.
Billing (counted in the stats' `credits` as `match`): one credit per person matched.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from services.sandbox import world
from services.sandbox.faults import Faults, over_rate_answer

BULK_LIMIT = 100
DOMAIN_COVERAGE = 0.9


class PersonQuery(msgspec.Struct, kw_only=True):
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    company: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None

    def name(self) -> str:
        return (self.full_name or f"{self.first_name or ''} {self.last_name or ''}").strip()

    def key(self) -> str:
        if self.linkedin_url:
            return self.linkedin_url.lower()
        return f"{self.name().lower()}|{(self.company_domain or self.company or '').lower()}"


class PersonMatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    email: str | None = None
    email_status: str | None = None
    company_domain: str | None = None


class ItemError(msgspec.Struct, kw_only=True):
    error: str
    status: int


UNAVAILABLE = ItemError(error="unavailable for this person", status=503)


class BulkQuery(msgspec.Struct, kw_only=True):
    people: list[PersonQuery]


@dataclass
class JobCalls:
    calls: int = 0
    last_at: float = 0.0


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    people: Counter[str] = field(default_factory=Counter)
    by_person: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_job: dict[str, JobCalls] = field(default_factory=dict)

    def record(self, provider: str, job_id: str | None, queries: list[PersonQuery]) -> None:
        self.requests[provider] += 1
        self.people[provider] += len(queries)
        for query in queries:
            self.by_person[(provider, query.key())] += 1
        if job_id:
            calls = self.by_job.setdefault(job_id, JobCalls())
            calls.calls += 1
            calls.last_at = time.time()

    def as_json(self) -> dict[str, Any]:
        repeats = {f"{p}:{k}": n for (p, k), n in self.by_person.items() if n > 1}
        return {
            "requests": dict(self.requests),
            "people": dict(self.people),
            "repeated_people": repeats,
            "jobs": {j: {"calls": c.calls, "last_at": c.last_at} for j, c in self.by_job.items()},
        }


class FakeProviders:
    def __init__(self, faults: Faults, charge: Callable[[str], None] = lambda _: None) -> None:
        self.faults = faults
        self.charge = charge
        self.stats = Stats()
        self._decode_one = msgspec.json.Decoder(PersonQuery)
        self._decode_bulk = msgspec.json.Decoder(BulkQuery)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/providers/{provider}/v1/person", self.person),
            web.post("/providers/{provider}/v1/person/bulk", self.person_bulk),
        ]

    async def person(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        query = await self._read(request, self._decode_one)
        self.stats.record(provider, request.headers.get("X-Leadflow-Job"), [query])
        if (wait := self.faults.over_rate(provider, bearer(request))) is not None:
            return over_rate_answer(wait)
        if (fault := await self.faults.misbehave([query.name()])) is not None:
            return fault
        match = self.match(provider, query)
        if match is None:
            return web.json_response({"error": "not_found"}, status=404)
        self.charge(provider)
        return web.Response(body=msgspec.json.encode(match), content_type="application/json")

    async def person_bulk(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        bulk = await self._read(request, self._decode_bulk)
        if len(bulk.people) > BULK_LIMIT:
            raise web.HTTPRequestEntityTooLarge(
                max_size=BULK_LIMIT, actual_size=len(bulk.people), text="at most 100 people"
            )
        self.stats.record(provider, request.headers.get("X-Leadflow-Job"), bulk.people)
        if (wait := self.faults.over_rate(provider, bearer(request))) is not None:
            return over_rate_answer(wait)
        if (fault := await self.faults.misbehave([])) is not None:
            return fault
        # Like real bulk APIs, a person the provider cannot serve now fails on its own.
        results = [
            UNAVAILABLE if self.faults.unavailable(query.name()) else self.match(provider, query)
            for query in bulk.people
        ]
        for result in results:
            if isinstance(result, PersonMatch):
                self.charge(provider)
        return web.Response(
            body=msgspec.json.encode({"results": results}), content_type="application/json"
        )

    def match(self, provider: str, query: PersonQuery) -> PersonMatch | None:
        coverage = self.faults.knobs.coverage.get(provider, 0.5)
        domain = query.company_domain
        if not domain and query.company and world.knows(provider, DOMAIN_COVERAGE, query.company):
            domain = world.company_domain(query.company)
        first, last = names_of(query)
        email = None
        if domain and first and last and world.knows(provider, coverage, first, last, domain):
            email = world.email_for(first, last, domain)
        if email is None and domain == query.company_domain:
            return None
        return PersonMatch(
            email=email,
            email_status=world.email_status(email) if email else None,
            company_domain=domain,
        )

    async def _read(self, request: web.Request, decoder: msgspec.json.Decoder[Any]) -> Any:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            raise web.HTTPUnauthorized(text="missing API key")
        try:
            return decoder.decode(await request.read())
        except msgspec.DecodeError as e:
            raise web.HTTPBadRequest(text=str(e)) from None


def bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def names_of(query: PersonQuery) -> tuple[str | None, str | None]:
    if query.first_name and query.last_name:
        return query.first_name, query.last_name
    parts = (query.full_name or "").split()
    if len(parts) >= 2:
        return parts[0], parts[-1]
    return query.first_name, query.last_name
