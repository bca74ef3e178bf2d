"""TLS for the platform's gRPC wires: every gRPC server serves TLS and every client
verifies the server against a CA, by default; with POSEIDON_HTTP_TLS the public HTTP
servers (ingress, REST gateway, dashboard) serve HTTPS with the same certificate. Production points
POSEIDON_TLS_CERT / _KEY / _CA at real files; development and the tests use a
local CA that `poseidon tls init` (run by `make up`, and by the test harness for
each test's state folder) writes to `<state dir>/tls/`: a CA, a server
certificate for 127.0.0.1, ::1 and localhost, and a client certificate for the
optional mutual TLS (POSEIDON_GRPC_MTLS: servers then refuse clients without a
certificate from that CA). POSEIDON_GRPC_TLS=false turns it all off (plaintext),
for a deployment whose mesh terminates TLS itself."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from base.settings import Settings, SettingsError

DEV_HOSTS = ("127.0.0.1", "::1", "localhost")
DEV_VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def files(settings: Settings) -> TlsFiles:
    """Where this installation's certificates are: the settings' paths, else the dev CA's folder."""
    folder = Path(settings.tls_dir or Path(settings.state_dir) / "tls")
    return TlsFiles(
        ca=Path(settings.tls_ca or folder / "ca.pem"),
        cert=Path(settings.tls_cert or folder / "server.pem"),
        key=Path(settings.tls_key or folder / "server-key.pem"),
        client_cert=Path(settings.tls_client_cert or folder / "client.pem"),
        client_key=Path(settings.tls_client_key or folder / "client-key.pem"),
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(
            f"no {what} at {path}: run `poseidon tls init` for a development CA, or point POSEIDON_TLS_* at your "
            "certificates (POSEIDON_GRPC_TLS=false serves plaintext)"
        ) from None


# -- HTTP -------------------------------------------------------------------------------


def http_server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the public HTTP servers (ingress, gateway, dashboard): TLS 1.2
    or newer with the installation's server certificate; None when POSEIDON_HTTP_TLS is off."""
    if not settings.http_tls:
        return None
    f = files(settings)
    _read(f.cert, "TLS certificate"), _read(f.key, "TLS key")  # a clear error before the ssl module's
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(f.cert, f.key)
    return context


def http_scheme(settings: Settings) -> str:
    return "https" if settings.http_tls else "http"


# -- gRPC ------------------------------------------------------------------------------


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The server's TLS credentials (None when POSEIDON_GRPC_TLS is off)."""
    if not settings.grpc_tls:
        return None
    f = files(settings)
    pair = [(_read(f.key, "TLS key"), _read(f.cert, "TLS certificate"))]
    if settings.grpc_mtls:
        return grpc.ssl_server_credentials(pair, root_certificates=_read(f.ca, "TLS CA"), require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def channel(settings: Settings, target: str, **kwargs) -> grpc.aio.Channel:
    """A client channel to `target`: TLS verified against the CA (with this installation's
    client certificate under mutual TLS), or plaintext when POSEIDON_GRPC_TLS is off."""
    if not settings.grpc_tls:
        return grpc.aio.insecure_channel(target, **kwargs)
    f = files(settings)
    chain = key = None
    if settings.grpc_mtls:
        chain, key = _read(f.client_cert, "TLS client certificate"), _read(f.client_key, "TLS client key")
    credentials = grpc.ssl_channel_credentials(_read(f.ca, "TLS CA"), private_key=key, certificate_chain=chain)
    return grpc.aio.secure_channel(target, credentials, **kwargs)


# -- the development CA ----------------------------------------------------------------------


def init_dev_ca(folder: Path) -> bool:
    """Write a development CA, server and client certificates into `folder` unless a CA is
    there already. The set is written whole in a private folder renamed into place, so
    processes racing to make it agree on one complete set. Returns True when it wrote them."""
    if (folder / "ca.pem").exists():
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Poseidon Hub development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    written = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(h)) for h in DEV_HOSTS[:2])]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"poseidon-{role}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + DEV_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        written[f"{role}.pem"] = cert.public_bytes(serialization.Encoding.PEM)
        written[f"{role}-key.pem"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    private = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for name, data in written.items():
        fd = os.open(private / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # an empty folder made beforehand: take its place
        os.rename(private, folder)
    except OSError:
        shutil.rmtree(private, ignore_errors=True)  # another process's set is in place: keep theirs
        if not (folder / "ca.pem").exists():
            raise
        return False
    return True
