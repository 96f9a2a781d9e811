"""Fault injection for the fault-test suite: die on a chosen lead, as a poison message would.

Set `LEADFLOW_FAULT_CRASH_ON=<text>` (dev only; production refuses it) and the enricher
process exits abruptly when it meets a lead whose name contains that text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from shared.logging import get_logger
from shared.messages import Lead

log = get_logger(__name__)
CRASH_EXIT_CODE = 70


def crash_if_poisoned(leads: Sequence[Lead], marker: str | None) -> None:
    if not marker:
        return
    for lead in leads:
        if marker in (lead.full_name or ""):
            log.critical("fault.injected_crash", lead_id=lead.id, marker=marker)
            os._exit(CRASH_EXIT_CODE)
