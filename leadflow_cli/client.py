"""HTTP calls to the gateway with urllib (the CLI needs nothing beyond the standard library).

Every failure becomes a CliError with the right exit code: an answer of 4xx is the
user's to fix (2), a 5xx, a timeout or no connection is the server's side (3). RFC 9457
problems are unpacked into their `detail` and per-field `errors`.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode

from leadflow_cli.errors import EXIT_SERVER, EXIT_USAGE, CliError, ServerError, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30.0
# After the last byte of an upload the gateway queues every task before it answers: a
# million leads take a while.
UPLOAD_TIMEOUT_S = 600.0
UPLOAD_BLOCK_BYTES = 256 * 1024
ERROR_BODY_LIMIT = 64 * 1024


class Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


class ApiError(CliError):
    """The gateway answered with an error status."""

    def __init__(
        self, status: int, message: str, field_errors: list[tuple[str, str]] | None = None
    ) -> None:
        self.field_errors = field_errors or []
        super().__init__(message, [f"{field}: {message}" for field, message in self.field_errors])
        self.status = status
        self.exit_code = EXIT_USAGE if status < 500 else EXIT_SERVER


@dataclass(frozen=True)
class Client:
    base_url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(
                f"the gateway URL must start with http:// or https://: {self.base_url}"
            )

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body=body)

    def upload(self, path: str, form: MultipartFile) -> Any:
        """POST a multipart body streamed from disk; the decoded JSON answer."""
        request = self._request("POST", path, None, None)
        request.data = form  # http.client reads file objects block by block
        request.add_header("Content-Type", form.content_type)
        request.add_header("Content-Length", str(form.length))
        with self._urlopen(request, "POST", path, UPLOAD_TIMEOUT_S) as response:
            raw = self._read(response)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ServerError(f"POST {path}: the gateway answered something not JSON") from None

    def call(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """The decoded JSON answer of a 2xx response."""
        with self.open(method, path, query=query, body=body) as response:
            raw = self._read(response)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ServerError(f"{method} {path}: the gateway answered something not JSON") from None

    @contextmanager
    def open(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None
    ) -> Iterator[http.client.HTTPResponse]:
        """The open response of a 2xx answer, to read or stream; errors raised as CliErrors."""
        request = self._request(method, path, query, body)
        with self._urlopen(request, method, path, self.timeout_s) as response:
            yield response

    @contextmanager
    def _urlopen(
        self, request: urllib.request.Request, method: str, path: str, timeout_s: float
    ) -> Iterator[http.client.HTTPResponse]:
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310
        except urllib.error.HTTPError as e:
            with e:
                raise api_error(method, path, e.code, e.headers.get_content_type(), e) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise self.unreachable(e) from None
        with response:
            yield response

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self.unreachable(e) from None

    def _request(
        self, method: str, path: str, query: dict[str, Any] | None, body: Any
    ) -> urllib.request.Request:
        url = self.base_url.rstrip("/") + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310

    def unreachable(self, error: BaseException) -> ServerError:
        reason = getattr(error, "reason", None) or error
        return ServerError(f"cannot talk to the gateway at {self.base_url}: {reason}")


class MultipartFile:
    """A `multipart/form-data` body of a JSON part `job` and a file part `leads`, read from
    disk as http.client sends it (never whole in memory); `progress(sent, total)` is told
    each block."""

    def __init__(
        self,
        job: Any,
        file: Path,
        media_type: str,
        progress: Callable[[int, int], None] = lambda sent, total: None,
    ) -> None:
        boundary = uuid.uuid4().hex
        name = quote(file.name, safe=" .-_")
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="job"\r\n'
            "Content-Type: application/json\r\n\r\n"
            f"{json.dumps(job)}\r\n"
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="leads"; filename="{name}"\r\n'
            f"Content-Type: {media_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self.file_bytes = file.stat().st_size
        self.length = len(self._head) + self.file_bytes + len(self._tail)
        self._file: BinaryIO = file.open("rb")
        self._progress = progress
        self._sent = 0
        self._parts = [self._head]

    def read(self, size: int = -1) -> bytes:
        block = self._next()
        self._sent += len(block)
        self._progress(self._sent, self.length)
        return block

    def _next(self) -> bytes:
        if self._parts:
            return self._parts.pop()
        if self._file.closed:
            return b""
        block = self._file.read(UPLOAD_BLOCK_BYTES)
        if block:
            return block
        self._file.close()
        return self._tail

    def close(self) -> None:
        self._file.close()


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def api_error(method: str, path: str, status: int, content_type: str, body: Readable) -> ApiError:
    phrase = phrase_of(status)
    problem = read_problem(body, content_type)
    detail = str(problem.get("detail") or problem.get("title") or phrase)
    if status in (404, 405) and detail.lower() == phrase.lower():
        # The framework's own answer, not the API's: this gateway has no such endpoint.
        return ApiError(
            status,
            f"this gateway has no {method} {path} ({status} {phrase}); "
            "it may be older than this CLI",
        )
    if status == 401:
        detail += " (set LEADFLOW_API_KEY or pass --api-key)"
    errors = [
        (located(e), str(e.get("message", "")))
        for e in problem.get("errors") or []
        if isinstance(e, dict)
    ]
    if errors:
        # `detail` repeats the first field error; the title heads the full list instead.
        detail = str(problem.get("title") or phrase)
    return ApiError(status, f"{detail} (HTTP {status})", errors)


def located(error: dict[str, Any]) -> str:
    """The field a problem names, with the line of the uploaded file it is on."""
    field = str(error.get("field", ""))
    return f"line {error['line']} ({field})" if isinstance(error.get("line"), int) else field


def read_problem(body: Readable, content_type: str) -> dict[str, Any]:
    if not content_type.endswith("json"):
        return {}
    try:
        problem = json.loads(body.read(ERROR_BODY_LIMIT))
    except (ValueError, OSError, http.client.HTTPException):
        return {}
    return problem if isinstance(problem, dict) else {}


def phrase_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
