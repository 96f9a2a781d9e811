"""Every exchange and queue leadflow uses, named so the management UI explains itself.

Every service declares the static topology at start (declaration is idempotent), so
services can start in any order. All names start with a prefix (`LEADFLOW_BROKER_PREFIX`),
which lets several deployments, or test runs, share one broker.

Losing a node loses no work (`LEADFLOW_QUEUE_TYPE=quorum`, the default): every queue that
holds work is a quorum queue (a Raft log replicated on every node the cluster has when it
is declared) or a stream, both replicated; on a single node they simply have one replica.
Classic mirrored queues are not used (deprecated in 3.x, removed in 4.0).

Work is split by kind (enrich, scrape) and by tenant into lanes, and by priority:
- `<p>.<kind>.tenant.<tenant>` (normal), `….<tenant>.high` and `….<tenant>.low`: one quorum
  lane per tenant and priority level, declared when a tenant first submits, bound to
  `task.<kind>.<tenant>[.<level>]`. Quorum queues have no priorities in RabbitMQ 3.10, so
  the priority is in which lane a task goes to (the broker picks it from the task's
  priority when publishing). A worker consumes every lane with its own prefetch, so:
  * priority holds: a high task is delivered at once by the high lane even while the
    normal and low lanes fill their prefetch, and `FairSlots` (shared/slots.py) start the
    delivered tasks high first (a task waiting past `MAX_WAIT_S` goes first whatever its
    priority, well inside the broker's `consumer_timeout`); a backlog of 50,000 low tasks
    sits in its own lane and delays a high job by one task's time at most. This is at
    least as strict as a classic priority queue, where prefetched low tasks were not
    re-ordered by the broker.
  * fairness holds: a tenant's backlog sits in its own lanes, and `FairSlots` cap the
    tasks of one tenant in flight per worker, so another tenant's 20 leads are taken as
    soon as a worker slot frees, not after the backlog.
  The cost: three queues per tenant and kind (the scaling limit on queue count is three
  times closer; see docs/scaling.md). Workers learn of lanes from the control stream.
  Poison messages are bounded by our own attempt and crash counters (headers), which
  also hold for classic queues.
- `<p>.<kind>.suspect`: quorum. A task delivered again after its consumer died or lost its
  connection is moved here and handled one at a time (prefetch 1), so a message that kills
  its consumer is counted and dead-lettered alone, while the innocent messages that were
  prefetched beside it carry on.
- `<p>.<kind>.dead`: quorum, where messages that exhausted their attempts land; the router
  moves them into the store (`GET /v1/dead-letters`), from where they can be replayed.
- `<p>.router.events` (the event stream): quorum with single active consumer, so a second
  router is a hot standby and events are consumed in order; `x-delivery-limit`
  dead-letters an event that crashes the router again and again.
- `<p>.<exchange>.retry.<n>s`: a fanout exchange and a quorum queue per delay tier, whose
  TTL (quorum queues take TTLs since 3.10) dead-letters the message back to its exchange
  under its original routing key (priority lane included): delayed retry without holding a
  consumer slot, for tasks and events alike.
- `<p>.control` (a stream, fed by the fanout exchange of the same name): cancellations,
  timeouts, new lanes, cooldowns. A stream keeps its messages (for `CONTROL_RETENTION`),
  so a worker that starts later reads what it missed before it takes any work.

Nothing is dropped between nodes: every queue that dead-letters (lanes, suspects, retry
tiers, events) does it `at-least-once` (which needs `x-overflow=reject-publish`; no length
limit is set, so nothing is ever refused): the source queue keeps a dead letter until the
target queue confirmed it, so a retry whose lane's leader is on a stopped node waits for
the new leader instead of vanishing. What the services publish themselves (tasks, retries,
dead letters, suspects) is persistent, mandatory and confirmed, and a quorum queue confirms
once a majority of its replicas has it.

Operating notes: a quorum queue gets replicas on the nodes that are members when it is
declared; after adding a node (or a lane declared while one was down) run
`rabbitmq-queues grow <node> all`. Three nodes survive one node down; five, two.

`LEADFLOW_QUEUE_TYPE=classic` keeps the topology of earlier versions (classic queues, one
lane per tenant with `x-max-priority`), for a single-node broker on which they are already
declared: RabbitMQ cannot change a queue's type in place (a declaration with another
`x-queue-type` fails with PRECONDITION_FAILED), so such a broker moves to quorum by running
the new services on a new vhost (or prefix) while the old ones drain the old one.

With RabbitMQ 4.3 the per-priority lanes would become one quorum lane per tenant with
`x-max-priority` (strict priorities up to 32 levels), and the retry tiers its delayed
retries; 4.x needs no other change (no mirrored queues, no global QoS, no transient
non-exclusive queues are used here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

QueueType = Literal["quorum", "classic"]

RETRY_TIERS_S: tuple[int, ...] = (1, 5, 30, 120, 600)
MAX_PRIORITY = 3
# Quorum lanes, one per priority level, in the order workers prefer them. The normal lane
# keeps the name a tenant's only lane has in the classic topology.
LANE_PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
DEFAULT_PRIORITY = "normal"
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
    def __init__(self, prefix: str, queue_type: QueueType = "quorum") -> None:
        self.prefix = prefix
        self.queue_type = queue_type
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

    @property
    def lane_priorities(self) -> tuple[str, ...]:
        """The priority levels that have a lane of their own (classic: one lane for all)."""
        return LANE_PRIORITIES if self.queue_type == "quorum" else (DEFAULT_PRIORITY,)

    def lane_queue(self, kind: str, tenant: str, priority: str = DEFAULT_PRIORITY) -> str:
        return f"{self.prefix}.{kind}.tenant.{tenant}{self._level_suffix(priority)}"

    def lane_queues(self, kind: str, tenant: str) -> list[str]:
        """A tenant's lanes for a kind of work, highest priority first."""
        return [self.lane_queue(kind, tenant, level) for level in self.lane_priorities]

    def lane_key(self, kind: str, tenant: str, priority: str = DEFAULT_PRIORITY) -> str:
        return self.task_key(f"task.{kind}.{tenant}", priority)

    def task_key(self, routing_key: str, priority: str) -> str:
        """A task's routing key to its lane: the priority picks the lane (quorum)."""
        return f"{routing_key}{self._level_suffix(priority)}"

    def _level_suffix(self, priority: str) -> str:
        if priority == DEFAULT_PRIORITY or priority not in self.lane_priorities:
            return ""
        return f".{priority}"

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
        """The static queues (lanes are declared on demand, see `lane_specs`)."""
        specs = [
            QueueSpec(
                self.events_queue,
                {
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    "x-delivery-limit": EVENTS_DELIVERY_LIMIT,
                    **self._dead_lettering(self.events_queue, always_quorum=True),
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
                    {**self._work_queue_type(), **self._dead_lettering(self.work_queue(kind))},
                )
            )
        for source in self.dead_letter_sources():
            specs.append(
                QueueSpec(
                    self.dead_queue(source),
                    self._replicated({"x-queue-mode": "lazy"}),
                    ((self.dead_exchange, source),),
                )
            )
        for exchange in (self.tasks_exchange, self.events_exchange):
            specs.extend(
                QueueSpec(
                    self.retry_name(exchange, tier),
                    # No dead-letter routing key: the message keeps its own, and goes home.
                    {
                        **self._replicated({}),
                        "x-message-ttl": tier * 1000,
                        **self._dead_lettering_to(exchange, None),
                    },
                    ((self.retry_name(exchange, tier), ""),),
                )
                for tier in RETRY_TIERS_S
            )
        return specs

    def lane_specs(self, kind: str, tenant: str) -> list[QueueSpec]:
        """A tenant's lanes for a kind of work (one per priority level with quorum)."""
        return [self.lane_spec(kind, tenant, level) for level in self.lane_priorities]

    def lane_spec(self, kind: str, tenant: str, priority: str = DEFAULT_PRIORITY) -> QueueSpec:
        return QueueSpec(
            self.lane_queue(kind, tenant, priority),
            {**self._work_queue_type(), **self._dead_lettering(self.work_queue(kind))},
            ((self.tasks_exchange, self.lane_key(kind, tenant, priority)),),
        )

    def spec_of(self, queue: str) -> QueueSpec:
        """The declaration of a static queue or a lane, by name."""
        for spec in self.queues():
            if spec.name == queue:
                return spec
        for kind in WORK_KINDS:
            lane_prefix = f"{self.work_queue(kind)}.tenant."
            if queue.startswith(lane_prefix):
                tenant, _, level = queue.removeprefix(lane_prefix).partition(".")
                spec = self.lane_spec(kind, tenant, level or DEFAULT_PRIORITY)
                if spec.name == queue:
                    return spec
        raise KeyError(f"{queue} is not part of leadflow's topology")

    def _work_queue_type(self) -> dict[str, Any]:
        """Lanes and suspects: replicated, or classic with the broker's priorities."""
        return self._replicated({"x-max-priority": MAX_PRIORITY})

    def _replicated(self, classic_arguments: dict[str, Any]) -> dict[str, Any]:
        if self.queue_type == "quorum":
            return {"x-queue-type": "quorum"}
        return classic_arguments

    def _dead_lettering(self, queue: str, *, always_quorum: bool = False) -> dict[str, Any]:
        return self._dead_lettering_to(self.dead_exchange, queue, always_quorum=always_quorum)

    def _dead_lettering_to(
        self, exchange: str, routing_key: str | None, *, always_quorum: bool = False
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-dead-letter-exchange": exchange}
        if routing_key is not None:
            arguments["x-dead-letter-routing-key"] = routing_key
        if always_quorum or self.queue_type == "quorum":
            # Kept by the source queue until the target confirmed it: a dead letter is not
            # dropped because the target's leader is on a node that is down. It needs the
            # reject-publish overflow, which refuses nothing as no length limit is set.
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        return arguments
