"""Key pools and windows: `_LIMITS` parsing with errors naming the variable, sliding
windows (per process and in the store, shared by two stores on one file), rotation over a
provider's keys, a 429 cooling one key only, shared concurrency leases, and the
Dropcontact batch ids kept in the store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.enricher.batches import StoreBatches, submission_was_in_flight, watch_submissions
from services.enricher.config import load_provider
from services.enricher.spending import Spending, key_id
from shared.config import ApiSettings, EnvReader, load_common
from shared.errors import ConfigError, TransientError
from shared.limits import MemoryLimits, StoreLimits
from shared.ratelimit import KeyPool
from shared.store import Store
from shared.windows import Window, parse_windows
from tests.unit.test_gate import FakeCooldowns


class Limited(TransientError):
    pass


def test_limits_parse_every_unit_and_sort_by_span() -> None:
    assert parse_windows("V", "500/min, 15/s") == (Window(15, 1.0), Window(500, 60.0))
    assert parse_windows("V", "50/min,200/h,600/d") == (
        Window(50, 60.0),
        Window(200, 3600.0),
        Window(600, 86400.0),
    )
    assert parse_windows("V", "10/5s,3/hour,7/day") == (
        Window(10, 5.0),
        Window(3, 3600.0),
        Window(7, 86400.0),
    )


@pytest.mark.parametrize("raw", ["15", "15/fortnight", "0/s", "/s", "15/s,", "x/min", "1.5/s"])
def test_a_malformed_limit_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_windows("LEADFLOW_PROVIDER_HUNTER_LIMITS", raw)
    assert str(raised.value).startswith("LEADFLOW_PROVIDER_HUNTER_LIMITS: expected")


def test_provider_settings_read_keys_limits_and_the_older_rate() -> None:
    env = EnvReader(
        {
            "LEADFLOW_PROVIDER_HUNTER_KEYS": "k1, k2,k3",
            "LEADFLOW_PROVIDER_HUNTER_LIMITS": "15/s,500/min",
            "LEADFLOW_PROVIDER_ALPHA_KEY": "one",
            "LEADFLOW_PROVIDER_ALPHA_RATE_PER_S": "2.5",
        }
    )
    common = load_common("enricher", env)
    hunter = load_provider(env, common, "hunter")
    assert hunter.keys == ("k1", "k2", "k3")
    assert hunter.limits == (Window(15, 1.0), Window(500, 60.0))
    assert not hunter.shared_concurrency
    alpha = load_provider(env, common, "alpha")
    assert alpha.keys == ("one",)
    assert alpha.limits == (Window(2, 0.8),)  # 2.5/s as a window


def test_key_and_keys_together_are_refused() -> None:
    env = EnvReader({"LEADFLOW_PROVIDER_PDL_KEY": "a", "LEADFLOW_PROVIDER_PDL_KEYS": "b,c"})
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_PDL_KEY: expected either"):
        load_provider(env, load_common("enricher", env), "pdl")


def api(keys: tuple[str, ...], limits: tuple[Window, ...]) -> ApiSettings:
    return ApiSettings(
        name="hunter",
        url="http://127.0.0.1:9",
        keys=keys,
        timeout_s=1.0,
        rate_per_s=0.0,
        cooldown_s=30.0,
        limits=limits,
    )


async def test_a_sliding_window_allows_its_limit_in_any_span() -> None:
    now = [100.0]
    limits = MemoryLimits(clock=lambda: now[0])
    windows = (Window(3, 1.0),)
    turns = [await limits.take("t", windows, 0.5) for _ in range(3)]
    assert all(t.booked for t in turns)
    # Paced at half an even spacing (1/6 s), not all at one instant.
    assert [round(t.wait_s, 3) for t in turns] == [0.0, 0.167, 0.333]
    refused = await limits.take("t", windows, 0.5)
    assert not refused.booked
    assert 1.0 < refused.wait_s < 1.1  # the oldest turn's span, plus the margin
    now[0] += 0.5
    assert not (await limits.take("t", windows, 0.0)).booked  # still inside the span
    now[0] += 0.6
    assert (await limits.take("t", windows, 0.0)).booked


async def test_the_pool_rotates_skips_exhausted_and_cooling_keys() -> None:
    cooldowns = FakeCooldowns()
    pool = KeyPool(
        api(("a", "b", "c"), (Window(2, 60.0),)), "provider:hunter", cooldowns, max_wait_s=0.5
    )
    used = [(await pool.turn(Limited)).key.secret for _ in range(3)]
    assert used == ["a", "b", "c"]  # in rotation
    # 2 a minute is paced 15 s apart: every key's next turn is too far to wait for here.
    with pytest.raises(Limited, match="every key over its request rate") as raised:
        await pool.turn(Limited)
    assert raised.value.retry_after_s is not None
    assert 14 < raised.value.retry_after_s < 15

    fresh = KeyPool(api(("a", "b"), ()), "provider:hunter", cooldowns, max_wait_s=0.5)
    cooldowns.until["provider:hunter:key0"] = time.time() + 5  # a 429 on key a
    assert {(await fresh.turn(Limited)).key.secret for _ in range(4)} == {"b"}
    cooldowns.until["provider:hunter:key1"] = time.time() + 3
    with pytest.raises(Limited, match="cooling down") as cooling:
        await fresh.turn(Limited)
    assert cooling.value.retry_after_s is not None
    assert 2 < cooling.value.retry_after_s <= 3  # the soonest key back


async def test_a_429_cools_only_the_key_that_got_it() -> None:
    cooldowns = FakeCooldowns()
    pool = KeyPool(api(("a", "b"), ()), "provider:hunter", cooldowns, max_wait_s=0.5)
    turn = await pool.turn(Limited)
    assert await turn.key.gate.cool_down(4.0) == 4.0
    assert set(cooldowns.until) == {f"provider:hunter:{turn.key.label}"}


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[list[Store]]:
    stores = [Store(tmp_path / "leadflow.db", durable=False) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


async def test_two_stores_on_one_file_share_a_window(two_stores: list[Store]) -> None:
    now = [5000.0]
    first, second = (StoreLimits(store, clock=lambda: now[0]) for store in two_stores)
    windows = (Window(4, 60.0), Window(100, 86400.0))
    booked = []
    for limits in (first, second, first, second, first, second):
        booked.append((await limits.take("provider:x:key0", windows, 0.0)).booked)
        now[0] += 8.0  # past the pacing (7.5 s for 4 a minute)
    assert booked == [True, True, True, True, False, False]  # 4 a minute, for both together
    now[0] = 5000.0 + 61.0
    assert (await second.take("provider:x:key0", windows, 0.0)).booked


async def test_a_late_request_moves_its_slot(two_stores: list[Store]) -> None:
    now = [1000.0]
    limits = StoreLimits(two_stores[0], clock=lambda: now[0])
    windows = (Window(1, 1.0),)
    turn = await limits.take("t", windows, 0.0)
    now[0] += 0.4  # the request left 0.4 s after its turn
    await limits.sent("t", turn)
    refused = await limits.take("t", windows, 0.0)
    assert 1.0 < refused.wait_s < 1.1  # a span after it really left (not after its turn)


async def test_shared_concurrency_leases_and_releases(two_stores: list[Store]) -> None:
    first, second = (StoreLimits(store) for store in two_stores)
    one = await first.lease("provider:x", 2, 10.0)
    two = await second.lease("provider:x", 2, 10.0)
    assert one is not None
    assert two is not None
    assert await first.lease("provider:x", 2, 10.0) is None
    await second.release("provider:x", two)
    assert await first.lease("provider:x", 2, 10.0) is not None


async def test_a_batch_id_is_found_by_the_same_question_only(two_stores: list[Store]) -> None:
    batches = StoreBatches(two_stores[0])
    await batches.remember("dropcontact", "fp1", "req-1", "job-1")
    assert await StoreBatches(two_stores[1]).submitted("dropcontact", "fp1") == "req-1"
    assert await batches.submitted("dropcontact", "fp2") is None
    assert await batches.submitted("hunter", "fp1") is None


async def test_a_submission_in_flight_at_a_crash_is_told_apart(two_stores: list[Store]) -> None:
    died, redelivered = StoreBatches(two_stores[0]), StoreBatches(two_stores[1])
    await died.submitting("dropcontact", "fp1", "job-1")  # then killed before the answer
    watch_submissions()
    assert await redelivered.submitted("dropcontact", "fp2") is None
    assert not submission_was_in_flight()  # never submitted: the vendor has not seen it
    assert await redelivered.submitted("dropcontact", "fp1") is None  # submitted again
    assert submission_was_in_flight()
    await redelivered.remember("dropcontact", "fp1", "req-2", "job-1")
    watch_submissions()
    assert await died.submitted("dropcontact", "fp1") == "req-2"  # polled
    assert not submission_was_in_flight()


async def test_the_ledger_records_the_key_a_call_went_with(tmp_path: Path) -> None:
    store = Store(tmp_path / "leadflow.db")
    await store.open()
    try:
        await store.transaction(
            lambda conn: conn.execute(
                "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at,"
                " spec) VALUES ('j', 't', 'enrich', 'running', 'normal', 2,"
                " '2026-01-01T00:00:00Z', x'7b7d')"
            )
        )
        pool = KeyPool(api(("a", "b"), ()), "provider:pdl", FakeCooldowns(), max_wait_s=0.5)
        spending = Spending(store, 0, kinds={"pdl": "pdl"}, keys={"pdl": "a"})
        for _ in range(2):  # the second call goes with the pool's second key
            call, _ = await spending.reserve("pdl", "j", "t", 1, ["fp"])
            await pool.turn(Limited)
            await spending.settle(call, ["fp"], [{"email": "ada@x.io"}])
        rows = await store.transaction(
            lambda conn: conn.execute(
                "SELECT key_id, credits FROM credit_calls ORDER BY reserved_at"
            ).fetchall()
        )
        assert [tuple(row) for row in rows] == [(key_id("a"), 1), (key_id("b"), 1)]
    finally:
        await store.close()
