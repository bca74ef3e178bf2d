"""The delivery state machine of outbound messages, every pair of statuses against
a table written out here (not derived from the module), plus the properties the
table is meant to have."""

from __future__ import annotations

import itertools

import pytest

from hubs.message.delivery import RECEIVED, STATUSES, TRANSITIONS, can_move

ALLOWED = {
    ("queued", "sending"),  # a spoke records its intent before the call
    ("sending", "sent"),
    ("sending", "delivered"),
    ("sending", "read"),
    ("sending", "failed"),
    ("failed", "sending"),  # a retry may go straight to a new attempt
    ("queued", "sent"),
    ("queued", "delivered"),  # a delivery receipt may overtake the send report
    ("queued", "read"),
    ("queued", "failed"),
    ("sent", "delivered"),
    ("sent", "read"),  # a read receipt implies delivery
    ("sent", "failed"),
    ("delivered", "read"),
    ("failed", "queued"),  # the retry
}
ORDER = ("queued", "sending", "sent", "delivered", "read")


def test_the_statuses_are_exactly_queued_sending_sent_delivered_read_and_failed():
    assert STATUSES == ("queued", "sending", "sent", "delivered", "read", "failed")
    assert set(TRANSITIONS) == set(STATUSES)


@pytest.mark.parametrize(("current", "new"), list(itertools.product(STATUSES, STATUSES)))
def test_each_pair_of_statuses_is_allowed_exactly_when_the_table_says_so(current, new):
    assert can_move(current, new) == ((current, new) in ALLOWED)


@pytest.mark.parametrize("status", STATUSES)
def test_no_status_moves_to_itself(status):
    assert not can_move(status, status)


def test_along_queued_sent_delivered_read_a_status_never_goes_back():
    for i, j in itertools.combinations(range(len(ORDER)), 2):
        assert not can_move(ORDER[j], ORDER[i]), f"{ORDER[j]} → {ORDER[i]} goes back"


def test_read_is_terminal_and_failed_only_retries_to_queued_or_a_new_attempt():
    assert [s for s in STATUSES if can_move("read", s)] == []
    assert [s for s in STATUSES if can_move("failed", s)] == ["queued", "sending"]


def test_a_delivered_or_read_message_can_no_longer_fail():
    assert not can_move("delivered", "failed")
    assert not can_move("read", "failed")


@pytest.mark.parametrize("status", STATUSES)
def test_received_is_no_delivery_status_and_nothing_moves_to_or_from_it(status):
    assert RECEIVED not in STATUSES
    assert not can_move(RECEIVED, status)
    assert not can_move(status, RECEIVED)


def test_an_unknown_status_moves_nowhere():
    assert not can_move("bounced", "queued")
    assert not can_move("queued", "bounced")
