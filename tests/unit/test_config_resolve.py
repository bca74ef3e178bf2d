"""Which config value is in effect: the pure resolution (tenant over environment
over global, unset scopes do not count) and the reconstruction of the value in
effect at a past moment from the recorded changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubs.config.resolve import Change, ScopedValue, effective, effective_at, effective_by_key, value_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "messaging.send_timeout_ms"
SCOPE_IDS = {"global": "", "environment": "production", "tenant": "tenant-a"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def value(scope_kind: str, value_json: str | None, key: str = KEY, version: int = 1, minutes: float = 0) -> ScopedValue:
    return ScopedValue(scope_kind, SCOPE_IDS[scope_kind], key, value_json, version, at(minutes))


def change(scope_kind: str, version: int, minutes: float, value_json: str | None, key: str = KEY) -> Change:
    return Change(scope_kind, SCOPE_IDS[scope_kind], key, version, at(minutes), value_json)


# -- now ---------------------------------------------------------------------


def test_a_global_value_is_in_effect_when_nothing_overrides_it():
    assert effective([value("global", "100")]) == value("global", "100")


def test_an_environment_value_overrides_the_global_one():
    assert effective([value("global", "100"), value("environment", "200")]).value_json == "200"


def test_a_tenant_value_overrides_environment_and_global_whatever_the_order_given():
    values = [value("tenant", "300"), value("global", "100"), value("environment", "200")]

    winner = effective(values)

    assert (winner.scope_kind, winner.scope_id, winner.value_json) == ("tenant", "tenant-a", "300")
    assert effective(reversed(values)) == winner


def test_a_scope_where_the_key_is_unset_does_not_count():
    values = [value("global", "100"), value("environment", "200", version=2), value("tenant", None, version=3)]

    assert effective(values).scope_kind == "environment"
    assert effective([value("global", "100"), value("environment", None)]).scope_kind == "global"


def test_no_value_at_any_scope_resolves_to_nothing():
    assert effective([]) is None
    assert effective([value("global", None), value("tenant", None)]) is None


def test_two_values_of_one_scope_kind_are_refused_rather_than_guessed():
    other_tenant = ScopedValue("tenant", "tenant-b", KEY, "999", 1, T0)

    with pytest.raises(ValueError, match="two tenant values"):
        effective([value("tenant", "300"), other_tenant])


def test_an_unknown_scope_kind_is_refused():
    with pytest.raises(ValueError, match="unknown scope kind"):
        effective([ScopedValue("region", "eu", KEY, "1", 1, T0)])


def test_effective_by_key_resolves_each_key_on_its_own_in_key_order_and_leaves_out_unset_keys():
    values = [
        value("tenant", "3", key="b.key"),
        value("global", "1", key="b.key"),
        value("global", "1", key="a.key"),
        value("environment", "2", key="a.key"),
        value("tenant", None, key="c.key"),
    ]

    result = effective_by_key(values)

    assert list(result) == ["a.key", "b.key"]
    assert (result["a.key"].scope_kind, result["b.key"].scope_kind) == ("environment", "tenant")


# -- at a past moment -----------------------------------------------------------

TIMELINE = [
    change("global", 1, 0, "100"),
    change("tenant", 1, 10, "300"),
    change("global", 2, 20, "150"),
    change("tenant", 2, 30, None),
    change("environment", 1, 40, "200"),
]


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (-1, None),
        (0, ("global", "100", 1)),
        (5, ("global", "100", 1)),
        (10, ("tenant", "300", 1)),
        (25, ("tenant", "300", 1)),
        (30, ("global", "150", 2)),
        (39.99, ("global", "150", 2)),
        (40, ("environment", "200", 1)),
        (10_000, ("environment", "200", 1)),
    ],
)
def test_the_value_in_effect_at_a_moment_is_reconstructed_from_the_changes_up_to_it(minutes, expected):
    winner = effective_at(TIMELINE, at(minutes))

    assert (None if winner is None else (winner.scope_kind, winner.value_json, winner.version)) == expected


def test_a_change_made_exactly_at_the_moment_asked_counts():
    assert effective_at([change("global", 1, 5, "1")], at(5)).value_json == "1"
    assert effective_at([change("global", 1, 5, "1")], at(4.999)) is None


def test_value_at_gives_each_scopes_latest_change_by_version_whatever_the_order_of_the_rows():
    rows = list(reversed(TIMELINE))

    scopes = value_at(rows, at(35))

    assert [(v.scope_kind, v.value_json, v.version, v.changed_at) for v in scopes] == [
        ("global", "150", 2, at(20)),
        ("tenant", None, 2, at(30)),
    ]


def test_the_reconstructed_value_carries_the_version_and_time_of_the_change_that_made_it():
    winner = effective_at(TIMELINE, at(25))

    assert (winner.version, winner.changed_at, winner.scope_id) == (1, at(10), "tenant-a")


# -- reconstruction agrees with replaying the changes in order -----------------------

changes_strategy = st.lists(
    st.tuples(st.sampled_from(["global", "environment", "tenant"]), st.one_of(st.none(), st.sampled_from(["1", "2", "3"]))),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(steps=changes_strategy, probe=st.integers(min_value=-1, max_value=31))
def test_reconstruction_at_any_moment_equals_the_state_replayed_up_to_that_moment(steps, probe):
    versions: dict[str, int] = {}
    changes: list[Change] = []
    current: dict[str, str | None] = {}
    state_at_probe: dict[str, str | None] = {}
    for minute, (scope_kind, new_value) in enumerate(steps):
        versions[scope_kind] = versions.get(scope_kind, 0) + 1
        changes.append(change(scope_kind, versions[scope_kind], minute, new_value))
        current[scope_kind] = new_value
        if minute <= probe:
            state_at_probe = dict(current)

    winner = effective_at(changes, at(probe))

    expected = next((state_at_probe[s] for s in ("tenant", "environment", "global") if state_at_probe.get(s) is not None), None)
    assert (winner.value_json if winner else None) == expected
