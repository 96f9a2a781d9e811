"""Turn a request body into a job, or into per-field errors.

Decoding (types, unknown fields, enums, bounds) is msgspec's, for every route that takes
a JSON body (`decode_request`); its single error is mapped to the field it names. The
checks msgspec cannot express are collected here, all of them at once, so a client fixes
every field in one round trip.

`document_rules` states the same checks in /openapi.json, from the same patterns: every
pattern here is written so that JSON Schema (ECMA-262) and Python read it alike — no
flags (letters are spelled `[Aa]`), and `(?!.*\n)` where Python's `$` would also match
before a final line break. Three rules are beyond JSON Schema and only described there:
lead ids unique within a job, CSV names unique (ignoring case) within a job, and webhook
hosts that resolve to an address webhooks may reach (shared/netguard.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast

import msgspec

from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.schemas import EnrichJobRequest, LeadIn, ScrapeJobRequest
from shared.jobs import CsvDestination, Destination, WebhookDestination
from shared.messages import RESULT_FIELDS, Lead
from shared.netguard import NetGuard, TargetRefused


def caseless(word: str) -> str:
    """`word` as a pattern matching it in any case, without a flag: "in" -> "[Ii][Nn]"."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


ONE_LINE = r"(?!.*\n)"
# White space as Python's `\s` and JSON Schema's (ECMA-262) `\s` together: they differ
# (\x1c-\x1f and \x85 are Python's only, \ufeff ECMA's), so the patterns spell it out.
WHITE_SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
VISIBLE = f"[^{WHITE_SPACE}]"
HTTP = caseless("http") + "[Ss]?://"
LINKEDIN_URL_PATTERN = (
    rf"^{ONE_LINE}{HTTP}([A-Za-z]{{2,3}}\.)?{caseless('linkedin.com')}/"
    rf"({'|'.join(caseless(p) for p in ('in', 'pub', 'sales/lead', 'sales/people'))})"
    rf"/[^/?#{WHITE_SPACE}]+/?([?#]{VISIBLE}*)?$"
)
EMAIL_PATTERN = rf"^{ONE_LINE}[^@{WHITE_SPACE}]{{1,64}}@[^@{WHITE_SPACE}]+\.[A-Za-z]{{2,63}}$"
DOMAIN_PATTERN = (
    rf"^{ONE_LINE}({HTTP})?({caseless('www')}\.)?(?=.{{4,253}})"
    r"([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    rf"(/{VISIBLE}*)?$"
)
LINKEDIN_URL = re.compile(LINKEDIN_URL_PATTERN)
EMAIL = re.compile(EMAIL_PATTERN)
DOMAIN = re.compile(DOMAIN_PATTERN)
# Matched with `fullmatch`: `$` would also match before a final line break ("report\n").
CSV_NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
# Device names Windows reserves whatever the extension: an export copied to (or served
# from) a Windows share must stay openable.
WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10))}
)
# Every check of a CSV name (`is_path_like`, `csv_name_error`) as one pattern, for the
# document: plain characters, no "..", no device name, no space or dot at the end.
CSV_NAME_PATTERN = (
    rf"^{ONE_LINE}"
    rf"(?!(?:{'|'.join(caseless(n) for n in sorted(WINDOWS_DEVICE_NAMES))}) *(?:\.|$))"
    r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._ -]*(?<![ .])$"
)
# A search term, a field map's output name: something besides white space.
NOT_BLANK = re.compile(VISIBLE)
KNOWN_FIELDS = frozenset(RESULT_FIELDS)
R = TypeVar("R")
FLOAT_GIVEN = "got `float`"  # in msgspec's error when a number has a fraction part
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_request(body: bytes, kind: type[R]) -> R:
    """A request body as `kind` (a msgspec type): 400 when it is not JSON, 422 naming the
    field when it is not a `kind`."""
    if not body.strip():
        raise Problem(400, "the request body is empty; send a JSON object")
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        try:
            return cast(R, decoder.decode(body))
        except msgspec.ValidationError as e:
            if FLOAT_GIVEN not in str(e):
                raise
            # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says too).
            return msgspec.convert(integral_floats_as_ints(msgspec.json.decode(body)), kind)
    except msgspec.ValidationError as e:
        raise invalid([field_error_from(str(e))]) from None
    except msgspec.DecodeError as e:
        raise Problem(400, f"the request body is not valid JSON: {e}") from None


def integral_floats_as_ints(value: Any) -> Any:
    """`value` (decoded JSON) with every float that is a whole number made an int; without
    recursion, whatever the nesting."""
    root = [value]
    stack: list[list[Any] | dict[str, Any]] = [root]
    while stack:
        node = stack.pop()
        keys = range(len(node)) if isinstance(node, list) else list(node)
        for key in keys:
            item = node[key]  # type: ignore[index]
            if isinstance(item, float) and item.is_integer():
                node[key] = int(item)  # type: ignore[index]
            elif isinstance(item, list | dict):
                stack.append(item)
    return root[0]


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
    if not any(NOT_BLANK.search(value) for value in request.query.values()):
        errors.append(FieldError("query", "give at least one search term (e.g. keywords)"))
    if request.max_leads > max_leads:
        errors.append(FieldError("max_leads", f"a job takes at most {max_leads} leads"))
    if errors:
        raise invalid(errors)


