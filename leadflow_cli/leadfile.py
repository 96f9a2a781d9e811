"""Reading lead files (CSV, JSON, NDJSON) into the lead objects the API takes.

Files come from spreadsheets and CRM exports, so column names vary ("Full Name",
"LinkedIn Profile URL", "E-mail"...): a header is matched by its letters and digits
only, lower-cased, against the aliases of each API field (shared/leadcolumns.py, which
the gateway reads uploaded CSV files with too). Unknown columns are reported,
not sent (the API refuses unknown fields). Each lead remembers where it came from
(`line 7`, `item 3`), so an error the API reports for `leads[5]` can name the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadflow_cli.errors import UsageError
from shared.leadcolumns import LEAD_FIELDS as LEAD_FIELDS  # the fields a file may fill
from shared.leadcolumns import delimiter_of, field_for


@dataclass
class LeadFile:
    leads: list[dict[str, str]] = field(default_factory=list)
    # Where each lead is in the file ("line 7", "item 3"), index for index.
    origins: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    skipped_empty: int = 0
    notes: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        messages = list(self.notes)
        if self.ignored_columns:
            names = ", ".join(repr(c) for c in self.ignored_columns)
            messages.append(f"ignoring columns that are not lead fields: {names}")
        if self.skipped_empty:
            messages.append(f"skipping {self.skipped_empty} row(s) with no lead field filled in")
        return messages


@dataclass
class Upload:
    """A CSV or NDJSON file to send as it is: its media type (charset included) and what
    the CLI noticed reading its head (the gateway reads every line)."""

    media_type: str
    notes: list[str] = field(default_factory=list)


UPLOAD_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
HEAD_BYTES = 64 * 1024
SCAN_BYTES = 1024**2


def upload_of(path: Path) -> Upload | None:
    """How to upload `path` as it is; None for a JSON file (sent as a JSON body)."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    charset, note = charset_of(path, head)
    text = head.decode(charset, errors="ignore").lstrip("\ufeff")
    kind = file_kind(path, text)
    if kind not in UPLOAD_TYPES:
        return None
    if not text.strip():
        raise UsageError(f"{path}: no leads in the file")
    upload = Upload(f"{UPLOAD_TYPES[kind]}; charset={charset}", [note] if note else [])
    if kind == "csv":
        header = text.split("\n", 1)[0]
        try:
            row = next(csv.reader([header], delimiter=delimiter_of(header)))
            columns = map_columns(row)
        except (csv.Error, UsageError) as e:
            raise UsageError(f"{path}: {e}") from None
        upload.notes += columns.notes
        if columns.ignored:
            names = ", ".join(repr(c) for c in columns.ignored)
            upload.notes.append(f"ignoring columns that are not lead fields: {names}")
    return upload


def charset_of(path: Path, head: bytes) -> tuple[str, str | None]:
    """The file's charset, read through once without holding it, and a note when it is
    not UTF-8 (as `decode` decides it for a whole file)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", None
    for charset in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(charset)()
        try:
            with path.open("rb") as f:
                while block := f.read(SCAN_BYTES):
                    decoder.decode(block)
            decoder.decode(b"", True)
        except UnicodeDecodeError:
            continue
        return (
            charset,
            None if charset == "utf-8" else f"the file is not UTF-8; sending it as {charset}",
        )
    return "latin-1", "the file is not UTF-8; sending it as latin-1"


def read_lead_file(path: Path) -> LeadFile:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    text, note = decode(raw)
    kind = file_kind(path, text)
    try:
        result = {"csv": read_csv, "json": read_json, "ndjson": read_ndjson}[kind](text)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None
    if note:
        result.notes.insert(0, note)
    if not result.leads:
        raise UsageError(f"{path}: no leads in the file")
    return result


def decode(raw: bytes) -> tuple[str, str | None]:
    """Text of the file and a note when it was not UTF-8; a BOM is dropped."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16"), None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        # Spreadsheet exports on Windows are often Windows-1252; latin-1 decodes anything.
        for encoding in ("cp1252", "latin-1"):
            try:
                return raw.decode(encoding), f"the file is not UTF-8; read it as {encoding}"
            except UnicodeDecodeError:
                continue
    raise AssertionError("latin-1 decodes every byte")


def file_kind(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix == ".json":
        return "json"
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    start = text.lstrip()[:1]
    if start == "[":
        return "json"
    if start == "{":
        first_line = text.lstrip().split("\n", 1)[0]
        return "ndjson" if is_json(first_line) and text.strip() != first_line else "json"
    return "csv"


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def read_csv(text: str) -> LeadFile:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(text))
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise UsageError(f"not a readable CSV file: {e}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise UsageError("no header row (the first line must name the columns)")
    columns = map_columns(header)
    result = LeadFile(ignored_columns=columns.ignored, notes=columns.notes)
    try:
        for row in reader:
            if not row:  # a blank line
                continue
            values = {columns.fields[i]: cell for i, cell in enumerate(row) if i in columns.fields}
            add_lead(result, values, f"line {reader.line_num}")
    except csv.Error as e:
        raise UsageError(f"line {reader.line_num}: not readable as CSV: {e}") from None
    return result


@dataclass
class ColumnMap:
    fields: dict[int, str]  # column index -> lead field
    ignored: list[str]
    notes: list[str]


def map_columns(header: list[str]) -> ColumnMap:
    mapped = ColumnMap(fields={}, ignored=[], notes=[])
    taken: dict[str, str] = {}
    for index, column in enumerate(header):
        name = field_for(column)
        if name is None:
            if column.strip():
                mapped.ignored.append(column.strip())
        elif name in taken:
            mapped.notes.append(
                f"columns {taken[name]!r} and {column!r} both mean {name}; using {taken[name]!r}"
            )
        else:
            taken[name] = column
            mapped.fields[index] = name
    if not mapped.fields:
        raise UsageError(
            "none of the columns is a lead field; name them e.g. "
            "full_name, linkedin_url, email, company, title"
        )
    return mapped


def read_json(text: str) -> LeadFile:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"not valid JSON: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("leads"), list):
        data = data["leads"]
    if not isinstance(data, list):
        raise UsageError('expected a JSON array of leads or {"leads": [...]}')
    return read_objects((f"item {n}", item) for n, item in enumerate(data, start=1))


def read_ndjson(text: str) -> LeadFile:
    def objects() -> Iterator[tuple[str, Any]]:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", json.loads(line)
            except ValueError as e:
                raise UsageError(f"line {n}: not valid JSON: {e}") from None

    return read_objects(objects())


def read_objects(items: Iterable[tuple[str, Any]]) -> LeadFile:
    result = LeadFile()
    ignored: dict[str, None] = {}  # ordered set
    for origin, item in items:
        if not isinstance(item, dict):
            raise UsageError(f"{origin}: expected a JSON object, got {type(item).__name__}")
        values: dict[str, Any] = {}
        for key, value in item.items():
            name = field_for(str(key))
            if name is None:
                ignored.setdefault(str(key))
            elif name not in values:
                values[name] = value
        add_lead(result, values, origin)
    result.ignored_columns = list(ignored)
    return result


def add_lead(result: LeadFile, values: Mapping[str, Any], origin: str) -> None:
    lead: dict[str, str] = {}
    for name, value in values.items():
        text = cell_text(value, f"{origin}: {name}")
        if text:
            lead[name] = text
    if not lead:
        result.skipped_empty += 1
        return
    result.leads.append(lead)
    result.origins.append(origin)


def cell_text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value).strip()
    raise UsageError(f"{where} must be text, not {type(value).__name__}")
