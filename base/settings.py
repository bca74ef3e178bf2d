"""All runtime settings, read once from environment variables (see README).
Nothing else in the code base reads os.environ for configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# gRPC port per hub, as fixed by the architecture note (50051 Identity … 50058 Message).
DEFAULT_GRPC_PORTS = {
    "identity": 50051,
    "user": 50052,
    "tenant": 50053,
    "app": 50054,
    "billing": 50055,
    "wallet": 50056,
    "config": 50057,
    "message": 50058,
    "saga": 50059,
}
# Ops (metrics + health) ports: role base + the hub's index (wallet → 06).
OPS_PORT_BASE = {"processor": 9100, "projector": 9200, "grpc": 9300, "router": 9500}


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    pg_dsn: str = "postgresql://poseidon@127.0.0.1:15432/poseidon"
    schema_registry_url: str = ""
    topic_prefix: str = ""
    schema_prefix: str = ""
    topic_partitions: int = 4
    topic_replication: int = 1
    topic_min_isr: int = 1
    grpc_host: str = "127.0.0.1"
    grpc_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_GRPC_PORTS))
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None
    log_format: str = "auto"
    log_level: str = "INFO"
    processing_guarantee: str = "exactly_once"
    commit_interval_ms: int = 100
    state_dir: str = ".state"
    jwt_keys_dir: str = ""
    """Folder of ES256 signing keys `<kid>.pem`; empty: `<state_dir>/jwt-keys`."""
    identity_sealing_keys_dir: str = ""
    """AES-256-GCM keys sealing password hashes and TOTP secrets; empty: `<state_dir>/identity-sealing-keys`."""
    jwt_issuer: str = "poseidon-identity"
    jwt_audience: str = "poseidon"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    dashboard_port: int = 8090
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    ingress_max_body_bytes: int = 1024 * 1024
    ingress_body_timeout_s: float = 10.0
    """How long ingress waits for a request's whole body (slow-loris bodies get 408)."""
    ingress_rate_per_s: float = 50.0
    """Per channel account (≈ per tenant channel) sustained webhook items per second; bursts of 2x."""
    facebook_app_secret: str = "dev-app-secret"
    facebook_verify_token: str = "dev-verify-token"
    facebook_graph_url: str = "http://127.0.0.1:18081"
    facebook_page_token: str = "dev-page-token"
    botpress_url: str = "http://127.0.0.1:18082"
    botpress_webhook_secret: str = "dev-botpress-secret"
    odoo_url: str = "http://127.0.0.1:18083"
    odoo_db: str = "poseidon"
    odoo_user: str = "admin"
    odoo_api_key: str = "dev-odoo-key"
    odoo_protocol: str = "xmlrpc"
    """`xmlrpc` (deprecated upstream, still the default of most servers) or `json2`."""
    s3_url: str = "http://127.0.0.1:18084"
    s3_access_key: str = "poseidon"
    s3_secret_key: str = "poseidon-secret"
    s3_region: str = "us-east-1"
    spoke_max_attempts: int = 4
    breaker_fail_max: int = 5
    breaker_reset_s: float = 30.0
    http_timeout_s: float = 10.0
    message_charge_minor: int = 1
    """Reserved on the tenant's wallet for each routed message (minor units), captured when it was handled."""
    inbound_saga_deadlines_s: Mapping[str, float] = field(default_factory=dict)
    """Per-step deadlines of the inbound-message saga overriding its defaults: `ask_bot=20,deliver_reply=15`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        ports = dict(DEFAULT_GRPC_PORTS)
        for hub in ports:
            ports[hub] = _int(env, f"POSEIDON_GRPC_PORT_{hub.upper()}", ports[hub])
        settings = cls(
            kafka_bootstrap=env.get("POSEIDON_KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            pg_dsn=env.get("POSEIDON_PG_DSN", d.pg_dsn),
            schema_registry_url=env.get("POSEIDON_SCHEMA_REGISTRY_URL", d.schema_registry_url).rstrip("/"),
            topic_prefix=env.get("POSEIDON_TOPIC_PREFIX", d.topic_prefix),
            schema_prefix=env.get("POSEIDON_SCHEMA_PREFIX", d.schema_prefix),
            topic_partitions=_int(env, "POSEIDON_TOPIC_PARTITIONS", d.topic_partitions),
            topic_replication=_int(env, "POSEIDON_TOPIC_REPLICATION", d.topic_replication),
            topic_min_isr=_int(env, "POSEIDON_TOPIC_MIN_ISR", d.topic_min_isr),
            grpc_host=env.get("POSEIDON_GRPC_HOST", d.grpc_host),
            grpc_ports=ports,
            ops_host=env.get("POSEIDON_OPS_HOST", d.ops_host),
            ops_port=_int(env, "POSEIDON_OPS_PORT", None),
            log_format=env.get("POSEIDON_LOG_FORMAT", d.log_format),
            log_level=env.get("POSEIDON_LOG_LEVEL", d.log_level).upper(),
            processing_guarantee=env.get("POSEIDON_PROCESSING_GUARANTEE", d.processing_guarantee),
            commit_interval_ms=_int(env, "POSEIDON_COMMIT_INTERVAL_MS", d.commit_interval_ms),
            state_dir=env.get("POSEIDON_STATE_DIR", d.state_dir),
            jwt_keys_dir=env.get("POSEIDON_JWT_KEYS_DIR", d.jwt_keys_dir),
            identity_sealing_keys_dir=env.get("POSEIDON_IDENTITY_SEALING_KEYS_DIR", d.identity_sealing_keys_dir),
            jwt_issuer=env.get("POSEIDON_JWT_ISSUER", d.jwt_issuer),
            jwt_audience=env.get("POSEIDON_JWT_AUDIENCE", d.jwt_audience),
            access_token_ttl_s=_int(env, "POSEIDON_ACCESS_TOKEN_TTL_S", d.access_token_ttl_s),
            refresh_token_ttl_s=_int(env, "POSEIDON_REFRESH_TOKEN_TTL_S", d.refresh_token_ttl_s),
            dashboard_port=_int(env, "POSEIDON_DASHBOARD_PORT", d.dashboard_port),
            ingress_host=env.get("POSEIDON_INGRESS_HOST", d.ingress_host),
            ingress_port=_int(env, "POSEIDON_INGRESS_PORT", d.ingress_port),
            ingress_max_body_bytes=_int(env, "POSEIDON_INGRESS_MAX_BODY_BYTES", d.ingress_max_body_bytes),
            ingress_body_timeout_s=_float(env, "POSEIDON_INGRESS_BODY_TIMEOUT_S", d.ingress_body_timeout_s),
            ingress_rate_per_s=_float(env, "POSEIDON_INGRESS_RATE_PER_S", d.ingress_rate_per_s),
            facebook_app_secret=env.get("POSEIDON_FACEBOOK_APP_SECRET", d.facebook_app_secret),
            facebook_verify_token=env.get("POSEIDON_FACEBOOK_VERIFY_TOKEN", d.facebook_verify_token),
            facebook_graph_url=env.get("POSEIDON_FACEBOOK_GRAPH_URL", d.facebook_graph_url).rstrip("/"),
            facebook_page_token=env.get("POSEIDON_FACEBOOK_PAGE_TOKEN", d.facebook_page_token),
            botpress_url=env.get("POSEIDON_BOTPRESS_URL", d.botpress_url).rstrip("/"),
            botpress_webhook_secret=env.get("POSEIDON_BOTPRESS_WEBHOOK_SECRET", d.botpress_webhook_secret),
            odoo_url=env.get("POSEIDON_ODOO_URL", d.odoo_url).rstrip("/"),
            odoo_db=env.get("POSEIDON_ODOO_DB", d.odoo_db),
            odoo_user=env.get("POSEIDON_ODOO_USER", d.odoo_user),
            odoo_api_key=env.get("POSEIDON_ODOO_API_KEY", d.odoo_api_key),
            odoo_protocol=env.get("POSEIDON_ODOO_PROTOCOL", d.odoo_protocol),
            s3_url=env.get("POSEIDON_S3_URL", d.s3_url).rstrip("/"),
            s3_access_key=env.get("POSEIDON_S3_ACCESS_KEY", d.s3_access_key),
            s3_secret_key=env.get("POSEIDON_S3_SECRET_KEY", d.s3_secret_key),
            s3_region=env.get("POSEIDON_S3_REGION", d.s3_region),
            spoke_max_attempts=_int(env, "POSEIDON_SPOKE_MAX_ATTEMPTS", d.spoke_max_attempts),
            breaker_fail_max=_int(env, "POSEIDON_BREAKER_FAIL_MAX", d.breaker_fail_max),
            breaker_reset_s=_float(env, "POSEIDON_BREAKER_RESET_S", d.breaker_reset_s),
            http_timeout_s=_float(env, "POSEIDON_HTTP_TIMEOUT_S", d.http_timeout_s),
            message_charge_minor=_int(env, "POSEIDON_MESSAGE_CHARGE_MINOR", d.message_charge_minor),
            inbound_saga_deadlines_s=_deadlines(env, "POSEIDON_INBOUND_SAGA_DEADLINES"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(f"POSEIDON_LOG_FORMAT must be auto, json or console, not {self.log_format!r}")
        if self.processing_guarantee not in ("exactly_once", "at_least_once"):
            raise SettingsError(
                f"POSEIDON_PROCESSING_GUARANTEE must be exactly_once or at_least_once, not {self.processing_guarantee!r}"
            )
        if self.topic_partitions < 1 or self.topic_replication < 1 or self.topic_min_isr < 1:
            raise SettingsError("POSEIDON_TOPIC_PARTITIONS, _REPLICATION and _MIN_ISR must be at least 1")
        if self.odoo_protocol not in ("xmlrpc", "json2"):
            raise SettingsError(f"POSEIDON_ODOO_PROTOCOL must be xmlrpc or json2, not {self.odoo_protocol!r}")
        if self.spoke_max_attempts < 1 or self.breaker_fail_max < 1 or self.breaker_reset_s <= 0 or self.http_timeout_s <= 0:
            raise SettingsError("spoke retry, breaker and timeout settings must be positive")
        if self.message_charge_minor < 0:
            raise SettingsError("POSEIDON_MESSAGE_CHARGE_MINOR cannot be negative")
        if self.ingress_body_timeout_s <= 0:
            raise SettingsError("POSEIDON_INGRESS_BODY_TIMEOUT_S must be positive")
        if self.commit_interval_ms < 1:
            raise SettingsError("POSEIDON_COMMIT_INTERVAL_MS must be at least 1")
        if any(not 0 < port < 65536 for port in self.grpc_ports.values()) or (
            self.ops_port is not None and not 0 <= self.ops_port < 65536
        ):
            raise SettingsError("ports must be between 1 and 65535 (POSEIDON_OPS_PORT may be 0: any free port)")
        if self.topic_min_isr > self.topic_replication:
            raise SettingsError("POSEIDON_TOPIC_MIN_ISR cannot exceed POSEIDON_TOPIC_REPLICATION")
        if self.schema_prefix and not self.schema_prefix.replace("_", "").isalnum():
            raise SettingsError("POSEIDON_SCHEMA_PREFIX may hold only letters, digits and underscores")

    @property
    def keys_dir(self) -> str:
        return self.jwt_keys_dir or os.path.join(self.state_dir, "jwt-keys")

    def topic(self, name: str) -> str:
        """Physical Kafka topic name for a logical one (`wallet.events`)."""
        return f"{self.topic_prefix}{name}"

    def pg_schema(self, name: str) -> str:
        """Physical PostgreSQL schema for a read store (`wallet`)."""
        return f"{self.schema_prefix}{name}"

    def grpc_port(self, hub: str) -> int:
        return self.grpc_ports[hub]

    def ops_port_for(self, role: str, hub: str) -> int:
        if self.ops_port is not None:
            return self.ops_port
        return OPS_PORT_BASE[role] + list(DEFAULT_GRPC_PORTS).index(hub) + 1

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, not {raw!r}") from None


def _deadlines(env: Mapping[str, str], key: str) -> dict[str, float]:
    """`step=seconds,step=seconds` → {step: seconds}; each between 0 and a day."""
    raw = env.get(key, "").strip()
    found: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        step, sep, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not step.strip() or not 0 < value <= 86_400:
            raise SettingsError(f"{key} must look like 'ask_bot=20,deliver_reply=15' (seconds up to 86400), not {raw!r}")
        found[step.strip()] = value
    return found


def _int(env: Mapping[str, str], key: str, default: int | None) -> int | None:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer, not {raw!r}") from None