def lead_errors(leads: list[LeadIn]) -> Iterable[FieldError]:
    first_seen: dict[str, int] = {}
    for i, lead in enumerate(leads):
        at = f"leads[{i}]"
        for field, message in lead_problems(lead):
            yield FieldError(f"{at}.{field}" if field else at, message)
        if lead.id is not None:
            if lead.id in first_seen:
                yield FieldError(
                    f"{at}.id",
                    f"duplicate id {lead.id!r}, also used by leads[{first_seen[lead.id]}]",
                )
            first_seen.setdefault(lead.id, i)


def lead_problems(lead: LeadIn) -> Iterable[tuple[str, str]]:
    """What is wrong with one lead on its own, as (field, message); field "" is the lead.
    Ids unique within a job is the caller's check (a list here, a spool file in upload.py)."""
    if not (
        lead.full_name or (lead.first_name and lead.last_name) or lead.linkedin_url or lead.email
    ):
        yield (
            "",
            "a lead needs a full_name (or first_name and last_name), a linkedin_url or an email",
        )
    if lead.linkedin_url is not None and not LINKEDIN_URL.match(lead.linkedin_url):
        yield (
            "linkedin_url",
            "not a LinkedIn profile URL (https://www.linkedin.com/in/<handle>)",
        )
    if lead.email is not None and not EMAIL.match(lead.email):
        yield "email", "not an email address"
    if lead.company_domain is not None and not DOMAIN.match(lead.company_domain):
        yield "company_domain", "not a domain name (example.com)"


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
            if not NOT_BLANK.search(out):
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
            lead_id = next(id_ for id_ in id_candidates(n) if id_ not in taken)
            taken.add(lead_id)
        out.append(to_lead(lead, lead_id))
    return out


def id_candidates(n: int) -> Iterator[str]:
    """The ids a lead without one may get, in order of preference: `lead-<n>`, then
    `lead-<n>-2`, `lead-<n>-3`... (n is unique, so only the client's ids can be in the way)."""
    yield f"lead-{n}"
    suffix = 1
    while True:
        suffix += 1
        yield f"lead-{n}-{suffix}"


def to_lead(lead: LeadIn, lead_id: str) -> Lead:
    """A validated lead with its id, blank values dropped."""
    fields = {
        k: (v.strip() or None) if isinstance(v, str) else v
        for k, v in msgspec.structs.asdict(lead).items()
    }
    fields["id"] = lead_id
    return msgspec.convert(fields, Lead)


def document_rules(schemas: dict[str, Any], sources: tuple[str, ...], max_leads: int) -> None:
    """State the checks above in the request schemas of /openapi.json (`schemas`: the
    document's components, generated from the types)."""
    scrape = schemas["ScrapeJobRequest"]
    scrape["properties"]["source"] = {"enum": list(sources), "description": "A configured source."}
    scrape["properties"]["max_leads"]["maximum"] = max_leads
    query = scrape["properties"]["query"]
    query["not"] = {"additionalProperties": {"not": {"pattern": NOT_BLANK.pattern}}}
    query["description"] = "At least one term that is not blank."
    leads = schemas["EnrichJobRequest"]["properties"]["leads"]
    for option in leads["anyOf"]:
        if option.get("type") == "array":
            option["maxItems"] = max_leads
            option["description"] = "Lead ids (given or not) are unique within a job."
    lead = schemas["LeadIn"]
    for name, pattern in (
        ("linkedin_url", LINKEDIN_URL_PATTERN),
        ("email", EMAIL_PATTERN),
        ("company_domain", DOMAIN_PATTERN),
    ):
        for option in lead["properties"][name]["anyOf"]:
            if option.get("type") == "string":
                option["pattern"] = pattern
    given = {"type": "string", "minLength": 1}
    lead["anyOf"] = [
        {"required": ["full_name"], "properties": {"full_name": given}},
        {
            "required": ["first_name", "last_name"],
            "properties": {"first_name": given, "last_name": given},
        },
        {"required": ["linkedin_url"], "properties": {"linkedin_url": given}},
        {"required": ["email"], "properties": {"email": given}},
    ]
    lead["description"] = (
        "A lead needs a full_name (or first_name and last_name), a linkedin_url or an email."
    )
    name = schemas["CsvDestination"]["properties"]["name"]
    name["pattern"] = CSV_NAME_PATTERN
    name["description"] += " Unique within the job, ignoring case."
    url = schemas["WebhookDestination"]["properties"]["url"]
    # The scheme and a host without credentials; the rest of the rule is prose.
    url["pattern"] = f"^{HTTP}[^/?#@{WHITE_SPACE}]+([/?#]|$)"
    url["description"] = (
        "An http(s) URL without credentials whose host resolves to an address webhooks "
        "may reach (public, or in LEADFLOW_WEBHOOK_ALLOW_NETS)."
    )
    for destination in ("WebhookDestination", "CsvDestination", "DashboardDestination"):
        for option in schemas[destination]["properties"]["fields"]["anyOf"]:
            if option.get("type") == "object":
                option["additionalProperties"] = {"enum": list(RESULT_FIELDS)}
                option["propertyNames"] = {"pattern": NOT_BLANK.pattern}
