"""Every exchange and queue leadflow uses, named so the management UI explains itself.

Every service declares the whole topology at start (declaration is idempotent), so
services can start in any order. All names start with a prefix (`LEADFLOW_BROKER_PREFIX`),
which lets several deployments, or test runs, share one broker.

Queue types, and why:
- `<p>.enrich` (work): classic, because only classic queues have priorities
  (`x-max-priority`), which job priorities need. Poison messages are bounded by our own
  attempt counter (a header), since classic queues have no delivery limit.
- `<p>.router.events` (the event stream): quorum with single active consumer, so a
  second router is a hot standby and events are consumed in order; `x-delivery-limit`
  dead-letters an event that crashes the router again and again.
- `<queue>.retry.<n>s`: classic, one per delay tier, with a queue TTL that dead-letters
  back into the work queue: delayed retry without holding a consumer slot.
- `<queue>.suspect` (for task queues): classic. A task delivered again after its consumer
  died or lost its connection is moved here and handled one at a time (prefetch 1), so a
  message that kills its consumer is counted and dead-lettered alone, while the innocent
  messages that were prefetched beside it carry on.
- `<queue>.dead`: classic, where messages that exhausted their attempts land; the router
  moves them into the store (`GET /v1/dead-letters`), from where they can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RETRY_TIERS_S: tuple[int, ...] = (1, 5, 30, 120, 600)
MAX_PRIORITY = 3
EVENTS_DELIVERY_LIMIT = 20


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
        self.enrich_queue = f"{prefix}.enrich"
        self.events_queue = f"{prefix}.router.events"

    def exchange_for(self, routing_key: str) -> str:
        """Tasks go to the work exchange, everything else is an event."""
        return self.tasks_exchange if routing_key.startswith("task.") else self.events_exchange

    @staticmethod
    def dead_queue(queue: str) -> str:
        return f"{queue}.dead"

    @staticmethod
    def suspect_queue(queue: str) -> str:
        return f"{queue}.suspect"

    @staticmethod
    def retry_queue(queue: str, delay_s: int) -> str:
        return f"{queue}.retry.{delay_s}s"

    @staticmethod
    def retry_tier(delay_s: float) -> int:
        """The shortest tier that waits at least `delay_s` (the longest one caps it)."""
        for tier in RETRY_TIERS_S:
            if delay_s <= tier:
                return tier
        return RETRY_TIERS_S[-1]

    def exchanges(self) -> list[ExchangeSpec]:
        return [
            ExchangeSpec(self.tasks_exchange, "direct"),
            ExchangeSpec(self.events_exchange, "topic"),
            ExchangeSpec(self.dead_exchange, "direct"),
        ]

    def work_queues(self) -> list[str]:
        return [self.enrich_queue, self.events_queue]

    def task_queues(self) -> list[str]:
        """Work queues consumed concurrently, which get a suspect queue."""
        return [self.enrich_queue]

    def dead_queues(self) -> list[str]:
        return [self.dead_queue(queue) for queue in self.work_queues()]

    def queues(self) -> list[QueueSpec]:
        specs = [
            QueueSpec(
                self.enrich_queue,
                {"x-max-priority": MAX_PRIORITY, **self._dead_lettering(self.enrich_queue)},
                ((self.tasks_exchange, "task.enrich"),),
            ),
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
        ]
        specs.extend(
            QueueSpec(
                self.suspect_queue(queue),
                {"x-max-priority": MAX_PRIORITY, **self._dead_lettering(queue)},
            )
            for queue in self.task_queues()
        )
        for queue in self.work_queues():
            specs.append(
                QueueSpec(
                    self.dead_queue(queue),
                    {"x-queue-mode": "lazy"},
                    ((self.dead_exchange, queue),),
                )
            )
            specs.extend(
                QueueSpec(
                    self.retry_queue(queue, tier),
                    {
                        "x-message-ttl": tier * 1000,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue,
                    },
                )
                for tier in RETRY_TIERS_S
            )
        return specs

    def _dead_lettering(self, queue: str) -> dict[str, Any]:
        return {"x-dead-letter-exchange": self.dead_exchange, "x-dead-letter-routing-key": queue}
