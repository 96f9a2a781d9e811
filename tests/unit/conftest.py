"""Unit-test fixtures: a real store and a real provider cache, each on a temporary file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.enricher.cache import ProviderCache
from shared.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "db.sqlite")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ProviderCache]:
    cache = ProviderCache(tmp_path / "cache.db", ttl_s=3600)
    await cache.open()
    yield cache
    await cache.close()
