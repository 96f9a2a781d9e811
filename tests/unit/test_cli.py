"""`leadflow` in-process: errors shown readably with the right exit code; following a job."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import cast

import pytest

from leadflow_cli import commands
from leadflow_cli.client import Client, api_error
from leadflow_cli.commands import TERMINAL_STATES, with_origins
from leadflow_cli.errors import EXIT_SERVER, EXIT_USAGE
from leadflow_cli.main import main
from tests.helpers import free_port

PROBLEM = "application/problem+json"


def problem(status: int, detail: str, **extra: object) -> io.BytesIO:
    body = {"type": "https://leadflow.dev/problems/x", "title": "Validation failed"}
    return io.BytesIO(json.dumps({**body, "status": status, "detail": detail, **extra}).encode())


def test_field_errors_are_listed_under_the_title_and_located_in_the_file() -> None:
    errors = [
        {"field": "leads[1].email", "message": "not an email address"},
        {"field": "destinations[0].url", "message": "must be an http or https URL"},
    ]
    error = api_error("POST", "/v1/jobs/enrich", 422, PROBLEM, problem(422, "…", errors=errors))
    assert error.exit_code == EXIT_USAGE
    assert error.message == "Validation failed (HTTP 422)"
    located = with_origins(error, ["line 2", "line 4"])
    assert located.details == [
        "line 4 (leads[1].email): not an email address",
        "destinations[0].url: must be an http or https URL",
    ]


def test_a_problem_without_field_errors_shows_its_detail() -> None:
    error = api_error("GET", "/v1/jobs/x", 404, PROBLEM, problem(404, "no job 'x'"))
    assert (error.message, error.details, error.exit_code) == ("no job 'x' (HTTP 404)", [], 2)


def test_a_missing_endpoint_is_named() -> None:
    body = problem(405, "Method Not Allowed")
    error = api_error("POST", "/v1/jobs/scrape", 405, PROBLEM, body)
    assert "this gateway has no POST /v1/jobs/scrape (405 Method Not Allowed)" in error.message


def test_unauthorized_says_where_the_key_goes() -> None:
    error = api_error("GET", "/v1/jobs", 401, PROBLEM, problem(401, "send a key"))
    assert "LEADFLOW_API_KEY" in error.message


@pytest.mark.parametrize(
    ("content_type", "body"), [("text/html", b"<h1>Bad gateway</h1>"), (PROBLEM, b"{")]
)
def test_server_errors_without_a_problem_are_exit_3(content_type: str, body: bytes) -> None:
    error = api_error("GET", "/v1/jobs", 502, content_type, io.BytesIO(body))
    assert error.exit_code == EXIT_SERVER
    assert error.message == "Bad Gateway (HTTP 502)"


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["--url", "http://127.0.0.1:{port}", "jobs"], EXIT_SERVER, "cannot talk to the gateway"),
        (["--url", "gateway:8080", "jobs"], EXIT_USAGE, "must start with http://"),
        (["enrich", "{tmp}/missing.csv"], EXIT_USAGE, "cannot read"),
        (["enrich", "{tmp}/x.csv", "--webhook-secret", "s"], EXIT_USAGE, "needs --webhook"),
    ],
)
def test_mistakes_and_unreachable_gateways_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, expected: str
) -> None:
    (tmp_path / "x.csv").write_text("name\nAda Lovelace\n")
    args = [a.format(port=free_port(), tmp=tmp_path) for a in argv]
    assert main(args) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("leadflow: error: ")
    assert expected in err


def test_bad_arguments_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["jobs", "--limit", "0"])
    assert exit_.value.code == EXIT_USAGE
    assert "must be 1 or more" in capsys.readouterr().err


class JobsInStates:
    """A stand-in Client whose job goes through the given states."""

    def __init__(self, *states: str) -> None:
        self.states = list(states)

    def get(self, path: str) -> dict[str, object]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        done = 2 if state in TERMINAL_STATES else 1
        return {
            "job_id": "job_1",
            "state": state,
            "progress": {
                "total": 2,
                "done": done,
                "enriched": done,
                "failed": 0,
                "percent": 50.0 * done,
            },
            "destinations": [],
            "error": "gave up" if state != "completed" else None,
        }


@pytest.mark.parametrize(
    ("final", "code"), [("completed", 0), ("failed", 1), ("cancelled", 1), ("timed_out", 1)]
)
def test_following_ends_with_the_job_and_says_how_it_ended(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], final: str, code: int
) -> None:
    monkeypatch.setattr(commands, "POLL_INTERVAL_S", 0)
    # A stand-in: following only ever calls `get`.
    client = cast(Client, JobsInStates("queued", "running", final))
    assert commands.follow(client, "job_1") == code
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"job job_1 {final}: 2 enriched, 0 failed of 2"
    assert "100.0%" in err.splitlines()[-1]
