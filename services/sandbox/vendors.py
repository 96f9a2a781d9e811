"""Emulations of the paid vendors' APIs, each at `/vendors/<vendor>` + the vendor's own path.

Faithful to the same public docs as the enricher's adapters (cited in each adapter's
docstring): the paths, the auth header or parameter, the request and answer shapes, the
not-found answers, the bulk limits and each vendor's error for a bad key, spent credits and
a rate limit:

| vendor | paths | bad key | no credits | rate limit (+ Retry-After) |
|---|---|---|---|---|
| hunter | `GET /v2/email-finder`, `GET /v2/email-verifier` | 401 | 429 | 403 |
| pdl | `POST /v5/person/bulk` (≤ 100), `GET /v5/person/enrich` | 401 | 402 | 429 |
| apollo | `POST /api/v1/people/match`, `.../bulk_match` (≤ 10) | 401 | 403 | 429 |
| dropcontact | `POST /v1/enrich/all` (≤ 250), `GET /v1/enrich/all/{id}` | 401 | 403 | 429 |

Answers come from the sandbox world: a vendor knows a person (name + company domain) by
`world.knows(vendor, coverage)`, resolves a company's domain for 90 % of companies, and an
address's verdict (`world.verdict`) decides what each vendor says of it. Each vendor's
billing rule is counted in `credits` (by vendor) and `credits_detail` (by vendor and kind):

- hunter: a `search` credit per email found, a `verification` credit per verification that
  is not `unknown`; a repeat of the same request with the same key is not charged again.
- pdl: one `match` credit per person matched (status 200), also in bulk.
- apollo: one `match` credit per person enriched (a non-null match).
- dropcontact: one `email` credit per record returned with a verified (nominative) email.

Each person asked of each vendor is counted on receipt (`vendor_people`, and those asked
more than once in `vendor_repeated_people`: what a crash made the enricher ask twice). A
request is received whole before the vendor's work (the latency knob): a client killed
meanwhile has still asked, and is charged, as with a real vendor.

Keys in the `bad_keys` knob are refused, keys in `exhausted_keys` are out of credits, and
`rate_limits` allows each key of a vendor that many requests in any one second.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from services.sandbox import world
from services.sandbox.faults import Faults

DOMAIN_COVERAGE = 0.9
VENDORS = ("hunter", "pdl", "apollo", "dropcontact")
PDL_BULK_LIMIT = 100
APOLLO_BULK_LIMIT = 10
DROPCONTACT_BATCH_LIMIT = 250
NOT_READY = "Request not ready yet, try again in 30 seconds"
# How each vendor says a verdict: Hunter's finder never returns an invalid address.
HUNTER_FINDER = {"valid": "valid", "accept_all": "accept_all", "unknown": "unknown"}
APOLLO_STATUS = {"valid": "verified", "accept_all": "unverified", "unknown": "guessed"}
DROPCONTACT_QUALIFICATION = {"valid": "nominative@pro", "accept_all": "catch_all@pro"}


@dataclass(frozen=True)
class Person:
    """What a vendor knows of one person: the email (and its verdict) and the domain."""

    email: str | None
    verdict: str | None
    domain: str | None
    known: bool


def person(
    vendor: str,
    coverage: float,
    first: str | None,
    last: str | None,
    company: str | None,
    domain: str | None,
) -> Person:
    """The sandbox world as `vendor` sees it (tests compute expected answers with this)."""
    if not domain and company and world.knows(vendor, DOMAIN_COVERAGE, company):
        domain = world.company_domain(company)
    known = bool(domain and first and last and world.knows(vendor, coverage, first, last, domain))
    email = world.email_for(first, last, domain) if known and first and last and domain else None
    return Person(email, world.verdict(email) if email else None, domain, known)


def split_name(full: str | None) -> tuple[str | None, str | None]:
    parts = (full or "").split()
    return (parts[0], parts[-1]) if len(parts) >= 2 else (None, None)


@dataclass
class VendorStats:
    requests: Counter[str] = field(default_factory=Counter)
    credits: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches_submitted: Counter[str] = field(default_factory=Counter)  # asynchronous vendors
    charged: set[tuple[str, str, str]] = field(default_factory=set)
    # How often each person was asked of each vendor (a batch's records when submitted,
    # not when polled): repeats are what a crash cost (tests/faults/test_paid_crashes.py).
    by_person: Counter[tuple[str, str]] = field(default_factory=Counter)

    def asked(self, vendor: str, first: str | None, last: str | None, company: Any) -> None:
        who = f"{first or ''} {last or ''}".strip().lower()
        self.by_person[(vendor, f"{who}|{str(company or '').lower()}")] += 1

    def charge(self, vendor: str, kind: str, n: int = 1) -> None:
        if n:
            self.credits[(vendor, kind)] += n

    def charge_once(self, vendor: str, kind: str, key: str, request: str) -> None:
        """Hunter's rule: the same request again with the same key costs nothing."""
        if (key, kind, request) not in self.charged:
            self.charged.add((key, kind, request))
            self.charge(vendor, kind)

    def as_json(self) -> dict[str, Any]:
        detail: dict[str, dict[str, int]] = {}
        for (vendor, kind), n in self.credits.items():
            detail.setdefault(vendor, {})[kind] = n
        return {
            "credits": {v: sum(kinds.values()) for v, kinds in detail.items()},
            "credits_detail": detail,
            "batches_submitted": dict(self.batches_submitted),
            "vendor_requests": dict(self.requests),
            **person_counts(self.by_person),
        }


