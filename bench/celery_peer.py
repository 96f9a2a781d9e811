"""The Celery worker's entry point: `celery -A bench.celery_peer worker ...`.

Celery imports this module in the worker, so the app must live at module level and its
settings come from the environment (`BENCH_CELERY_*`, set by `bench.peer`). Resources
(the SQLite connection, HTTP connections) are made on the first task, in the process
that runs it, so prefork children never share what a parent opened.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from bench.celery_app import TASK_NAME, PeerSettings, PeerWork, make_app

settings = PeerSettings.from_env(dict(os.environ))
app = make_app(settings)


@cache
def work() -> PeerWork:
    return PeerWork(settings)


def enrich_lead(job_id: str, lead: dict[str, Any]) -> None:
    work().enrich(job_id, lead)


app.task(name=TASK_NAME)(enrich_lead)
