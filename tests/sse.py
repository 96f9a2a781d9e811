"""A small Server-Sent Events reader for aiohttp responses, for the event-stream tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Sse:
    """One event; a comment line (`: ping`) comes as event "comment" with its text."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def read_sse(response: aiohttp.ClientResponse) -> AsyncIterator[Sse]:
    """Events in order, as the SSE spec assembles them, until the server ends the stream."""
    event, data, event_id, retry = "message", [], None, None
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data or retry is not None:
                yield Sse(event, "\n".join(data), event_id, retry)
            event, data, retry = "message", [], None
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            yield Sse("comment", value)
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
        elif field == "retry":
            retry = int(value)
