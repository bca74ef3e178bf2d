"""What the gRPC attacks aim at: every method of every hub service, enumerated
from the generated descriptors (a new method is probed without editing the
suite), callable without a stub; the hubs' servers started in-process on the
test's namespace; and tokens forged every way the classic JWT attacks forge
them, each with the words the refusal must contain."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import pkgutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

import schemas.protos
from base.settings import Settings
from infra.grpc_server import RunningServer
from infra.security import Keyring, TokenIssuer
from poseidon import roles


@dataclass(frozen=True)
class Method:
    hub: str
    descriptor: MethodDescriptor

    @property
    def path(self) -> str:
        """`/poseidon.wallet.v1.WalletQuery/GetBalance`, as the server routes it."""
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def fields(self) -> dict[str, FieldDescriptor]:
        return {f.name: f for f in self.descriptor.input_type.fields}

    def request(self, **values):
        cls = message_factory.GetMessageClass(self.descriptor.input_type)
        return cls(**values)

    def callable(self, channel: grpc.aio.Channel):
        out = message_factory.GetMessageClass(self.descriptor.output_type)
        return channel.unary_unary(
            self.path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out.FromString
        )

    def __str__(self) -> str:
        return self.path


def hub_methods() -> list[Method]:
    """Every method of every service in schemas/protos/<hub>_pb2.py, hub by file name."""
    found = []
    for info in pkgutil.iter_modules(schemas.protos.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"schemas.protos.{info.name}")
        hub = info.name.removesuffix("_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            found += [Method(hub, m) for m in service.methods]
    return sorted(found, key=lambda m: m.path)


@asynccontextmanager
async def hub_servers(settings: Settings, hubs: Iterable[str]) -> AsyncIterator[dict[str, RunningServer]]:
    """The hubs' gRPC servers in this process, on the namespace's ports."""
    servers: dict[str, RunningServer] = {}
    try:
        for hub in hubs:
            servers[hub] = await roles.start_grpc(hub, settings)
        yield servers
    finally:
        for server in servers.values():
            await server.stop(grace=0)


# ---------------------------------------------------------------- forged tokens


def _b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(settings: Settings, subject: str, now: float, **changes) -> dict:
    return {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "kind": "user",
        "scope": "platform",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 600,
        "jti": str(uuid.uuid4()),
        **changes,
    }


def forged_tokens(settings: Settings, subject: str = "attacker") -> dict[str, tuple[tuple, str]]:
    """attack → (gRPC metadata carrying it, words the UNAUTHENTICATED details must hold).
    Every forged token claims the platform scope, so accepting one would be total."""
    keyring = Keyring(settings.keys_dir)
    kid, key = keyring.signing_key()
    now = time.time()
    claims = _claims(settings, subject, now)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    hs_body = _b64(claims)
    hs_signature = _b64(hmac.new(public_pem, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = ec.generate_private_key(ec.SECP256R1())
    genuine = TokenIssuer(keyring, settings).access_token(subject, "user", ())
    head, _, signature = genuine.split(".")

    def es256(changes: dict | None = None, *, signer=key, headers=None, drop: str = "") -> str:
        body = {**claims, **(changes or {})}
        body.pop(drop, None)
        return jwt.encode(body, signer, algorithm="ES256", headers=headers or {"kid": kid})

    tokens = {
        "alg none": (jwt.encode(claims, None, algorithm="none", headers={"kid": kid}), "algorithm 'none' is not accepted"),
        "HS256 keyed with the ES256 public key (alg confusion)": (
            f"{hs_head}.{hs_body}.{hs_signature}",
            "algorithm 'HS256' is not accepted",
        ),
        "RS256 signed by an attacker's RSA key": (
            jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": kid}),
            "algorithm 'RS256' is not accepted",
        ),
        "expired": (es256({"exp": int(now) - 120, "iat": int(now) - 900, "nbf": int(now) - 900}), "token expired"),
        "not valid yet (nbf in the future)": (es256({"nbf": int(now) + 3600}), "token not valid yet"),
        "issued in the future (iat)": (es256({"iat": int(now) + 3600}), "token not valid yet"),
        "wrong audience": (es256({"aud": "another-platform"}), "token audience is not this platform"),
        "wrong issuer": (es256({"iss": "evil-idp"}), "token issuer is not trusted"),
        "unknown kid": (es256(headers={"kid": "k-does-not-exist"}), "unknown signing key id"),
        "no kid": (es256(headers={"typ": "JWT"}), "unknown signing key id"),
        "our kid, a stranger's ES256 key": (es256(signer=stranger), "invalid token"),
        "tampered payload (signature of another payload)": (f"{head}.{_b64(claims)}.{signature}", "invalid token"),
        "no exp claim": (es256(drop="exp"), "invalid token"),
        "garbage token": ("not.a.jwt", "malformed token"),
        "empty segments": ("..", "malformed token"),
    }
    metadata = {name: ((("authorization", f"Bearer {token}"),), words) for name, (token, words) in tokens.items()}
    metadata.update(
        {
            "no authorization metadata": ((), "missing bearer token"),
            "Basic scheme": ((("authorization", "Basic YWRtaW46YWRtaW4="),), "must be 'Bearer <token>'"),
            "Bearer without token": ((("authorization", "Bearer "),), "must be 'Bearer <token>'"),
            "token without scheme": ((("authorization", genuine),), "must be 'Bearer <token>'"),
            "token in another header": ((("x-token", f"Bearer {genuine}"),), "missing bearer token"),
        }
    )
    return metadata
