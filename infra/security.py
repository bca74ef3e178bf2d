"""Authentication and authorisation shared by every gRPC service: ES256 signing
keys with ids (rotation without invalidating live tokens), token issue and
verification (algorithm fixed, so `none` and HS/RS confusion are refused), the
caller's principal for the current call, and the role check against the Tenant
hub's memberships. It decides nothing about any hub's data."""

from __future__ import annotations

import contextvars
import ipaddress
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from base.settings import Settings

ALGORITHM = "ES256"
ROLES = ("viewer", "agent", "admin", "owner")
"""Tenant roles, weakest first: a role may do everything the ones before it may."""
PLATFORM_SCOPE = "platform"
"""Scope of platform service principals (sagas, the router): every tenant, as owner."""


class Unauthenticated(Exception):
    """No usable credentials: missing, malformed, expired, badly signed token…"""


class PermissionDenied(Exception):
    """Authenticated, but not allowed to do this in this tenant."""


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str
    """`user` or `service`."""
    scopes: frozenset[str] = frozenset()
    token_id: str = ""


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("poseidon_principal", default=None)


def current_principal() -> Principal:
    """The caller of the gRPC call being served (set by the guard interceptor)."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def set_current_principal(principal: Principal | None) -> contextvars.Token:
    return _current.set(principal)


PUBLIC_FOLDER = "public"
"""Where a keyring publishes its public keys by default (`<keys dir>/public/<kid>.pem`)."""


class Keyring:
    """The issuer's side: ES256 private keys in a folder, one `<kid>.pem` each; only
    the Identity hub (and `poseidon token issue`) holds one. The newest kid signs.
    Every key's public half is published as `<kid>.pem` in the public folder, which
    is all a verifier reads (`PublicKeys`): after `rotate()` tokens signed by the
    previous key stay valid until they expire; `remove(kid)` revokes it everywhere."""

    def __init__(self, folder: str | Path, public_folder: str | Path | None = None):
        self.folder = Path(folder)
        self.public_folder = Path(public_folder) if public_folder is not None else self.folder / PUBLIC_FOLDER
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._loaded_at = 0.0
        self._stamp: int | None = -1

    @classmethod
    def of(cls, settings: Settings) -> Keyring:
        return cls(settings.keys_dir, settings.public_keys_dir)

    def _load(self) -> None:
        self._private = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.pem")):
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise ValueError(f"{path} is not an EC key")
                self._private[path.stem] = key
                self._publish(path.stem, key)
        self._loaded_at = time.monotonic()

    def _publish(self, kid: str, key: ec.EllipticCurvePrivateKey) -> None:
        """Write the public half where verifiers read it (once; written whole, then renamed in)."""
        target = self.public_folder / f"{kid}.pem"
        if target.exists():
            return
        self.public_folder.mkdir(parents=True, exist_ok=True)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        partial = self.public_folder / f".{kid}.pem.{os.getpid()}"
        partial.write_bytes(pem)
        partial.replace(target)

    def remove(self, kid: str) -> bool:
        """Revoke a key: its private and public files go; every verifier drops it
        within `PublicKeys.RECHECK_S` and refuses the tokens it signed. False when
        no such key."""
        found = False
        for path in (self.folder / f"{kid}.pem", self.public_folder / f"{kid}.pem"):
            if path.exists():
                path.unlink()
                found = True
        self._load()
        return found

    def rotate(self) -> str:
        """Create a new signing key; returns its kid. Kids sort by creation time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        now_ns = time.time_ns()
        # Sortable to the nanosecond: the newest key must also be the greatest kid.
        kid = f"k{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now_ns / 1e9))}{now_ns % 10**9:09d}"
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = self.folder / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        self._load()
        return kid

    def _reload_if_changed(self) -> None:
        # `poseidon token rotate` adds a key from another process: sign with it
        # as soon as the folder changes (one stat per call, no re-read otherwise).
        try:
            stamp = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._load()

    def signing_key(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        self._reload_if_changed()
        if not self._private:
            self.rotate()  # first start of a development stack: make the first key
        kid = max(self._private)
        return kid, self._private[kid]

    def public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        self._reload_if_changed()
        key = self._private.get(kid)
        return key.public_key() if key is not None else None

    def kids(self) -> list[str]:
        self._reload_if_changed()
        return sorted(self._private)


class PublicKeys:
    """The verifier's side: ES256 public keys, one `<kid>.pem` each, in a folder
    (the keyring's public folder, or a mount of it). Never a private key: a file
    holding one is refused. The folder is re-read when its listing changes, checked
    at most every RECHECK_S, so a key added by a rotation verifies and a removed
    key stops verifying in every running process within that time."""

    RECHECK_S = 1.0
    UNKNOWN_RECHECK_S = 0.0
    """A kid not known yet (a rotation a moment ago) lists the folder again at once: a
    listing of a few files costs less than the token's parsing, so a flood of made-up
    kids buys an attacker nothing (the file is read only when the listing changed)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._stamp: tuple | None = None
        self._checked_at = -float("inf")

    def _listing(self) -> tuple:
        try:
            with os.scandir(self.folder) as entries:
                return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries if e.name.endswith(".pem")))
        except FileNotFoundError:
            return ()

    def _refresh(self, interval: float | None = None) -> None:
        now = time.monotonic()
        if now - self._checked_at < (self.RECHECK_S if interval is None else interval):
            return
        self._checked_at = now
        listing = self._listing()
        if listing == self._stamp:
            return
        keys = {}
        for name, _, _ in listing:
            path = self.folder / name
            data = path.read_bytes()
            if b"PRIVATE KEY" in data:
                raise ValueError(f"{path} holds a private key: a verifier's folder holds public keys only")
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError(f"{path} is not an EC public key")
            keys[path.stem] = key
        self._keys, self._stamp = keys, listing

    def get(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        self._refresh()
        if kid not in self._keys:
            self._refresh(self.UNKNOWN_RECHECK_S)
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        self._refresh()
        return sorted(self._keys)


class TokenIssuer:
    """Signs access tokens (used by the Identity hub, and by tests)."""

    def __init__(self, keyring: Keyring, settings: Settings):
        self.keyring, self.settings = keyring, settings

    def access_token(
        self,
        principal_id: str,
        kind: str = "user",
        scopes: Iterable[str] = (),
        ttl_s: int | None = None,
        now: float | None = None,
    ) -> str:
        kid, key = self.keyring.signing_key()
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": principal_id,
            "kind": kind,
            "scope": " ".join(sorted(scopes)),
            "iat": issued,
            "nbf": issued,
            "exp": issued + (ttl_s if ttl_s is not None else self.settings.access_token_ttl_s),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


class TokenVerifier:
    """Checks access tokens against public keys only (`PublicKeys`)."""

    CACHE_SIZE = 10_000

    def __init__(self, keys: PublicKeys, settings: Settings, leeway_s: int = 5):
        self.keys, self.settings, self.leeway_s = keys, settings, leeway_s
        # A token is immutable: once its signature and claims checked out, only
        # its expiry or the removal of its key can change the answer. Saves an
        # ECDSA verify per call.
        self._verified: dict[str, tuple[Principal, float, str]] = {}

    @classmethod
    def of(cls, settings: Settings) -> TokenVerifier:
        """The verifier of a process that verifies but never signs (every gRPC server, the dashboard)."""
        return cls(PublicKeys(settings.public_keys_dir), settings)

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            principal, expires_at, kid = hit
            if time.time() < expires_at + self.leeway_s and self.keys.get(kid) is not None:
                return principal
            del self._verified[token]
        principal, expires_at, kid = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires_at, kid)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None
        # Checked before anything else: `none`, HS256-with-the-public-key and
        # every other algorithm are refused whatever the token claims.
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated(f"unknown signing key id {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience is not this platform") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer is not trusted") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        scopes = frozenset(s for s in str(claims.get("scope", "")).split() if s)
        principal = Principal(
            id=str(claims["sub"]), kind=str(claims.get("kind", "user")), scopes=scopes, token_id=str(claims.get("jti", ""))
        )
        return principal, float(claims["exp"]), kid


class AddressSet:
    """Trusted proxies: exact addresses or networks (`10.0.0.0/8`, `fd00::/8`), as a
    Kubernetes pod network needs. Anything that is not an IP address is in no set."""

    def __init__(self, entries: Iterable[str]):
        self.networks = tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.ip_address(str(address).strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated("missing bearer token (metadata 'authorization: Bearer <token>')")


class Authorizer:
    """Checks the caller's role in a tenant with the role lookup it is given (the
    composition root hands it the Tenant read model's `role_lookup`), live, so a
    membership change applies to the very next call. A tenant the caller is not a
    member of is refused exactly like one that does not exist: no answer reveals
    other tenants."""

    def __init__(self, role_of: Callable[[str, str], Awaitable[str | None]]):
        self.role_of = role_of

    async def require(self, tenant_id: str, minimum: str = "viewer") -> str:
        """The caller's role in `tenant_id` if it is at least `minimum`."""
        if minimum not in ROLES:
            raise ValueError(f"unknown role {minimum!r}")
        principal = current_principal()
        if PLATFORM_SCOPE in principal.scopes:
            return "owner"
        if not tenant_id:
            raise PermissionDenied("a tenant id is required")
        role = await self.role_of(tenant_id, principal.id)
        if role is None or ROLES.index(role) < ROLES.index(minimum):
            raise PermissionDenied(f"requires role {minimum} or higher in this tenant")
        return role
