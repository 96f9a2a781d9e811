"""The enricher's own metrics: provider calls by outcome, and their latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.health import Metrics


class ProviderMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.calls = Counter(
            "leadflow_provider_calls_total",
            "Provider answers per lead: found, not_found, rejected, unavailable, cached.",
            ["provider", "outcome"],
            registry=metrics.registry,
        )
        self.seconds = Histogram(
            "leadflow_provider_call_seconds",
            "Time of one HTTP request to a provider (a bulk request counts once).",
            ["provider"],
            registry=metrics.registry,
        )
