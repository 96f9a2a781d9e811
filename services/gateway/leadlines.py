"""Reading an uploaded lead file line by line as its bytes arrive: CSV with a header row, or
NDJSON (one lead a line).

Each lead is decoded and checked on its own by the rules of the JSON body (the `LeadIn`
type, validation.py's `lead_problems`); each problem is named by its line, counted from 1
(a CSV's header is line 1; a CSV record with a quoted line break is named by the line it
starts on). Blank lines, and CSV rows with no lead field filled in (spreadsheets export
those), are skipped. CSV columns are matched as the CLI matches them
(shared/leadcolumns.py); columns that are no lead field are ignored, as the CLI ignores
them. Ids unique within the job is the caller's check (upload.py keeps them on disk).

Pure and synchronous: `feed` takes the next chunk of bytes and returns the leads it
completed; nothing is kept but the unfinished last line (or CSV record). A problem that
makes the rest of the file unreadable (not text in its charset, a line beyond
`MAX_LINE_CHARS`, a header without a lead field, more leads than allowed) raises a
`Problem` at once; the others are
collected (the first `MAX_ERRORS`, every one counted) and raised by `finish`, so a user
fixes a whole spreadsheet in one round trip.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator

import msgspec

from services.gateway.problems import FieldError, Problem
from services.gateway.schemas import LeadIn
from services.gateway.validation import field_error_from, lead_problems
from shared.leadcolumns import delimiter_of, field_for

# The lead fields' bounds (shared/messages.py) sum to about 6,000 characters: a line many
# times that long is not a lead, and must not grow the gateway's memory.
MAX_LINE_CHARS = 64 * 1024
MAX_ERRORS = 100
WHOLE_LEAD = "lead"  # the field named by a problem of the whole line
Parsed = tuple[int, LeadIn]  # (line, lead)


class LeadLines:
    """Bytes to numbered lines to leads; a subclass reads its format's lines."""

    def __init__(self, charset: str, max_leads: int) -> None:
        name = charset.lower()
        try:
            # utf-8-sig: a byte order mark (Excel writes one) is not part of the header.
            decoder = codecs.getincrementaldecoder(
                "utf-8-sig" if name in ("utf-8", "utf8") else name
            )
        except LookupError:
            raise refused(1, WHOLE_LEAD, f"unknown charset {charset!r}") from None
        self._decoder = decoder(errors="strict")
        self.charset = charset
        self.max_leads = max_leads
        self._tail = ""
        self.lines = 0  # lines split off so far
        self.leads = 0
        self.errors: list[FieldError] = []
        self.error_count = 0

    def feed(self, chunk: bytes, *, final: bool = False) -> list[Parsed]:
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as e:
            line = self.lines + 1 + self._tail.count("\n") + chunk[: e.start].count(b"\n")
            raise refused(
                line,
                WHOLE_LEAD,
                f"not {self.charset} text ({e.reason}); "
                "say the file's charset in the part's Content-Type",
            ) from None
        parts = (self._tail + text).split("\n")
        self._tail = "" if final else parts.pop()
        if len(self._tail) > MAX_LINE_CHARS:
            raise refused(self.lines + 1, WHOLE_LEAD, f"longer than {MAX_LINE_CHARS} characters")
        if final and parts and parts[-1] == "":
            parts.pop()  # the file ended with a line break
        first = self.lines + 1
        self.lines += len(parts)
        return self.read_lines([p + "\n" for p in parts], first, final)

    def finish(self) -> None:
        """Once the last bytes are fed (`final`): raises the problems collected, if any."""
        if self.leads == 0 and not self.errors:
            raise refused(max(self.lines, 1), WHOLE_LEAD, "no leads in the file")
        if self.errors:
            first = self.errors[0]
            more = f" (and {self.error_count - 1} more)" if self.error_count > 1 else ""
            shown = "" if self.error_count <= MAX_ERRORS else f"; the first {MAX_ERRORS} listed"
            raise Problem(
                422,
                f"line {first.line}: {first.field}: {first.message}{more}{shown}",
                errors=list(self.errors),
            )

    def read_lines(self, lines: list[str], first: int, final: bool) -> list[Parsed]:
        raise NotImplementedError

    def error(self, line: int, field: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(FieldError(field or WHOLE_LEAD, message, line=line))

    def accept(self, line: int, lead: LeadIn, into: list[Parsed]) -> None:
        problems = list(lead_problems(lead))
        for field, message in problems:
            self.error(line, field, message)
        if problems:
            return
        self.leads += 1
        if self.leads > self.max_leads:
            raise refused(
                line,
                WHOLE_LEAD,
                f"more than {self.max_leads} leads; an upload takes at most that",
                413,
            )
        into.append((line, lead))

    def converted(self, line: int, values: object) -> LeadIn | None:
        try:
            return msgspec.convert(values, LeadIn)
        except msgspec.ValidationError as e:
            found = field_error_from(str(e))
            self.error(line, "" if found.field == "body" else found.field, found.message)
            return None


class NdjsonLeads(LeadLines):
    """One JSON object a line, in the shape of a lead of the JSON body."""

    _decode = msgspec.json.Decoder(LeadIn).decode

    def read_lines(self, lines: list[str], first: int, final: bool) -> list[Parsed]:
        parsed: list[Parsed] = []
        for line, text in enumerate(lines, start=first):
            if not text.strip():
                continue
            try:
                lead = self._decode(text)
            except msgspec.ValidationError as e:
                found = field_error_from(str(e))
                self.error(line, "" if found.field == "body" else found.field, found.message)
                continue
            except msgspec.DecodeError as e:
                self.error(line, WHOLE_LEAD, f"not a JSON object: {e}")
                continue
            self.accept(line, lead, parsed)
        return parsed


class CsvLeads(LeadLines):
    """A header row naming the columns, then a lead a row; the delimiter is the one the
    header holds most of (`,` `;` tab `|`), as the CLI decides it."""

    def __init__(self, charset: str, max_leads: int) -> None:
        super().__init__(charset, max_leads)
        self.columns: dict[int, str] | None = None
        self.delimiter = ","
        # Lines of a record whose quoted field goes on past them, and the line it starts on.
        self._pending: list[str] = []
        self._pending_from = 0

    def read_lines(self, lines: list[str], first: int, final: bool) -> list[Parsed]:
        if self._pending:
            lines, first = self._pending + lines, self._pending_from
            self._pending = []
        if self.columns is None and lines:
            self.delimiter = delimiter_of(lines[0])
        parsed: list[Parsed] = []
        for line, row in self.records(lines, first, final):
            if self.columns is None:
                self.columns = self.header(row, line)
                continue
            values = {}
            for index, cell in enumerate(row):
                name = self.columns.get(index)
                if name is not None and (value := cell.strip()):
                    values[name] = value
            if values and (lead := self.converted(line, values)) is not None:
                self.accept(line, lead, parsed)
        return parsed

    def records(self, lines: list[str], first: int, final: bool) -> Iterator[tuple[int, list[str]]]:
        """(line it starts on, cells) of each complete record; an unfinished last record
        waits for the next chunk."""
        start = 0
        while start < len(lines):
            reader = csv.reader(lines[start:], delimiter=self.delimiter, strict=True)
            done = 0  # lines the records read so far took
            try:
                for row in reader:
                    if row:
                        yield first + start + done, row
                    done = reader.line_num
                return
            except csv.Error as e:
                at = first + start + done
                if "unexpected end of data" not in str(e):
                    self.error(at, WHOLE_LEAD, f"not readable as CSV: {e}")
                    start += max(reader.line_num, done + 1)
                    continue
                if final:
                    self.error(
                        at, WHOLE_LEAD, "a quoted field is not closed by the end of the file"
                    )
                    return
                self._pending, self._pending_from = lines[start + done :], at
                if sum(map(len, self._pending)) > MAX_LINE_CHARS:
                    raise refused(
                        at, WHOLE_LEAD, f"a quoted field runs over {MAX_LINE_CHARS} characters"
                    ) from None
                return

    def header(self, row: list[str], line: int) -> dict[int, str]:
        columns: dict[int, str] = {}
        taken: set[str] = set()
        for index, column in enumerate(row):
            name = field_for(column)
            if name is not None and name not in taken:  # two columns of one field: the first
                taken.add(name)
                columns[index] = name
        if not columns:
            raise refused(
                line,
                "header",
                "none of the columns is a lead field; name them e.g. "
                "full_name, linkedin_url, email, company, title",
            )
        return columns


def refused(line: int, field: str, message: str, status: int = 422) -> Problem:
    """A problem that ends the reading of the file."""
    return Problem(
        status, f"line {line}: {field}: {message}", errors=[FieldError(field, message, line=line)]
    )


def lead_reader(
    content_type: str, charset: str | None, max_leads: int, file_name: str | None = None
) -> LeadLines:
    """The reader of a `leads` part of this media type; an untyped part (or a generic
    `application/octet-stream`, as some clients send files) is read by its file name's
    extension."""
    kind = READERS.get(content_type.lower())
    if kind is None and content_type.lower() in ("", "application/octet-stream") and file_name:
        kind = BY_EXTENSION.get(file_name.rsplit(".", 1)[-1].lower())
    if kind is None:
        raise Problem(
            415,
            f"the leads part is {content_type or 'untyped'}; send text/csv (a header row, "
            "then a lead a row) or application/x-ndjson (a lead a line)",
        )
    return kind(charset or "utf-8", max_leads)


READERS: dict[str, type[LeadLines]] = {
    "text/csv": CsvLeads,
    "application/x-ndjson": NdjsonLeads,
    "application/jsonl": NdjsonLeads,
    "application/jsonlines": NdjsonLeads,
}
BY_EXTENSION: dict[str, type[LeadLines]] = {
    "csv": CsvLeads,
    "tsv": CsvLeads,
    "txt": CsvLeads,
    "ndjson": NdjsonLeads,
    "jsonl": NdjsonLeads,
}
