"""FairSlots: capacity, the per-tenant limit, priority order, cancellation."""

from __future__ import annotations

import asyncio

from shared.slots import FairSlots


async def test_high_priority_waiters_go_first_then_arrival_order() -> None:
    slots = FairSlots(capacity=1, per_tenant=1)
    await slots.acquire("normal", "busy")
    order: list[str] = []

    async def wait(name: str, priority: str, tenant: str) -> None:
        await slots.acquire(priority, tenant)
        order.append(name)
        slots.release(tenant)

    tasks = []
    for name, priority, tenant in [
        ("low1", "low", "a"),
        ("low2", "low", "b"),
        ("high", "high", "c"),
        ("normal", "normal", "d"),
    ]:
        tasks.append(asyncio.create_task(wait(name, priority, tenant)))
        await asyncio.sleep(0)
    slots.release("busy")
    await asyncio.gather(*tasks)
    assert order == ["high", "normal", "low1", "low2"]


async def test_a_tenant_at_its_limit_is_skipped_for_the_next_one() -> None:
    slots = FairSlots(capacity=3, per_tenant=2)
    await slots.acquire("normal", "big")
    await slots.acquire("normal", "big")
    granted: list[str] = []

    async def wait(name: str, tenant: str) -> None:
        await slots.acquire("high", tenant)
        granted.append(name)

    big = asyncio.create_task(wait("big-3", "big"))
    await asyncio.sleep(0)
    small = asyncio.create_task(wait("small", "small"))
    await asyncio.wait_for(small, 1)
    assert granted == ["small"], "the big tenant is at its limit of 2; the slot goes on"
    assert not big.done()
    slots.release("big")
    await asyncio.wait_for(big, 1)
    assert granted == ["small", "big-3"]


async def test_a_cancelled_waiter_gives_up_its_turn() -> None:
    slots = FairSlots(capacity=1, per_tenant=1)
    await slots.acquire("normal", "a")
    gone = asyncio.create_task(slots.acquire("high", "b"))
    after = asyncio.create_task(slots.acquire("low", "c"))
    await asyncio.sleep(0)
    gone.cancel()
    slots.release("a")
    await asyncio.wait_for(after, 1)
    assert gone.cancelled()


async def test_a_waiter_past_the_maximum_wait_goes_before_higher_priorities() -> None:
    now = [0.0]
    slots = FairSlots(capacity=1, per_tenant=5, max_wait_s=300, clock=lambda: now[0])
    await slots.acquire("normal", "busy")
    order: list[str] = []

    async def wait(name: str, priority: str) -> None:
        await slots.acquire(priority, "t")
        order.append(name)

    old_low = asyncio.create_task(wait("old-low", "low"))
    await asyncio.sleep(0)
    now[0] = 200.0
    high = asyncio.create_task(wait("high", "high"))
    await asyncio.sleep(0)
    slots.release("busy")  # the low one waited 200 s only: priority decides
    await asyncio.wait_for(high, 1)
    assert order == ["high"]

    new_high = asyncio.create_task(wait("new-high", "high"))
    await asyncio.sleep(0)
    now[0] = 301.0
    slots.release("t")  # now it waited past 300 s: it goes before the newer high one
    await asyncio.wait_for(old_low, 1)
    assert order == ["high", "old-low"]
    slots.release("t")
    await asyncio.wait_for(new_high, 1)
    assert order == ["high", "old-low", "new-high"]


async def test_an_overdue_waiter_still_respects_its_tenants_limit() -> None:
    now = [0.0]
    slots = FairSlots(capacity=2, per_tenant=1, max_wait_s=1, clock=lambda: now[0])
    await slots.acquire("normal", "big")
    await slots.acquire("normal", "other")
    order: list[str] = []

    async def wait(name: str, tenant: str) -> None:
        await slots.acquire("low", tenant)
        order.append(name)

    big = asyncio.create_task(wait("big-2", "big"))
    await asyncio.sleep(0)
    now[0] = 10.0
    small = asyncio.create_task(wait("small", "small"))
    await asyncio.sleep(0)
    slots.release("other")  # big-2 is overdue but big is at its limit: small goes
    await asyncio.wait_for(small, 1)
    assert order == ["small"]
    assert not big.done()
    slots.release("big")
    await asyncio.wait_for(big, 1)
    assert order == ["small", "big-2"]
