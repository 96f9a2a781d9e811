"""Turn a request body into a job, or into per-field errors.

Decoding (types, unknown fields, enums, bounds) is msgspec's; its single error is mapped
to the field it names. The checks msgspec cannot express are collected here, all of them
at once, so a client fixes every field in one round trip.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.schemas import EnrichJobRequest, LeadIn, ScrapeJobRequest
from shared.jobs import CsvDestination, Destination, WebhookDestination
from shared.messages import RESULT_FIELDS, Lead
from shared.netguard import NetGuard, TargetRefused

LINKEDIN_URL = re.compile(
    r"^https?://([a-z]{2,3}\.)?linkedin\.com/(in|pub|sales/lead|sales/people)/[^/?#\s]+/?"
    r"([?#]\S*)?$",
    re.IGNORECASE,
)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[a-z]{2,63}$", re.IGNORECASE)
DOMAIN = re.compile(
    r"^(https?://)?(www\.)?(?=.{4,253})([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
    r"(/\S*)?$",
    re.IGNORECASE,
)
# Matched with `fullmatch`: `$` would also match before a final line break ("report\n").
CSV_NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
# Device names Windows reserves whatever the extension: an export copied to (or served
# from) a Windows share must stay openable.
WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10))}
)
KNOWN_FIELDS = frozenset(RESULT_FIELDS)
R = TypeVar("R", EnrichJobRequest, ScrapeJobRequest)
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    EnrichJobRequest: msgspec.json.Decoder(EnrichJobRequest),
    ScrapeJobRequest: msgspec.json.Decoder(ScrapeJobRequest),
}


def decode_request(body: bytes, kind: type[R]) -> R:
    if not body.strip():
        raise Problem(400, "the request body is empty; send a JSON object")
    try:
        decoded: R = _decoders[kind].decode(body)
        return decoded
    except msgspec.ValidationError as e:
        raise invalid([field_error_from(str(e))]) from None
    except msgspec.DecodeError as e:
        raise Problem(400, f"the request body is not valid JSON: {e}") from None


def field_error_from(message: str) -> FieldError:
    """msgspec's "Expected `int`, got `str` - at `$.leads[0].x`" -> field `leads[0].x`."""
    text, _, path = message.partition(" - at `$")
    path = path.rstrip("`").lstrip(".")
    named = re.search(r"(?:required|unknown) field `([^`]+)`", text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return FieldError(field=path or "body", message=text)


async def validate_enrich(request: EnrichJobRequest, max_leads: int, guard: NetGuard) -> list[Lead]:
    """The job's leads, with ids (empty when it takes them from the job it depends on)."""
    leads_in = request.leads
    if not leads_in and request.depends_on is None:
        raise invalid([FieldError("leads", "at least one lead is required (or depends_on)")])
    leads_in = leads_in or []
    if len(leads_in) > max_leads:
        raise invalid(
            [FieldError("leads", f"{len(leads_in)} leads; a job takes at most {max_leads}")], 413
        )
    refuse_path_like_csv_names(request.destinations)
    errors = [*lead_errors(leads_in), *await destination_errors(request.destinations, guard)]
    if errors:
        raise invalid(errors)
    return assign_ids(leads_in)


async def validate_scrape(
    request: ScrapeJobRequest, sources: tuple[str, ...], max_leads: int, guard: NetGuard
) -> None:
    refuse_path_like_csv_names(request.destinations)
    errors = await destination_errors(request.destinations, guard)
    if request.source not in sources:
        errors.append(FieldError("source", f"unknown source; configured: {', '.join(sources)}"))
    if not any(value.strip() for value in request.query.values()):
        errors.append(FieldError("query", "give at least one search term (e.g. keywords)"))
    if request.max_leads > max_leads:
        errors.append(FieldError("max_leads", f"a job takes at most {max_leads} leads"))
    if errors:
        raise invalid(errors)


def lead_errors(leads: list[LeadIn]) -> Iterable[FieldError]:
    first_seen: dict[str, int] = {}
    for i, lead in enumerate(leads):
        at = f"leads[{i}]"
        if not (
            lead.full_name
            or (lead.first_name and lead.last_name)
            or lead.linkedin_url
            or lead.email
        ):
            yield FieldError(
                at,
                "a lead needs a full_name (or first_name and last_name), "
                "a linkedin_url or an email",
            )
        if lead.linkedin_url is not None and not LINKEDIN_URL.match(lead.linkedin_url):
            yield FieldError(
                f"{at}.linkedin_url",
                "not a LinkedIn profile URL (https://www.linkedin.com/in/<handle>)",
            )
        if lead.email is not None and not EMAIL.match(lead.email):
            yield FieldError(f"{at}.email", "not an email address")
        if lead.company_domain is not None and not DOMAIN.match(lead.company_domain):
            yield FieldError(f"{at}.company_domain", "not a domain name (example.com)")
        if lead.id is not None:
            if lead.id in first_seen:
                yield FieldError(
                    f"{at}.id",
                    f"duplicate id {lead.id!r}, also used by leads[{first_seen[lead.id]}]",
                )
            first_seen.setdefault(lead.id, i)


def refuse_path_like_csv_names(destinations: list[Destination]) -> None:
    errors = [
        FieldError(
            f"destinations[{i}].name",
            "must be a plain file name, not a path, without control characters",
        )
        for i, dest in enumerate(destinations)
        if isinstance(dest, CsvDestination) and is_path_like(dest.name)
    ]
    if errors:
        raise invalid(errors, 400)


def is_path_like(name: str) -> bool:
    """A separator, a parent or hidden name, a drive or stream (`:`), or any control,
    format or unassigned character (a line break in a file name breaks every tool)."""
    return (
        "/" in name
        or "\\" in name
        or name.startswith(".")
        or ".." in name
        or ":" in name
        or any(unicodedata.category(char).startswith("C") for char in name)
    )


def csv_name_error(name: str) -> str | None:
    """Why a (not path-like) CSV name is not a plain, portable file name."""
    if not CSV_NAME_CHARS.fullmatch(name):
        return "use letters, digits, '.', '-', '_' and spaces, starting with a letter or digit"
    if name.endswith((" ", ".")):
        return "must not end with a space or a dot"
    if name.split(".", 1)[0].strip().lower() in WINDOWS_DEVICE_NAMES:
        return "is a device name on Windows (CON, NUL, COM1...); choose another"
    return None


async def destination_errors(destinations: list[Destination], guard: NetGuard) -> list[FieldError]:
    errors: list[FieldError] = []
    csv_names: dict[str, int] = {}
    for i, dest in enumerate(destinations):
        at = f"destinations[{i}]"
        for out, source in (dest.fields or {}).items():
            if source not in KNOWN_FIELDS:
                errors.append(
                    FieldError(
                        f"{at}.fields.{out}",
                        f"unknown result field {source!r}; known: {', '.join(RESULT_FIELDS)}",
                    )
                )
            if not out.strip():
                errors.append(FieldError(f"{at}.fields", "output names must not be empty"))
        if isinstance(dest, WebhookDestination):
            try:
                await guard.check_url(dest.url)
            except TargetRefused as e:
                errors.append(FieldError(f"{at}.url", str(e)))
        elif isinstance(dest, CsvDestination):
            if (name_error := csv_name_error(dest.name)) is not None:
                errors.append(FieldError(f"{at}.name", name_error))
            key = dest.file_name.lower()
            if key in csv_names:
                errors.append(
                    FieldError(f"{at}.name", f"same file as destinations[{csv_names[key]}]")
                )
            csv_names.setdefault(key, i)
    return errors


def assign_ids(leads: list[LeadIn]) -> list[Lead]:
    """Keep the client's ids; give the others `lead-<n>` (n = position, 1-based), unique."""
    taken = {lead.id for lead in leads if lead.id is not None}
    out = []
    for n, lead in enumerate(leads, start=1):
        lead_id = lead.id
        if lead_id is None:
            lead_id = candidate = f"lead-{n}"
            suffix = 1
            while lead_id in taken:
                suffix += 1
                lead_id = f"{candidate}-{suffix}"
            taken.add(lead_id)
        fields = {
            k: (v.strip() or None) if isinstance(v, str) else v
            for k, v in msgspec.structs.asdict(lead).items()
        }
        fields["id"] = lead_id
        out.append(msgspec.convert(fields, Lead))
    return out
