"""base.pii: the masking of emails, phones and names that logs, rejection
reasons and the member directory rely on, over hand-picked and arbitrary inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.pii import mask_email, mask_name, mask_phone


@pytest.mark.parametrize(
    "email, masked",
    [
        ("alice@example.com", "a***@example.com"),
        ("a@b.co", "a***@b.co"),
        ("Alice.Martin+news@mail.example.co.uk", "A***@mail.example.co.uk"),
        ("o'brien@example.ie", "o***@example.ie"),
        ("zoë@example.fr", "z***@example.fr"),
        ("", ""),
        ("alice", "***"),
        ("@example.com", "***"),
        ("alice@", "***"),
        ("al ice@example.com", "***"),
        ("alice@exa mple.com", "***"),
        ("alice\n@example.com", "***"),
    ],
)
def test_an_email_keeps_its_first_character_and_domain_and_anything_else_is_fully_masked(email, masked):
    assert mask_email(email) == masked


def test_an_address_with_two_ats_keeps_only_what_follows_the_last_one():
    assert mask_email("alice@bob@example.com") == "a***@example.com"


@pytest.mark.parametrize(
    "phone, masked",
    [
        ("+33612345678", "+33******78"),
        ("+14155552671", "+14******71"),
        ("+447911123456", "+44******56"),
        ("+123456789012345", "+12******45"),
        ("+12345678", "+12******78"),
        ("+33 6 12 34 56 78", "+33******78"),
        ("0612345678", "+06******78"),
        ("", ""),
        ("+1234567", "***"),
        ("+6834002", "***"),
        ("+", "***"),
        ("call me", "***"),
        ("+٣٣٦١٢٣٤٥٦٧٨", "***"),
    ],
)
def test_a_phone_keeps_two_leading_and_two_trailing_digits_behind_a_fixed_mask(phone, masked):
    assert mask_phone(phone) == masked


def test_the_phone_mask_hides_the_length_of_the_number():
    assert len(mask_phone("+12345678")) == len(mask_phone("+123456789012345"))


@pytest.mark.parametrize(
    "name, masked",
    [
        ("Alice Martin", "A*** M***"),
        ("Alice", "A***"),
        ("Jean-Luc Picard", "J*** P***"),
        ("  Zoë   Ångström ", "Z*** Å***"),
        ("李小龙", "李***"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_a_name_keeps_the_initial_of_each_word(name, masked):
    assert mask_name(name) == masked


LOCAL = st.text(alphabet=st.characters(categories=("L", "N"), include_characters="._+-"), min_size=2, max_size=40)
LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)


@settings(max_examples=300)
@given(LOCAL, st.lists(LABEL, min_size=2, max_size=4))
def test_a_masked_email_never_shows_the_local_part_beyond_its_first_character(local, labels):
    domain = ".".join(labels)

    masked = mask_email(f"{local}@{domain}")

    assert masked == f"{local[0]}***@{domain}"
    assert local[1:] not in masked.split("@")[0][1:]


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=8, max_size=15))
def test_a_masked_phone_shows_at_most_four_digits_of_any_number(digits):
    masked = mask_phone(f"+{digits}")

    assert masked == f"+{digits[:2]}******{digits[-2:]}"


@settings(max_examples=300)
@given(st.text())
def test_every_mask_is_total_and_never_returns_its_input_unless_empty(text):
    for mask in (mask_email, mask_phone, mask_name):
        masked = mask(text)
        assert isinstance(masked, str)
        if text.strip() and len(text) > 1:
            assert masked != text or "***" in text
