"""A small Server-Sent Events reader for aiohttp responses and raw bytes, for the
event-stream tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


@dataclass
class SseParser:
    """Assembles events line by line as the SSE spec does."""

    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None
    retry: int | None = None

    def line(self, line: str) -> Sse | None:
        if line == "":
            done = None
            if self.data or self.retry is not None:
                done = Sse(self.event, "\n".join(self.data), self.id, self.retry)
            self.event, self.data, self.retry = "message", [], None
            return done
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            return Sse("comment", value)
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        elif name == "retry":
            self.retry = int(value)
        return None


async def read_sse(response: aiohttp.ClientResponse) -> AsyncIterator[Sse]:
    """Events in order, as the SSE spec assembles them, until the server ends the stream."""
    parser = SseParser()
    async for raw in response.content:
        event = parser.line(raw.decode().rstrip("\r\n"))
        if event is not None:
            yield event


def parse_sse(raw: bytes) -> list[Sse]:
    """Every complete event in `raw`."""
    parser = SseParser()
    events = (parser.line(line) for line in raw.decode().split("\n"))
    return [event for event in events if event is not None]
