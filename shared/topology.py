"""Every exchange and queue leadflow uses, named so the management UI explains itself.

Every service declares the static topology at start (declaration is idempotent), so
services can start in any order. All names start with a prefix (`LEADFLOW_BROKER_PREFIX`),
which lets several deployments, or test runs, share one broker.

Work is split by kind (enrich, scrape) and by tenant into lanes:
- `<p>.<kind>.tenant.<tenant>` (a lane, declared when a tenant first submits): classic,
  because only classic queues have priorities (`x-max-priority`), which job priorities
  need. One lane per tenant is what makes sharing fair: a worker consumes every lane with
  its own prefetch, so a tenant's 50,000-lead backlog sits in its own lane and another
  tenant's 20 leads are taken as soon as a worker slot frees, not after the backlog.
  Workers learn of lanes from the control stream. Poison messages are bounded by our own
  attempt counter (a header), since classic queues have no delivery limit.
- `<p>.<kind>.suspect`: classic. A task delivered again after its consumer died or lost its
  connection is moved here and handled one at a time (prefetch 1), so a message that kills
  its consumer is counted and dead-lettered alone, while the innocent messages that were
  prefetched beside it carry on.
- `<p>.<kind>.dead`: classic, where messages that exhausted their attempts land; the router
  moves them into the store (`GET /v1/dead-letters`), from where they can be replayed.
- `<p>.router.events` (the event stream): quorum with single active consumer, so a second
  router is a hot standby and events are consumed in order; `x-delivery-limit`
  dead-letters an event that crashes the router again and again.
- `<p>.<exchange>.retry.<n>s`: a fanout exchange and a classic queue per delay tier, whose
  TTL dead-letters the message back to its exchange under its original routing key:
  delayed retry without holding a consumer slot, for tasks and events alike.
- `<p>.control` (a stream, fed by the fanout exchange of the same name): cancellations,
  timeouts, new lanes, cooldowns. A stream keeps its messages (for `CONTROL_RETENTION`),
  so a worker that starts later reads what it missed before it takes any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RETRY_TIERS_S: tuple[int, ...] = (1, 5, 30, 120, 600)
MAX_PRIORITY = 3
EVENTS_DELIVERY_LIMIT = 20
CONTROL_RETENTION = "7D"
WORK_KINDS: tuple[str, ...] = ("enrich", "scrape")


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...] = field(default=())


class Topology:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks_exchange = f"{prefix}.tasks"
        self.events_exchange = f"{prefix}.events"
        self.dead_exchange = f"{prefix}.dead"
        self.control_exchange = f"{prefix}.control"
        self.control_stream = f"{prefix}.control"
        self.events_queue = f"{prefix}.router.events"

    # -- names -------------------------------------------------------------------------

    def exchange_for(self, routing_key: str) -> str:
        if routing_key.startswith("task."):
            return self.tasks_exchange
        if routing_key.startswith("control."):
            return self.control_exchange
        return self.events_exchange

    def work_queue(self, kind: str) -> str:
        """The base name of a kind of work: its dead-letter and suspect queues derive from it."""
        return f"{self.prefix}.{kind}"

    def lane_queue(self, kind: str, tenant: str) -> str:
        return f"{self.prefix}.{kind}.tenant.{tenant}"

    @staticmethod
    def lane_key(kind: str, tenant: str) -> str:
        return f"task.{kind}.{tenant}"

    def suspect_queue(self, kind: str) -> str:
        return f"{self.work_queue(kind)}.suspect"

    @staticmethod
    def dead_queue(queue: str) -> str:
        return f"{queue}.dead"

    @staticmethod
    def retry_name(exchange: str, delay_s: int) -> str:
        return f"{exchange}.retry.{delay_s}s"

    @staticmethod
    def retry_tier(delay_s: float) -> int:
        """The shortest tier that waits at least `delay_s` (the longest one caps it)."""
        for tier in RETRY_TIERS_S:
            if delay_s <= tier:
                return tier
        return RETRY_TIERS_S[-1]

    def dead_letter_sources(self) -> list[str]:
        """Base names whose `.dead` queue the router drains."""
        return [*(self.work_queue(kind) for kind in WORK_KINDS), self.events_queue]

    # -- declarations ------------------------------------------------------------------

    def exchanges(self) -> list[ExchangeSpec]:
        specs = [
            ExchangeSpec(self.tasks_exchange, "direct"),
            ExchangeSpec(self.events_exchange, "topic"),
            ExchangeSpec(self.dead_exchange, "direct"),
            ExchangeSpec(self.control_exchange, "fanout"),
        ]
        for exchange in (self.tasks_exchange, self.events_exchange):
            specs.extend(
                ExchangeSpec(self.retry_name(exchange, t), "fanout") for t in RETRY_TIERS_S
            )
        return specs

    def queues(self) -> list[QueueSpec]:
        """The static queues (lanes are declared on demand, see `lane_spec`)."""
        specs = [
            QueueSpec(
                self.events_queue,
                {
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    "x-delivery-limit": EVENTS_DELIVERY_LIMIT,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                    **self._dead_lettering(self.events_queue),
                },
                ((self.events_exchange, "lead.*"), (self.events_exchange, "job.*")),
            ),
            QueueSpec(
                self.control_stream,
                {"x-queue-type": "stream", "x-max-age": CONTROL_RETENTION},
                ((self.control_exchange, ""),),
            ),
        ]
        for kind in WORK_KINDS:
            specs.append(
                QueueSpec(
                    self.suspect_queue(kind),
                    {"x-max-priority": MAX_PRIORITY, **self._dead_lettering(self.work_queue(kind))},
                )
            )
        for source in self.dead_letter_sources():
            specs.append(
                QueueSpec(
                    self.dead_queue(source),
                    {"x-queue-mode": "lazy"},
                    ((self.dead_exchange, source),),
                )
            )
        for exchange in (self.tasks_exchange, self.events_exchange):
            specs.extend(
                QueueSpec(
                    self.retry_name(exchange, tier),
                    # No dead-letter routing key: the message keeps its own, and goes home.
                    {"x-message-ttl": tier * 1000, "x-dead-letter-exchange": exchange},
                    ((self.retry_name(exchange, tier), ""),),
                )
                for tier in RETRY_TIERS_S
            )
        return specs

    def lane_spec(self, kind: str, tenant: str) -> QueueSpec:
        return QueueSpec(
            self.lane_queue(kind, tenant),
            {"x-max-priority": MAX_PRIORITY, **self._dead_lettering(self.work_queue(kind))},
            ((self.tasks_exchange, self.lane_key(kind, tenant)),),
        )

    def spec_of(self, queue: str) -> QueueSpec:
        """The declaration of a static queue or a lane, by name."""
        for spec in self.queues():
            if spec.name == queue:
                return spec
        for kind in WORK_KINDS:
            lane_prefix = f"{self.work_queue(kind)}.tenant."
            if queue.startswith(lane_prefix):
                return self.lane_spec(kind, queue.removeprefix(lane_prefix))
        raise KeyError(f"{queue} is not part of leadflow's topology")

    def _dead_lettering(self, queue: str) -> dict[str, Any]:
        return {"x-dead-letter-exchange": self.dead_exchange, "x-dead-letter-routing-key": queue}
