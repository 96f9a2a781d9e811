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


def field_map(fields: dict[str, str] | None) -> dict[str, str]:
    """Output name -> result-lead field; every field under its own name when absent."""
    return dict(fields) if fields else {name: name for name in RESULT_FIELDS}


def project(lead: ResultLead, fields: dict[str, str]) -> dict[str, Any]:
    return {out: getattr(lead, src) for out, src in fields.items()}


def encode_csv(leads: list[ResultLead], fields: dict[str, str], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # The csv module quotes a cell holding the line terminator but not one holding a lone
    # CR, which readers take for a line break: such a row is written fully quoted.
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    rows = [[neutralise_formula(name) for name in fields]] if header else []
    rows.extend([csv_cell(getattr(lead, src)) for src in fields.values()] for lead in leads)
    for row in rows:
        (quoted if any("\r" in cell for cell in row) else writer).writerow(row)
    return buffer.getvalue().encode()


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
