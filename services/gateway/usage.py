"""`GET /v1/usage?from=&to=`: a tenant's metered usage per UTC day and in total.

Provider credits come from the credit ledger (shared/credits.py): `credits` by provider,
`credits_detail` by provider and credit kind, of the calls settled in the period (a call
counts on the UTC day it was made).

The days from `from` to `to`, both included: `from` after `to` is an empty period (no
days, zero totals). The answer holds only the days with usage, so a long period costs
no more than the rows it finds.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import msgspec
from aiohttp import web

from services.gateway.keys import STORE, tenant_of
from services.gateway.params import USAGE_FROM, USAGE_TO
from services.gateway.routes import json_response
from shared.credits import ProviderRecord, credits_by_day, provider_records
from shared.dbapi import Connection

PROVIDER_PREFIX = "provider_calls:"
CREDITS_PREFIX = "credits:"


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    pages_scraped: int = 0
    leads_scraped: int = 0
    leads_enriched: int = 0
    provider_calls: dict[str, int] = msgspec.field(default_factory=dict)
    credits: dict[str, int] = msgspec.field(default_factory=dict)
    credits_detail: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


class DayUsage(Usage, frozen=True, kw_only=True):
    day: str


class ProviderUsage(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's paid lookups in the period: leads asked, leads it found something
    for, emails found, credits; the hit rate (found / leads) and the credits per email."""

    leads: int
    found: int
    emails: int
    credits: int
    hit_rate: float | None
    credits_per_email: float | None


class UsageReport(Usage, frozen=True, kw_only=True):
    tenant: str
    from_: str = msgspec.field(name="from")
    to: str
    days: list[DayUsage]
    providers: dict[str, ProviderUsage] = msgspec.field(default_factory=dict)


async def usage(request: web.Request) -> web.Response:
    today = datetime.now(UTC).date()
    first = USAGE_FROM.read(request, today)
    last = USAGE_TO.read(request, today)
    tenant = tenant_of(request)
    rows, credit_rows, records = await request.app[STORE].run(
        lambda conn: (
            usage_rows(conn, tenant, first, last),
            credits_by_day(conn, tenant, first, last),
            provider_records(conn, tenant, first, last),
        )
    )
    per_day: dict[str, Counter[str]] = {}
    for day, metric, count in rows:
        per_day.setdefault(day, Counter())[metric] += count
    for day, provider, kind, credits in credit_rows:
        per_day.setdefault(day, Counter())[f"{CREDITS_PREFIX}{provider}:{kind}"] += credits
    days = [
        msgspec.convert({**summed(counts), "day": day}, DayUsage)
        for day, counts in sorted(per_day.items())
    ]
    total = summed(sum(per_day.values(), Counter()))
    report = {
        **total,
        "tenant": tenant,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "days": days,
        "providers": {name: provider_usage(record) for name, record in sorted(records.items())},
    }
    return json_response(msgspec.convert(report, UsageReport))


def summed(counts: Counter[str]) -> dict[str, object]:
    return {
        "pages_scraped": counts["pages_scraped"],
        "leads_scraped": counts["leads_scraped"],
        "leads_enriched": counts["leads_enriched"],
        "provider_calls": {
            metric.removeprefix(PROVIDER_PREFIX): n
            for metric, n in sorted(counts.items())
            if metric.startswith(PROVIDER_PREFIX)
        },
        **credit_sums(counts),
    }


def provider_usage(record: ProviderRecord) -> ProviderUsage:
    return ProviderUsage(
        leads=record.leads,
        found=record.found,
        emails=record.emails,
        credits=record.credits,
        hit_rate=None if record.hit_rate is None else round(record.hit_rate, 4),
        credits_per_email=round(record.credits / record.emails, 4) if record.emails else None,
    )


def credit_sums(counts: Counter[str]) -> dict[str, object]:
    detail: dict[str, dict[str, int]] = {}
    for metric, n in sorted(counts.items()):
        if metric.startswith(CREDITS_PREFIX) and n:
            provider, _, kind = metric.removeprefix(CREDITS_PREFIX).rpartition(":")
            detail.setdefault(provider, {})[kind] = n
    return {
        "credits": {provider: sum(kinds.values()) for provider, kinds in detail.items()},
        "credits_detail": detail,
    }


def usage_rows(
    conn: Connection, tenant: str, first: date, last: date
) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        "SELECT day, metric, count FROM usage WHERE tenant = ? AND day BETWEEN ? AND ?",
        (tenant, first.isoformat(), last.isoformat()),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]
