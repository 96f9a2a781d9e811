"""The webhook dispatcher's retry decisions, as a pure function: a 410 disables, a
success delivers, a failure is retried with the one backoff formula tasks use, until the
batch is older than the retry window."""

from __future__ import annotations

import pytest

from services.router.destinations.webhook import Batch, verdict
from shared.supervise import Backoff

WINDOW_S = 3600.0
BACKOFF = Backoff(base_s=2.0, max_s=60.0)


def batch(attempts: int = 0, created_at: float = 1000.0) -> Batch:
    return Batch(
        job_id="j",
        dest_idx=0,
        batch_no=0,
        webhook_id="msg_1",
        first_seq=0,
        last_seq=9,
        size=10,
        attempts=attempts,
        created_at=created_at,
    )


def test_a_410_disables_even_past_the_window() -> None:
    after = verdict(410, "HTTP 410", 1000.0 + WINDOW_S * 2, batch(), WINDOW_S, BACKOFF)
    assert after.outcome == "disabled"


def test_a_success_is_delivered() -> None:
    assert verdict(200, None, 1001.0, batch(attempts=3), WINDOW_S, BACKOFF).outcome == "delivered"


@pytest.mark.parametrize(("attempts", "low", "high"), [(0, 1.0, 2.0), (2, 4.0, 8.0), (9, 30, 60)])
def test_a_failure_is_retried_with_growing_capped_backoff(
    attempts: int, low: float, high: float
) -> None:
    after = verdict(503, "HTTP 503", 1010.0, batch(attempts=attempts), WINDOW_S, BACKOFF)
    assert after.outcome == "retry"
    assert low <= after.retry_in_s <= high


def test_a_failure_past_the_window_is_given_up() -> None:
    for status in (500, None):  # an answer or no answer at all (timeout, refused)
        late = 1000.0 + WINDOW_S
        assert verdict(status, "failed", late, batch(), WINDOW_S, BACKOFF).outcome == "given_up"
