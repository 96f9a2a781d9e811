"""`leadflow export` and `leadflow daily`: a job's (or a UTC day's) result leads into a file
(or stdout) as CSV, JSON or NDJSON.

CSV and NDJSON are streamed from the gateway as it sends them; JSON is assembled from the
API's pages into one array. A file is written next to its target and renamed into place
when complete, so a failed export never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from leadflow_cli.client import Client
from leadflow_cli.errors import UsageError

FORMATS = ("csv", "json", "ndjson")
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
JSON_PAGE = 1000


def export_leads(
    client: Client, leads_path: str, output: str, fmt: str | None, status: str | None
) -> tuple[str, int]:
    """Write the leads of `leads_path` (a job's `/v1/jobs/<id>/leads`, or a day's
    `/v1/daily/<date>`: paged alike); the format used and how many leads were written."""
    fmt = fmt or SUFFIX_FORMATS.get(Path(output).suffix.lower(), "csv")
    with opened(output) as out:
        if fmt == "json":
            return fmt, write_json(client, leads_path, status, out)
        return fmt, write_stream(client, leads_path, fmt, status, out)


@contextlib.contextmanager
def opened(output: str) -> Iterator[TextIO]:
    if output == "-":
        yield sys.stdout
        return
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"{output} is a directory; name a file")
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        partial.replace(target)
    except OSError as e:
        # Reading errors arrive as CliErrors: an OSError here is about writing the file.
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_stream(client: Client, path: str, fmt: str, status: str | None, out: TextIO) -> int:
    query = {"format": fmt, "status": status}
    with client.open("GET", path, query=query) as response:
        lines = received_lines(client, response)
        return copy_ndjson(lines, out) if fmt == "ndjson" else copy_csv(lines, out)


def received_lines(client: Client, response: http.client.HTTPResponse) -> Iterator[str]:
    text = io.TextIOWrapper(response, encoding="utf-8", newline="")
    while True:
        try:
            line = text.readline()
        except (OSError, http.client.HTTPException) as e:
            raise client.unreachable(e) from None
        if not line:
            return
        yield line


def copy_ndjson(source: Iterator[str], out: TextIO) -> int:
    lines = 0
    for line in source:
        out.write(line)
        lines += 1
    return lines


def copy_csv(source: Iterator[str], out: TextIO) -> int:
    # Through the csv module so that a value holding a line break counts as one row; the
    # gateway writes the same dialect, so the bytes come out unchanged.
    writer = csv.writer(out, lineterminator="\n")
    rows = -1  # the header
    for row in csv.reader(source):
        writer.writerow(row)
        rows += 1
    return max(rows, 0)


def write_json(client: Client, path: str, status: str | None, out: TextIO) -> int:
    written = 0
    cursor = None
    out.write("[")
    while True:
        query = {"format": "json", "status": status, "limit": JSON_PAGE, "cursor": cursor}
        page = client.get(path, query)
        for lead in page["leads"]:
            out.write(("," if written else "") + "\n  " + json.dumps(lead, ensure_ascii=False))
            written += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    out.write("\n]\n" if written else "]\n")
    return written
