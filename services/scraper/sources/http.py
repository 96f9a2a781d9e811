"""HTTP adapter for a Sales Navigator-style people search API.

`GET {url}/v1/search?<query>&cursor=&page_size=` with the account's key as a bearer token,
answering `{"results": [...], "next_cursor": ...}`. Each result keeps the source's own id
as the lead id, so a page fetched twice (after a crash) gives the same leads.
"""

from __future__ import annotations

import aiohttp
import msgspec

from services.scraper.config import SourceSettings
from services.scraper.sources.base import (
    MAX_INLINE_WAIT_S,
    Page,
    SourceRateLimited,
    SourceRejected,
    SourceResult,
    SourceUnavailable,
    fit_scraped_lead,
)
from shared.limits import Limits
from shared.logging import get_logger
from shared.ratelimit import Cooldowns, Gate, retry_after_s

log = get_logger(__name__)

RETRYABLE_STATUS = frozenset({401, 408, 425})
# 429, and 403 that search APIs answer when they soft-block an account for a while.
COOL_DOWN_STATUS = frozenset({403, 429})


class SearchReply(msgspec.Struct, kw_only=True):
    # A result keeps the source's id as the lead id; fields a lead has not are skipped.
    results: list[SourceResult]
    next_cursor: str | None = None


_decode_reply = msgspec.json.Decoder(SearchReply).decode


class SearchApiSource:
    def __init__(
        self,
        settings: SourceSettings,
        session: aiohttp.ClientSession,
        control: Cooldowns,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.name = settings.name
        self.accounts = tuple(f"acct{i}" for i in range(len(settings.keys)))
        self._keys = dict(zip(self.accounts, settings.keys, strict=True))
        self._gates = {
            account: Gate(
                settings,
                f"source:{self.name}:{account}",
                control,
                max_wait_s=MAX_INLINE_WAIT_S,
                limits=limits,
            )
            for account in self.accounts
        }
        self._url = f"{settings.url}/v1/search"
        self._page_size = settings.page_size
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._session = session

    def gate(self, account: str) -> Gate:
        return self._gates[account]

    async def fetch(
        self, account: str, query: dict[str, str], cursor: str | None, job_id: str
    ) -> Page:
        params = {**query, "page_size": str(self._page_size)}
        if cursor:
            params["cursor"] = cursor
        headers = {"Authorization": f"Bearer {self._keys[account]}", "X-Leadflow-Job": job_id}
        try:
            async with self._session.get(
                self._url, params=params, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as e:
            raise SourceUnavailable(f"{self.name}: timed out after {self._timeout.total}s") from e
        except aiohttp.ClientError as e:
            raise SourceUnavailable(f"{self.name}: {type(e).__name__}: {e}") from e
        return self._page(status, body, retry_after)

    def _page(self, status: int, body: bytes, retry_after: str | None) -> Page:
        detail = body[:200].decode(errors="replace")
        if status in COOL_DOWN_STATUS:
            raise SourceRateLimited(
                f"{self.name}: HTTP {status} {detail}", retry_after_s=retry_after_s(retry_after)
            )
        if status >= 500 or status in RETRYABLE_STATUS:
            raise SourceUnavailable(f"{self.name}: HTTP {status} {detail}")
        if status >= 400:
            raise SourceRejected(f"{self.name}: HTTP {status} {detail}")
        try:
            reply = _decode_reply(body)
        except msgspec.DecodeError as e:
            raise SourceUnavailable(f"{self.name}: malformed page ({e})") from e
        leads = []
        fitted: dict[str, int] = {}
        for result in reply.results:
            lead, changed = fit_scraped_lead(result)
            leads.append(lead)
            for name in changed:
                fitted[name] = fitted.get(name, 0) + 1
        if fitted:
            # Once a page, not once a lead: a source that sends long fields sends many.
            log.warning("scrape.fields_over_limit", source=self.name, leads_by_field=fitted)
        return Page(leads=leads, next_cursor=reply.next_cursor)
