"""Event provenance: every event a hub's processor writes carries a keyed MAC of
its bytes in the `poseidon-mac` record header, `<kid>:<hex HMAC-SHA256>`; every
reader that applies events (projectors, rebuilds, the router's facts, `audit
verify`) checks it before trusting the event, so a record appended to an events
topic by anyone without the hub's key — however well it imitates the envelope and
the hash chain — is refused and named, not applied.

Keys: HMAC-SHA256 keys per hub, one `<kid>.key` file each (32 random bytes,
base64) in `<POSEIDON_EVENT_KEYS_DIR>/<hub>/` (default `<state dir>/event-keys`),
created 0600 on the processor's first event. The newest kid signs; every key
present verifies, so `rotate()` never strands older events; an unknown kid makes
the reader look at the folder again (a rotation by another process). A MAC key is
symmetric: whoever verifies could also sign, so only the hub's processor and the
readers of its events are given its folder — never the spokes, ingress or
outside callers, who have no business writing events.

The MAC covers the SHA-256 of the stored value — the digest the hash chain links
with (`previous_hash`), so signing costs one HMAC of 32 bytes per event."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from base.settings import Settings

MAC_HEADER = "poseidon-mac"
FIRST_KID = "e0000"
"""The first key's name: processors starting together race to create it with O_EXCL, so one wins and all sign with it."""


class EventKeys:
    """One hub's event MAC keys."""

    def __init__(self, folder: str | Path, hub: str):
        self.folder, self.hub = Path(folder), hub
        self._keys: dict[str, bytes] = {}
        self._loaded_at = -float("inf")

    @classmethod
    def of(cls, settings: Settings, hub: str) -> EventKeys:
        return cls(Path(settings.event_keys_dir or Path(settings.state_dir) / "event-keys") / hub, hub)

    # -- keys -----------------------------------------------------------------

    def _load(self) -> None:
        keys = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.key")):
                try:
                    raw = base64.urlsafe_b64decode(path.read_bytes().strip())
                except (binascii.Error, ValueError):
                    raise ValueError(f"{path} is not a base64 event key") from None
                if len(raw) != 32:
                    raise ValueError(f"{path} must hold a 256-bit key, not {len(raw) * 8} bits")
                keys[path.stem] = raw
        self._keys, self._loaded_at = keys, time.monotonic()

    def _create(self, kid: str) -> None:
        """Write the key whole under a private name, then link it in: the link fails if
        another process made that kid first (use theirs), and nobody ever reads half a key."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.folder / f".{kid}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)))
        try:
            os.link(partial, self.folder / f"{kid}.key")
        except FileExistsError:
            pass  # another process made it: use theirs
        finally:
            partial.unlink()

    def rotate(self) -> str:
        """Add a key that signs from now on; returns its kid (kids sort by creation)."""
        kid = f"e{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}{time.time_ns() % 10**9:09d}"
        self._create(kid)
        self._load()
        return kid

    def kids(self) -> list[str]:
        self._load()
        return sorted(self._keys)

    def _signing(self) -> tuple[str, bytes]:
        if not self._keys:
            self._load()
        if not self._keys:
            self._create(FIRST_KID)
            self._load()
        kid = max(self._keys)
        return kid, self._keys[kid]

    def _key(self, kid: str) -> bytes | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > 0.05:
            self._load()  # a rotation elsewhere; a flood of made-up kids lists the folder 20 times a second at most
            key = self._keys.get(kid)
        return key

    # -- signing and checking ---------------------------------------------------

    def sign(self, digest: bytes) -> tuple[str, bytes]:
        """The header for an event whose stored value has SHA-256 `digest`."""
        kid, key = self._signing()
        return MAC_HEADER, f"{kid}:{hmac.digest(key, digest, 'sha256').hex()}".encode()

    def problem(self, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> str:
        """Why this stored event was not written by this hub's processor ("" when it was)."""
        header = next((v for k, v in headers or () if k == MAC_HEADER), None)
        if header is None:
            return f"no {MAC_HEADER} header: not written by the {self.hub} processor"
        kid, _, mac = bytes(header).decode("ascii", "replace").partition(":")
        key = self._key(kid)
        if key is None:
            return f"{MAC_HEADER} names no key of the {self.hub} hub ({kid[:40]!r})"
        expected = hmac.digest(key, hashlib.sha256(value or b"").digest(), "sha256").hex()
        if not hmac.compare_digest(expected, mac):
            return f"{MAC_HEADER} does not match the record: altered, or forged without the {self.hub} hub's key"
        return ""
