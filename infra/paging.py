"""Keyset pagination shared by every gRPC query: page size bounds and opaque
page tokens (the last key seen, behind a format prefix). Tokens are not secrets;
queries still filter by tenant, so a forged token can only skip within the
caller's own data. What a key means, and how it is parsed, stays with the query."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from infra.grpc_server import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 500
VERSION = "v1"
"""The default token prefix; a listing whose tokens predate this module keeps its own (`a1`, `c1`, `m1`)."""
BAD_TOKEN = "page_token is not a token this service issued"

T = TypeVar("T")


def page_size(requested: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    """The request's page size, `default` when unset; INVALID_ARGUMENT outside 1..maximum."""
    size = requested or default
    if not 1 <= size <= maximum:
        raise InvalidArgument(f"page_size must be between 1 and {maximum}, not {size}")
    return size


def encode_token(after: Any, version: str = VERSION) -> str:
    """The token of a page that ended at key `after` (written with str())."""
    return base64.urlsafe_b64encode(f"{version}:{after}".encode()).decode()


def decode_token(token: str, default: str = "", version: str = VERSION) -> str:
    """The key the previous page ended at (a string: convert as the query needs,
    or use parse_token); `default` for the first page (no token)."""
    if not token:
        return default
    try:
        prefix, after = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(BAD_TOKEN) from None
    if prefix != version:
        raise InvalidArgument(BAD_TOKEN)
    return after


def parse_token(token: str, parse: Callable[[str], T], first: T, version: str = VERSION) -> T:
    """The key the previous page ended at, through `parse` (uuid.UUID, int, …);
    `first` for the first page (no token). A key that `parse` refuses with
    ValueError or OverflowError is refused like a token the service never issued."""
    if not token:
        return first
    after = decode_token(token, version=version)
    try:
        return parse(after)
    except (ValueError, OverflowError):
        raise InvalidArgument(BAD_TOKEN) from None


def paginate(rows: Sequence, size: int, key: str | Callable[[Any], Any], version: str = VERSION) -> tuple[list, str]:
    """Rows fetched with LIMIT size + 1 → (this page, next token or ""). `key` is
    the column of the last row the next page starts after, or a function of that row."""
    page = list(rows[:size])
    if len(rows) <= size:
        return page, ""
    last = page[-1]
    return page, encode_token(key(last) if callable(key) else last[key], version)
