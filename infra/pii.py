"""Masking of personal data (email, phone, name) for logs, rejection reasons and
read models that must not hold it in clear. Pure: no I/O, total on any string."""

from __future__ import annotations

MASK = "***"
_PHONE_MASK = "******"
_ASCII_DIGITS = frozenset("0123456789")


def mask_email(email: str) -> str:
    """`alice@example.com` → `a***@example.com`: the first character of the local
    part and the domain stay, so a person recognises their own address; anything
    that is not shaped like an address becomes `***` whole."""
    if not email:
        return ""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_phone(phone: str) -> str:
    """`+33612345678` → `+33******78`: two leading and two trailing digits stay and
    a fixed run of stars hides the rest and the length. Fewer than eight digits
    would show half the number, so those become `***` whole."""
    if not phone:
        return ""
    digits = [c for c in phone if c in _ASCII_DIGITS]
    if len(digits) < 8:
        return MASK
    return f"+{''.join(digits[:2])}{_PHONE_MASK}{''.join(digits[-2:])}"


def mask_name(name: str) -> str:
    """`Alice Martin` → `A*** M***`: the initial of each word."""
    return " ".join(f"{word[0]}{MASK}" for word in name.split())
