"""The outside systems misbehave for a while — Botpress erroring, then timing out,
Facebook rate limiting (429 with Retry-After), then slow — while traffic flows:
the breakers open and close again (BreakerStateChanged on `spoke.<name>.events`,
the breaker metric back at closed), and every message is still answered exactly once."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest

from poseidon import bootstrap
from tests.chaos.world import (
    charge_findings,
    charges,
    check_message_path,
    during,
    message_world,
    saga_states,
    say,
    send_traffic,
)
from tests.harness import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


async def test_failing_outside_systems_open_and_close_the_breakers_and_every_message_is_answered_once(platform, chaos):
    rng = chaos.rng
    async with message_world(platform) as world:
        bp, fb = world.bp.state, world.fb.state

        async def spell(what: str, start, stop) -> None:
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            seconds = rng.uniform(8.0, 14.0)
            start()
            say(f"{what} for {seconds:.0f}s")
            await asyncio.sleep(seconds)
            stop()
            chaos.did.append(f"{what} for {seconds:.0f}s")

        async def misbehave() -> None:
            await spell("Botpress answers 500", lambda: bp.fail("500", count=100_000), bp.faults.clear)
            await spell(
                "Facebook Send API answers 429 (code 4, Retry-After: 1)", lambda: fb.fail("429", retry_after=1), fb.clear_faults
            )
            await spell(
                "Botpress answers after 7 s (client timeout 5 s)",
                lambda: bp.fail("slow", count=100_000, delay_s=7.0),
                bp.faults.clear,
            )
            await spell("Facebook Send API answers after 2 s", lambda: fb.fail("slow", delay_s=2.0), fb.clear_faults)

        hooks = await during(lambda stop: send_traffic(world, per_s=1.0, tag="outside", stop=stop, max_count=120), misbehave())
        chaos.did.insert(0, "webhooks at 1/s throughout, while in turn:")
        found = await check_message_path(world, hooks, timeout=360)
        wallet, sagas = await charges(world, found.accepted)
        transitions = await breaker_transitions(world.settings)
        metric = {name: breaker_metric(platform.procs[f"spoke-{name}"].ops_port) for name in ("botpress", "facebook")}
        chaos.figures.update(
            messages=found.line(),
            breakers="; ".join(f"{scope}: {' → '.join(states)}" for scope, states in transitions.items()) or "never changed",
            **{"breaker metric at the end": metric, "sagas": saga_states(sagas)},
        )
        chaos.found += found.problems()
        chaos.found += charge_findings(wallet, sagas, found.answered)
        for system in ("botpress", "facebook-graph"):
            states = [s for scope, ss in transitions.items() if scope.startswith(system) for s in ss]
            if "open" not in states:
                chaos.found.append(f"the {system} breaker never opened")
            elif states[-1] != "closed":
                chaos.found.append(f"the {system} breaker ended {states[-1]}")
        assert not found.problems(), chaos.found
        assert not charge_findings(wallet, sagas, found.answered)
        for system in ("botpress", "facebook-graph"):
            states = [s for scope, ss in transitions.items() if scope.startswith(system) for s in ss]
            assert "open" in states and states[-1] == "closed", (system, transitions)
        assert all(v in (0.0, None) for samples in metric.values() for v in samples.values()), metric


async def breaker_transitions(settings) -> dict[str, list[str]]:
    """`system/scope` → its breaker's states in order, from BreakerStateChanged on every spoke's events topic."""
    codec = bootstrap.codec(settings)
    found: dict[str, list[str]] = {}
    for spoke in bootstrap.spokes():
        for record in await read_topic(settings, settings.topic(f"spoke.{spoke}.events"), timeout=60):
            decoded = codec.decode(record.value)
            if decoded.name.endswith(".BreakerStateChanged"):
                r = decoded.record
                found.setdefault(f"{r['system']}/{r['scope']}", []).append(r["state"])
    return found


def breaker_metric(ops_port: int) -> dict[str, float]:
    """The breaker samples of one spoke process: `poseidon_breaker_state{system,scope}`
    (scope `shared` or `tenant`, the worst per-tenant breaker; 0 closed, 1 half-open,
    2 open) and `poseidon_breakers_open{system}`; all 0 once every breaker closed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = re.findall(r"^(poseidon_breaker_state|poseidon_breakers_open)(\{[^}]*\}) (\S+)$", text, re.MULTILINE)
    return {name + labels: float(value) for name, labels, value in samples}
