"""Sizes and knobs of a benchmark run: defaults keep a full run under ten minutes here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCENARIOS = (
    "broker",
    "e2e",
    "cpu",
    "e2e-pg",
    "provider",
    "ratelimited",
    "scale",
    "drain",
    "celery",
    "memory",
    "upload",
    "gateway",
    "profile",
)


@dataclass(frozen=True)
class BenchConfig:
    scenarios: tuple[str, ...] = SCENARIOS
    # e2e, celery and profile: one job of this many leads.
    leads: int = 20_000
    # cpu: the e2e job on this revision's services and on this checkout's, alternating,
    # this many times each (issue 15's baseline: main before its work).
    cpu_baseline: str = "975af16"
    cpu_repeats: int = 2
    # broker ceiling: messages per measurement, the hop counts, message shape and windows.
    broker_messages: int = 10_000
    broker_hops: tuple[int, ...] = (1, 2, 3)
    broker_repeats: int = 2
    message_bytes: int = 600
    publish_window: int = 500
    consumer_prefetch: int = 256
    # provider-bound run.
    provider_leads: int = 2_000
    provider_latency_ms: float = 100.0
    # scale: the provider-bound job with 1, 2 and 4 enrichers; drain: pre-filled outcomes.
    scale_leads: int = 4_000
    drain_leads: int = 40_000
    # memory: peak RSS during the big workload vs during the baseline one.
    memory_leads: int = 100_000
    memory_baseline_leads: int = 10_000
    # upload: one job of this many leads as an NDJSON file (1,000,000: issue 15's full size).
    upload_leads: int = 300_000
    # The gateway's default per-job limit: bigger workloads are submitted as chunks of this.
    job_chunk: int = 10_000
    # gateway: status requests under load, and the size of the POST whose accept time counts.
    gateway_clients: int = 200
    gateway_requests: int = 4_000
    gateway_post_leads: int = 10_000
    gateway_posts: int = 3
    # The Celery peer's worker pools, `pool:concurrency`, each measured; the best one counts
    # (see bench/peer.py for why these two).
    celery_pools: tuple[str, ...] = ("gevent:200", "prefork:4")
    celery_confirm_publish: bool = True
    celery_producers: int = 8
    profile_rate_hz: int = 100
    results_dir: Path = Path("var") / "bench"

    def timeout_s(self, leads: int, floor_s: float = 60.0, min_rate: float = 100.0) -> float:
        """How long a workload of `leads` may take before the run is declared stuck."""
        return floor_s + leads / min_rate
