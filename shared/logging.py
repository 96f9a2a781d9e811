"""structlog, configured once per process: context vars first, JSON unless on a terminal.

Handlers bind `job_id` / `lead_id` with `structlog.contextvars.bound_contextvars`; each
message runs in its own task, so what one message binds never leaks into another.
"""

from __future__ import annotations

import logging
import sys

import structlog

from shared import tracing
from shared.config import CommonSettings


def configure_logging(settings: CommonSettings) -> None:
    level = getattr(logging, settings.log_level.upper())
    renderer: structlog.typing.Processor
    if settings.log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=settings.service)
    # Libraries (aio-pika, aiohttp) log through the standard library: keep their warnings.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(message)s")


def add_trace_ids(
    _: object, __: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """`trace_id` / `span_id` of the span the line was logged in, when one is recording."""
    event.update(tracing.ids())
    return event


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
