"""The control stream: cancellations, timeouts, deletions, new lanes and cooldowns,
broadcast to every worker.

A worker reads the stream from its start (a stream keeps its messages for a retention
period), so one that starts after a job was cancelled still knows it before it takes any
task. `catch_up()` publishes a marker and waits to read it back: everything published
before the marker has then been seen.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from shared.broker import ConsumerBroker, Delivered, Publish, settle
from shared.errors import BrokerUnavailable
from shared.logging import get_logger
from shared.messages import (
    Codec,
    ControlMarker,
    CooldownStarted,
    JobDeleted,
    JobStopped,
    LaneOpened,
)

log = get_logger(__name__)
PREFETCH = 500
STOPPED_KEPT_S = 8 * 86400  # a little longer than the stream keeps them
COOLDOWN_SLACK_S = 0.5

StopCallback = Callable[[JobStopped], None]
LaneCallback = Callable[[LaneOpened], Awaitable[None]]
DeletedCallback = Callable[[JobDeleted], None]


class ControlListener:
    def __init__(self, broker: ConsumerBroker, codec: Codec) -> None:
        self.broker = broker
        self.codec = codec
        self.stopped: dict[str, tuple[JobStopped, float]] = {}
        self.lanes: set[tuple[str, str]] = set()
        # Targets (`source:<name>:<account>`, `provider:<name>`) cooling down, until when.
        self.cooldowns: dict[str, float] = {}
        self._stop_callbacks: list[StopCallback] = []
        self._lane_callbacks: list[LaneCallback] = []
        self._deleted_callbacks: list[DeletedCallback] = []
        self._markers: dict[str, asyncio.Event] = {}
        self._started = False

    def is_stopped(self, job_id: str) -> bool:
        return job_id in self.stopped

    def cooldown_left(self, target: str) -> float:
        """Seconds until `target` may be called again (0 when it may be now)."""
        return max(0.0, self.cooldowns.get(target, 0.0) - time.time())

    async def start_cooldown(self, target: str, until: float) -> None:
        """Cool `target` down here at once, and tell every other worker."""
        if until <= self.cooldowns.get(target, 0.0) + COOLDOWN_SLACK_S:
            return  # already cooling down that long: many 429s at once make one notice
        self.cooldowns[target] = until
        log.warning("cooldown.started", target=target, seconds=round(until - time.time(), 2))
        notice = CooldownStarted(job_id="", tenant="", target=target, until=until)
        try:
            await self.broker.publish([Publish(notice)])
        except BrokerUnavailable as e:
            # It holds here already; the others learn of it from their own 429s.
            log.warning("cooldown.not_broadcast", target=target, error=str(e))

    def on_stop(self, callback: StopCallback) -> None:
        self._stop_callbacks.append(callback)

    def on_lane(self, callback: LaneCallback) -> None:
        self._lane_callbacks.append(callback)

    def on_deleted(self, callback: DeletedCallback) -> None:
        """`callback` is called for every job deletion, from the start of the stream (again
        after a reconnect re-reads it): it must be idempotent and quick."""
        self._deleted_callbacks.append(callback)

    async def start(self) -> None:
        if self._started:
            return
        queue = await self.broker.consume_channel(self.broker.topology.control_stream, PREFETCH)
        await queue.consume(self._on_message, arguments={"x-stream-offset": "first"})
        self._started = True

    async def catch_up(self, timeout_s: float = 60.0) -> None:
        """Return once every control message published before now has been handled."""
        marker = uuid.uuid4().hex
        seen = self._markers[marker] = asyncio.Event()
        try:
            await self.broker.publish([Publish(ControlMarker(job_id="", tenant="", marker=marker))])
            await asyncio.wait_for(seen.wait(), timeout_s)
        finally:
            self._markers.pop(marker, None)

    async def _on_message(self, message: Delivered) -> None:
        try:
            control = self.codec.decode(message.body)
        except msgspec.DecodeError as e:
            log.error("control.undecodable", error=str(e))
        else:
            try:
                await self._dispatch(control)
            except Exception:  # e.g. a lane not subscribed now: its next announcement retries
                log.exception("control.dispatch_failed", type=type(control).__name__)
        await settle(message)

    async def _dispatch(self, control: object) -> None:
        if isinstance(control, JobStopped):
            if control.job_id not in self.stopped:
                self._remember(control)
                log.info("control.job_stopped", job_id=control.job_id, state=control.state)
                for stop_callback in self._stop_callbacks:
                    stop_callback(control)
        elif isinstance(control, JobDeleted):
            for deleted_callback in self._deleted_callbacks:
                deleted_callback(control)
        elif isinstance(control, LaneOpened):
            lane = (control.kind, control.tenant)
            if lane not in self.lanes:
                for lane_callback in self._lane_callbacks:
                    await lane_callback(control)
                self.lanes.add(lane)  # only once every consumer could subscribe
        elif isinstance(control, CooldownStarted):
            self.cooldowns[control.target] = max(
                control.until, self.cooldowns.get(control.target, 0.0)
            )
        elif isinstance(control, ControlMarker) and control.marker in self._markers:
            self._markers[control.marker].set()

    def _remember(self, stopped: JobStopped) -> None:
        now = time.monotonic()
        self.stopped[stopped.job_id] = (stopped, now)
        if len(self.stopped) % 1000 == 0:
            for job_id, (_, at) in list(self.stopped.items()):
                if now - at > STOPPED_KEPT_S:
                    del self.stopped[job_id]
