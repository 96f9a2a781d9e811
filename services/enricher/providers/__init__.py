"""Provider adapters, one per wire format, built by kind (`LEADFLOW_PROVIDER_<NAME>_KIND`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from services.enricher.config import ProviderSettings
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.apollo import ApolloProvider
from services.enricher.providers.base import Provider
from services.enricher.providers.dropcontact import DropcontactProvider
from services.enricher.providers.http import PersonMatchProvider
from services.enricher.providers.hunter import HunterProvider
from services.enricher.providers.pdl import PdlProvider
from shared.limits import Limits
from shared.ratelimit import Cooldowns

# (settings, session, cooldowns, metrics, *, limits[, batches]) -> Provider
Adapter = Callable[..., Provider]
ADAPTERS: dict[str, Adapter] = {
    "http": PersonMatchProvider,
    "hunter": HunterProvider,
    "pdl": PdlProvider,
    "apollo": ApolloProvider,
    "dropcontact": DropcontactProvider,
}


def build_provider(
    settings: ProviderSettings,
    session: aiohttp.ClientSession,
    control: Cooldowns,
    metrics: ProviderMetrics,
    *,
    limits: Limits | None = None,
    batches: Any = None,
) -> Provider:
    """The adapter of `settings.kind`; `limits` keeps its keys' allowances (shared by every
    enricher when it is the store's), `batches` its asynchronous batches (Dropcontact)."""
    if settings.kind == "dropcontact":
        return DropcontactProvider(
            settings, session, control, metrics, limits=limits, batches=batches
        )
    return ADAPTERS[settings.kind](settings, session, control, metrics, limits=limits)
