"""When a saved search runs next: the one rule the gateway (first run, validation) and the
router's scheduler (every later run) share.

Times are epoch seconds in UTC. An `every_s` schedule's slots are aligned on its creation
time; a cron schedule's are its expression's times in UTC. The next run is always the first
slot after *now*, so a router that was down through several slots runs the schedule once
when it is back, not once per missed slot.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from croniter import CroniterError, croniter

MIN_EVERY_S_DEV = 1
MIN_EVERY_S_PRODUCTION = 60


def _field(number: str) -> str:
    item = f"(?:\\*|(?:{number})(?:-(?:{number}))?)(?:/[1-9][0-9]?)?"
    return f"{item}(?:,{item})*"


# The cron expressions we take: five fields of numbers, `*`, ranges, lists and steps, each
# number within its field's bounds (minute hour day-of-month month day-of-week, 0 or 7 is
# Sunday), in UTC. The API document states this pattern.
CRON_PATTERN = "^{}$".format(
    " ".join(
        _field(n)
        for n in (
            "[0-5]?[0-9]",
            "[01]?[0-9]|2[0-3]",
            "0?[1-9]|[12][0-9]|3[01]",
            "0?[1-9]|1[0-2]",
            "[0-7]",
        )
    )
)
_CRON = re.compile(CRON_PATTERN)


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a cron expression we run, or None when it is one."""
    if not _CRON.match(expression):
        return (
            "five fields, minute hour day-of-month month day-of-week (UTC), each `*` or "
            "numbers within the field's bounds, with ranges (1-5), lists (1,3) and steps "
            f"(*/15): {expression!r} is not"
        )
    try:
        croniter(expression, datetime.now(UTC)).get_next(float)
    except (ValueError, KeyError, CroniterError) as e:  # e.g. 31 February
        return f"{expression!r} never runs: {e}"
    return None


def next_run_after(
    now: float, *, created_at: float, every_s: int | None, cron: str | None
) -> float:
    """The first slot strictly after `now`."""
    if cron is not None:
        start = datetime.fromtimestamp(now, UTC)
        return float(croniter(cron, start).get_next(float))
    if every_s is None or every_s <= 0:
        raise ValueError("a schedule has either every_s > 0 or a cron expression")
    slots_passed = math.floor((now - created_at) / every_s) + 1
    return created_at + max(1, slots_passed) * every_s
