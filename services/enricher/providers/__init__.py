"""Provider adapters, one per wire format, built by kind (`LEADFLOW_PROVIDER_<NAME>_KIND`)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from services.enricher.config import ProviderSettings
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.apollo import ApolloProvider
from services.enricher.providers.base import Provider
from services.enricher.providers.dropcontact import DropcontactProvider
from services.enricher.providers.http import PersonMatchProvider
from services.enricher.providers.hunter import HunterProvider
from services.enricher.providers.pdl import PdlProvider
from shared.ratelimit import Cooldowns

Adapter = Callable[[ProviderSettings, aiohttp.ClientSession, Cooldowns, ProviderMetrics], Provider]
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
) -> Provider:
    return ADAPTERS[settings.kind](settings, session, control, metrics)
