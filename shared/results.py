"""Result leads shaped for output: JSON as stored, CSV rows, `fields` projections.

The same flat shape goes to the API, webhook batches and CSV files (API.md); a
destination's `fields` mapping (output name -> result field) selects and renames.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import msgspec

from shared.messages import RESULT_FIELDS, ResultLead

decode_result = msgspec.json.Decoder(ResultLead).decode
_encode = msgspec.json.Encoder().encode


def field_map(fields: dict[str, str] | None) -> dict[str, str]:
    """Output name -> result-lead field; every field under its own name when absent."""
    return dict(fields) if fields else {name: name for name in RESULT_FIELDS}


def project(lead: ResultLead, fields: dict[str, str]) -> dict[str, Any]:
    return {out: getattr(lead, src) for out, src in fields.items()}


def encode_csv(leads: list[ResultLead], fields: dict[str, str], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(fields.keys())
    for lead in leads:
        writer.writerow(csv_cell(getattr(lead, src)) for src in fields.values())
    return buffer.getvalue().encode()


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return _encode(value).decode() if value else ""
    return str(value)


async def remove_exports(exports_dir: Path, exports: list[tuple[str, str]]) -> None:
    """Delete CSV exports given as (tenant, file name)."""

    def unlink() -> None:
        for tenant, name in exports:
            (exports_dir / tenant / name).unlink(missing_ok=True)

    await asyncio.to_thread(unlink)