def person_counts(by_person: Counter[tuple[str, str]]) -> dict[str, Any]:
    """`vendor_people`: people asked per vendor (a person asked twice counts twice);
    `vendor_repeated_people`: per vendor, each person asked more than once, and how often."""
    people: Counter[str] = Counter()
    repeated: dict[str, dict[str, int]] = {}
    for (vendor, who), n in by_person.items():
        people[vendor] += n
        if n > 1:
            repeated.setdefault(vendor, {})[who] = n
    return {"vendor_people": dict(people), "vendor_repeated_people": repeated}


Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


@dataclass
class Batch:
    records: list[dict[str, Any]]
    polls_left: int


class FakeVendors:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.stats = VendorStats()
        self.batches: dict[str, Batch] = {}

    def reset(self) -> None:
        self.stats = VendorStats()
        self.batches.clear()

    def routes(self) -> list[web.RouteDef]:
        v = "/vendors"
        return [
            web.get(f"{v}/hunter/v2/email-finder", self._gate("hunter", self.hunter_finder)),
            web.get(f"{v}/hunter/v2/email-verifier", self._gate("hunter", self.hunter_verifier)),
            web.post(f"{v}/pdl/v5/person/bulk", self._gate("pdl", self.pdl_bulk)),
            web.get(f"{v}/pdl/v5/person/enrich", self._gate("pdl", self.pdl_enrich)),
            web.post(f"{v}/apollo/api/v1/people/match", self._gate("apollo", self.apollo_match)),
            web.post(
                f"{v}/apollo/api/v1/people/bulk_match", self._gate("apollo", self.apollo_bulk)
            ),
            web.post(f"{v}/dropcontact/v1/enrich/all", self._gate("dropcontact", self.dc_submit)),
            web.get(
                f"{v}/dropcontact/v1/enrich/all/{{request_id}}",
                self._gate("dropcontact", self.dc_result),
            ),
        ]

    # --- what every vendor does before answering: key, rate limit, faults ---

    def _gate(self, vendor: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def gated(request: web.Request) -> web.StreamResponse:
            self.stats.requests[vendor] += 1
            key = api_key(vendor, request)
            knobs = self.faults.knobs
            if not key or key in knobs.bad_keys:
                return refusal(vendor, "bad_key")
            if key in knobs.exhausted_keys:
                return refusal(vendor, "out_of_credits")
            wait = self.faults.over_rate(vendor, key)
            if wait is not None:
                return throttle(vendor, wait)
            # The request is received whole before the vendor works on it (the latency): a
            # client that goes away meanwhile (killed) has still asked, and pays.
            await request.read()
            fault = await self.faults.misbehave([])
            if fault is not None:
                # The generic 429 becomes the vendor's own signal (Hunter's 429 means no credits).
                return throttle(vendor, knobs.retry_after_s) if fault.status == 429 else fault
            return await handler(request, key)

        return gated

    def coverage(self, vendor: str) -> float:
        return self.faults.knobs.coverage.get(vendor, 0.5)

    # --- Hunter ---

    async def hunter_finder(self, request: web.Request, key: str) -> web.StreamResponse:
        q = request.query
        first, last = q.get("first_name"), q.get("last_name")
        if not (first and last):
            first, last = split_name(q.get("full_name"))
        if not (first and last) or not (q.get("domain") or q.get("company")):
            return hunter_error(400, "wrong_params", "You are missing a required parameter")
        self.stats.asked("hunter", first, last, q.get("domain") or q.get("company"))
        found = person(
            "hunter", self.coverage("hunter"), first, last, q.get("company"), q.get("domain")
        )
        status = HUNTER_FINDER.get(found.verdict or "")
        email = found.email if status else None
        if email:
            params = "&".join(f"{k}={v.lower()}" for k, v in sorted(q.items()) if k != "api_key")
            self.stats.charge_once("hunter", "search", key, params)
        data: dict[str, Any] = {
            "first_name": first,
            "last_name": last,
            "email": email,
            "score": 90 if email else None,
            "domain": found.domain,
            "accept_all": status == "accept_all",
            "position": None,
            "company": q.get("company"),
            "sources": [],
            "verification": {"date": "2026-01-01", "status": status} if email else None,
        }
        meta = {
            "params": {
                k: q.get(k) for k in ("first_name", "last_name", "full_name", "domain", "company")
            }
        }
        return web.json_response({"data": data, "meta": meta})

    async def hunter_verifier(self, request: web.Request, key: str) -> web.StreamResponse:
        email = request.query.get("email", "")
        if "@" not in email:
            return hunter_error(400, "invalid_email", "The supplied email is invalid")
        status = world.verdict(email)
        if status != "unknown":
            self.stats.charge_once("hunter", "verification", key, email.lower())
        data = {
            "status": status,
            "result": {"valid": "deliverable", "invalid": "undeliverable"}.get(status, "risky"),
            "score": {"valid": 100, "accept_all": 70, "unknown": 50}.get(status, 0),
            "email": email,
            "accept_all": status == "accept_all",
            "sources": [],
        }
        return web.json_response({"data": data, "meta": {"params": {"email": email}}})

    # --- People Data Labs ---

    def _pdl_item(self, params: dict[str, Any]) -> dict[str, Any]:
        first, last = one(params.get("first_name")), one(params.get("last_name"))
        if not (first and last):
            first, last = split_name(one(params.get("name")))
        company = one(params.get("company"))
        self.stats.asked("pdl", first, last, company)
        domain = company if company and "." in company else None
        found = person(
            "pdl", self.coverage("pdl"), first, last, None if domain else company, domain
        )
        if not found.known:
            return {
                "status": 404,
                "error": {
                    "type": "not_found",
                    "message": "No records were found matching your request",
                },
            }
        self.stats.charge("pdl", "match")
        email = found.email if found.verdict != "invalid" else None
        data = {
            "full_name": f"{first} {last}".lower(),
            "first_name": (first or "").lower(),
            "last_name": (last or "").lower(),
            "work_email": email,
            "emails": [{"address": email, "type": "current_professional"}] if email else [],
            "job_company_website": found.domain,
        }
        return {"status": 200, "likelihood": 8, "data": data}

    async def pdl_bulk(self, request: web.Request, key: str) -> web.StreamResponse:
        body = await read_json(request)
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= PDL_BULK_LIMIT:
            return pdl_error(400, "invalid_request_error", "requests must hold 1-100 objects")
        items = []
        for each in requests:
            item = self._pdl_item(each.get("params") or {})
            if "metadata" in each:
                item["metadata"] = each["metadata"]
            items.append(item)
        return web.json_response(items)

    async def pdl_enrich(self, request: web.Request, key: str) -> web.StreamResponse:
        item = self._pdl_item(dict(request.query))
        return web.json_response(item, status=item["status"])

    # --- Apollo ---

    def _apollo_match(self, details: dict[str, Any]) -> dict[str, Any] | None:
        first, last = details.get("first_name"), details.get("last_name")
        if not (first and last):
            first, last = split_name(details.get("name"))
        company = details.get("domain") or details.get("organization_name")
        self.stats.asked("apollo", first, last, company)
        found = person(
            "apollo",
            self.coverage("apollo"),
            first,
            last,
            details.get("organization_name"),
            details.get("domain"),
        )
        if not found.known:
            return None
        self.stats.charge("apollo", "match")
        status = APOLLO_STATUS.get(found.verdict or "", "unavailable")
        return {
            "id": world.ascii_slug(f"{first}{last}{found.domain}")[:24],
            "first_name": first,
            "last_name": last,
            "name": f"{first} {last}",
            "email": found.email if status != "unavailable" else None,
            "email_status": status,
            "organization": {
                "primary_domain": found.domain,
                "name": details.get("organization_name"),
            },
        }

    async def apollo_match(self, request: web.Request, key: str) -> web.StreamResponse:
        body = await read_json(request)
        details = {**dict(request.query), **(body if isinstance(body, dict) else {})}
        return web.json_response({"person": self._apollo_match(details)})

    async def apollo_bulk(self, request: web.Request, key: str) -> web.StreamResponse:
        body = await read_json(request)
        details = body.get("details") if isinstance(body, dict) else None
        if not isinstance(details, list) or not 1 <= len(details) <= APOLLO_BULK_LIMIT:
            return web.json_response(
                {"error_code": "INVALID_REQUEST", "error_message": "details: 1 to 10 people"},
                status=422,
            )
        matches = [self._apollo_match(d if isinstance(d, dict) else {}) for d in details]
        found = sum(m is not None for m in matches)
        return web.json_response(
            {
                "status": "success",
                "error_code": None,
                "error_message": None,
                "total_requested_enrichments": len(details),
                "unique_enriched_records": found,
                "missing_records": len(details) - found,
                "credits_consumed": found,
                "matches": matches,
            }
        )

    # --- Dropcontact ---

    def _dc_record(self, record: dict[str, Any]) -> dict[str, Any]:
        first, last = record.get("first_name"), record.get("last_name")
        if not (first and last):
            first, last = split_name(record.get("full_name"))
        self.stats.asked("dropcontact", first, last, record.get("website") or record.get("company"))
        found = person(
            "dropcontact",
            self.coverage("dropcontact"),
            first,
            last,
            record.get("company"),
            record.get("website"),
        )
        qualification = DROPCONTACT_QUALIFICATION.get(found.verdict or "")
        emails = [{"email": found.email, "qualification": qualification}] if qualification else []
        if qualification == "nominative@pro":
            self.stats.charge("dropcontact", "email")
        return {
            **record,
            "email": emails,
            "website": f"www.{found.domain}" if found.domain else record.get("website"),
        }

    async def dc_submit(self, request: web.Request, key: str) -> web.StreamResponse:
        body = await read_json(request)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return dc_error(400, "Missing data in JSON")
        if len(data) > DROPCONTACT_BATCH_LIMIT:
            return dc_error(400, "Too many records, you can only submit up to 250 records")
        request_id = secrets.token_hex(8)
        self.stats.batches_submitted["dropcontact"] += 1
        records = [self._dc_record(r if isinstance(r, dict) else {}) for r in data]
        self.batches[request_id] = Batch(records, self.faults.knobs.dropcontact_polls_until_ready)
        return web.json_response(
            {"credits_left": 10_000, "request_id": request_id, "error": False, "success": True}
        )

    async def dc_result(self, request: web.Request, key: str) -> web.StreamResponse:
        batch = self.batches.get(request.match_info["request_id"])
        if batch is None or batch.polls_left > 0:
            if batch is not None:
                batch.polls_left -= 1
            return web.json_response({"error": False, "reason": NOT_READY, "success": False})
        return web.json_response(
            {"data": batch.records, "error": False, "success": True, "credits_left": 10_000}
        )


def one(value: Any) -> str | None:
    """PDL takes a value or a list of values for a parameter."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


async def read_json(request: web.Request) -> Any:
    try:
        return msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return None


def api_key(vendor: str, request: web.Request) -> str | None:
    headers, query = request.headers, request.query
    if vendor == "hunter":
        bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return headers.get("X-API-KEY") or query.get("api_key") or bearer or None
    if vendor == "pdl":
        return headers.get("X-Api-Key") or query.get("api_key")
    if vendor == "apollo":
        return headers.get("X-Api-Key")
    return headers.get("X-Access-Token")


def hunter_error(status: int, error_id: str, details: str) -> web.Response:
    return web.json_response(
        {"errors": [{"id": error_id, "code": status, "details": details}]}, status=status
    )


def pdl_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"status": status, "error": {"type": kind, "message": message}}, status=status
    )


def dc_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": True, "reason": reason, "success": False}, status=status)


def refusal(vendor: str, why: str) -> web.Response:
    """Each vendor's answer to a bad key or spent credits, as its docs give it."""
    bad = why == "bad_key"
    if vendor == "hunter":
        if bad:
            return hunter_error(
                401, "authentication_failed", "No user found for the API key supplied"
            )
        return hunter_error(429, "too_many_requests", "You have reached your usage limit")
    if vendor == "pdl":
        if bad:
            return pdl_error(
                401, "authentication_error", "Request contained a missing or invalid key"
            )
        return pdl_error(402, "payment_required", "You have hit your account maximum")
    if vendor == "apollo":
        message = "Invalid access credentials." if bad else "Insufficient credits for this api_key"
        return web.json_response(
            {"error_code": "UNAUTHORIZED" if bad else "FORBIDDEN", "error_message": message},
            status=401 if bad else 403,
        )
    return dc_error(401, "Invalid token") if bad else dc_error(403, "Not enough credits")


def throttle(vendor: str, retry_after_s: float) -> web.Response:
    # Retry-After is whole seconds; never 0, or a client would come straight back.
    headers = {"Retry-After": f"{max(1, math.ceil(retry_after_s))}"}
    if vendor == "hunter":
        response = hunter_error(403, "restricted_rate_limit", "You have reached the rate limit")
    elif vendor == "pdl":
        response = pdl_error(
            429, "rate_limit_error", "An error occurred due to requests hitting the API too quick"
        )
    elif vendor == "apollo":
        response = web.json_response(
            {"error_code": "TOO_MANY_REQUESTS", "error_message": "Too many requests"}, status=429
        )
    else:
        response = dc_error(429, "Too Many Requests")
    response.headers.update(headers)
    return response
