"""Result leads shaped for output: JSON as stored, CSV rows, `fields` projections.

The same flat shape goes to the API, webhook batches and CSV files (API.md); a
destination's `fields` mapping (output name -> result field) selects and renames.

CSV is opened in spreadsheets, and lead fields are user or third-party text (a scraped
company can be `=HYPERLINK(...)`): every CSV cell and header that a spreadsheet would
read as a formula is neutralised as OWASP's "CSV Injection" page recommends, by a
leading single quote. CSV files and `?format=csv` both go through `encode_csv`; JSON,
NDJSON and webhooks keep the value as it is.
"""

from __future__ import annotations

import contextlib
import csv
import io
from operator import attrgetter
from pathlib import Path
from typing import Any

import aiofiles.os
import msgspec

from shared.messages import RESULT_FIELDS, ResultLead

decode_result = msgspec.json.Decoder(ResultLead).decode
_encode = msgspec.json.Encoder().encode
# OWASP's list (= + - @ tab CR), and their full-width forms, which spreadsheets with an
# East Asian input mode turn into the ASCII ones.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_FORMULA_STARTS = frozenset(FORMULA_STARTS)  # a cell's first character (`v[:1]`) in it


def field_map(fields: dict[str, str] | None) -> dict[str, str]:
    """Output name -> result-lead field; every field under its own name when absent."""
    return dict(fields) if fields else {name: name for name in RESULT_FIELDS}


def project(lead: ResultLead, fields: dict[str, str]) -> dict[str, Any]:
    return {out: getattr(lead, src) for out, src in fields.items()}


def encode_csv(leads: list[ResultLead], fields: dict[str, str], *, header: bool) -> bytes:
    # Cells are made in one comprehension per row and written by the csv module's C
    # writer: a function call per cell was most of the router's CPU per lead.
    rows: list[list[Any]] = [[neutralise_formula(name) for name in fields]] if header else []
    if tuple(fields.values()) == RESULT_FIELDS:
        values: Any = msgspec.structs.astuple
    else:
        values = attrgetter(*fields.values()) if len(fields) > 1 else _one(*fields.values())
    rows.extend(
        [
            ("'" + v if v[:1] in _FORMULA_STARTS else v)
            if v.__class__ is str
            else ("" if v is None else csv_cell(v))
            for v in values(lead)
        ]
        for lead in leads
    )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    text = buffer.getvalue()
    if "\r" in text:
        # The csv module quotes a cell holding the line terminator but not one holding a
        # lone CR, which readers take for a line break: such a row is written fully quoted.
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in rows:
            crs = any(isinstance(cell, str) and "\r" in cell for cell in row)
            (quoted if crs else writer).writerow(row)
        text = buffer.getvalue()
    return text.encode()


def _one(src: str) -> Any:
    """A one-field projection as a row of one value (attrgetter of one name gives the
    value itself)."""
    get = attrgetter(src)
    return lambda lead: (get(lead),)


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return _encode(value).decode() if value else ""
    return neutralise_formula(str(value))


def neutralise_formula(text: str) -> str:
    """`=1+2` -> `'=1+2`: a spreadsheet shows the text instead of evaluating it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def remove_exports(exports_dir: Path, exports: list[tuple[str, str]]) -> None:
    """Delete CSV exports given as (tenant, file name)."""

    for tenant, name in exports:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(exports_dir / tenant / name)
