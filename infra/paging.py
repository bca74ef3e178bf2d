"""Keyset pagination shared by every gRPC query: page size bounds and opaque
page tokens (the last key seen). Tokens are not secrets; queries still filter
by tenant, so a forged token can only skip within the caller's own data."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from infra.grpc_server import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 500


def page_size(requested: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    size = requested or default
    if not 1 <= size <= maximum:
        raise InvalidArgument(f"page_size must be between 1 and {maximum}, not {size}")
    return size


def encode_token(after: Any) -> str:
    return base64.urlsafe_b64encode(f"v1:{after}".encode()).decode()


def decode_token(token: str, default: str = "") -> str:
    """The key the previous page ended at (a string: convert as the query needs)."""
    if not token:
        return default
    try:
        prefix, after = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not a token this service issued") from None
    if prefix != "v1":
        raise InvalidArgument("page_token is not a token this service issued")
    return after


def paginate(rows: Sequence, size: int, key: str) -> tuple[list, str]:
    """Rows fetched with LIMIT size + 1 → (this page, next token or "")."""
    page = list(rows[:size])
    return page, encode_token(page[-1][key]) if len(rows) > size else ""
