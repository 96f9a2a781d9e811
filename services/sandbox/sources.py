"""The fake lead source: a Sales Navigator-style people search API.

`GET /sources/{name}/v1/search?keywords=&geo=&cursor=&page_size=` answers a page of people
for the query and an opaque cursor to the next page. Pages are deterministic for a query
(same people, same order, a stable total between 200 and 600), so a test can count what
the source served. Each API key is an account; the stats record every request with its
account, page and time, so a test can check that nobody called during a cooldown.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from services.sandbox import world
from services.sandbox.config import Knobs
from services.sandbox.faults import Faults, over_rate_answer

MAX_PAGE_SIZE = 100


class SourceLead(msgspec.Struct, kw_only=True):
    id: str
    full_name: str
    title: str
    company: str
    linkedin_url: str
    location: str


@dataclass
class SourceStats:
    # "<source>:<account key>" -> [{"at", "page"}]
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Query key -> searches started (first pages), for `source_shift_per_search`.
    searches: dict[str, int] = field(default_factory=dict)

    def record(self, source: str, account: str, page: int) -> None:
        self.requests.setdefault(f"{source}:{account}", []).append(
            {"at": time.time(), "page": page}
        )


def people(source: str, keywords: str, geo: str) -> tuple[str, int]:
    key = f"{source}|{keywords.strip().lower()}|{geo.strip().lower()}"
    return key, 200 + int(world.fraction("total", key) * 400)


def person(key: str, index: int, geo: str) -> SourceLead:
    def pick(options: tuple[str, ...], what: str) -> str:
        return options[int(world.fraction(what, key, str(index)) * len(options))]

    first, last = pick(world.FIRST, "first"), pick(world.LAST, "last")
    person_id = f"{world.ascii_slug(key)[:10]}-{index:05d}"
    return SourceLead(
        id=person_id,
        full_name=f"{first} {last}",
        title=pick(world.TITLES, "title"),
        company=pick(world.COMPANIES, "company"),
        linkedin_url=f"https://www.linkedin.com/in/{world.ascii_slug(first + last)}-{person_id}",
        location=geo or "Remote",
    )


def encode_cursor(offset: int, start: int = 0) -> str:
    """The position in the search's list and where the search started in it (a moved list)."""
    text = f"o:{offset}" if start == 0 else f"o:{offset}:{start}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, int] | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("o:"):
            return None
        offset, _, start = text.removeprefix("o:").partition(":")
        return int(offset), int(start or 0)
    except (ValueError, UnicodeDecodeError):
        return None


class FakeSources:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.stats = SourceStats()

    @property
    def knobs(self) -> Knobs:
        return self.faults.knobs

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/sources/{source}/v1/search", self.search)]

    def start(self, key: str) -> tuple[int, int]:
        """A new search of `key`: where in the list it starts (the list moves per search)."""
        searches = self.stats.searches.get(key, 0)
        self.stats.searches[key] = searches + 1
        start = searches * self.knobs.source_shift_per_search
        return start, start

    async def search(self, request: web.Request) -> web.StreamResponse:
        source = request.match_info["source"]
        scheme, _, account = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not account:
            raise web.HTTPUnauthorized(text="missing API key")
        query = request.query
        page_size = min(MAX_PAGE_SIZE, max(1, int(query.get("page_size", "25") or 25)))
        key, total = people(source, query.get("keywords", ""), query.get("geo", ""))
        position = decode_cursor(query["cursor"]) if query.get("cursor") else self.start(key)
        if position is None:
            return web.json_response({"error": "bad cursor"}, status=400)
        offset, start = position
        page = (offset - start) // page_size + 1
        self.stats.record(source, account, page)
        if (wait := self.faults.over_rate(source, account)) is not None:
            return over_rate_answer(wait)
        if (fault := self.faults.source_fault(source, page)) is not None:
            return fault
        if (fault := await self.faults.misbehave([])) is not None:
            return fault
        end = total + start  # a moved list has as many people, further down
        results = [
            person(key, i, query.get("geo", ""))
            for i in range(offset, min(end, offset + page_size))
        ]
        next_offset = offset + len(results)
        body = {
            "results": results,
            "next_cursor": encode_cursor(next_offset, start) if next_offset < end else None,
            "total": total,
        }
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")
