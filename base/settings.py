"""All runtime settings, declared once below as typed fields and read once from
POSEIDON_* environment variables and secret files (see README). Nothing else in
the code base reads os.environ for configuration; nothing here knows the hubs.

Each field `name` is read from the variable `POSEIDON_<NAME>` (the one exception
says so: `inbound_saga_deadlines_s` ← POSEIDON_INBOUND_SAGA_DEADLINES); an empty
variable counts as unset. Secrets may instead come from mounted files, as
Kubernetes and Docker secrets are: point POSEIDON_SECRETS_DIR at a folder holding
one file per variable, named like it (`/run/secrets/POSEIDON_FACEBOOK_APP_SECRET`),
whose content (trailing newline stripped) is the value. Precedence: a variable set
in the environment wins over the file of the same name, which wins over the default
— pydantic-settings' own order, so a one-off run or a test can override a mounted
value without rewriting the mount, and a file never hides what the process
environment plainly says.

Ports: POSEIDON_GRPC_PORT_<HUB> overrides one hub's gRPC port; the default ports and
the ops-port index of each hub are declared by the hub itself (`HubSpec.grpc_port`,
`.ops_index`), and the composition root hands those declarations to the Settings it
builds (`poseidon.bootstrap.settings()` → `with_topology`). A bad value raises
SettingsError naming the variable."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SecretsSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "POSEIDON_"
GRPC_PORT_PREFIX = f"{PREFIX}GRPC_PORT_"
PG_DSN_PREFIX = f"{PREFIX}PG_DSN_"
# Ops (metrics + health) ports: the role's base + the declared index (wallet's processor: 9100 + 6).
OPS_PORT_BASE = {
    "gateway": 9070,
    "ingress": 9080,
    "processor": 9100,
    "projector": 9200,
    "grpc": 9300,
    "spoke": 9400,
    "router": 9500,
}
# Filled from the hubs' declarations (`with_topology`) and POSEIDON_GRPC_PORT_<HUB>, never by name.
_TOPOLOGY_FIELDS = frozenset({"grpc_ports", "ops_indices", "pg_dsns"})


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


class HubPorts(Protocol):
    """What the settings need of a hub's declaration (infra.hub.HubSpec has it)."""

    @property
    def name(self) -> str: ...

    @property
    def grpc_port(self) -> int: ...

    @property
    def ops_index(self) -> int: ...


class Settings(BaseSettings):
    """Immutable; `with_(...)` returns a changed, re-validated copy. Built without
    `from_env` (`Settings(state_dir=...)`) it is the defaults plus what is passed:
    construction alone never reads the environment."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        use_attribute_docstrings=True,
    )

    kafka_bootstrap: str = "127.0.0.1:19092"
    pg_dsn: str = Field("postgresql://poseidon@127.0.0.1:15432/poseidon", repr=False)
    pg_dsns: Mapping[str, str] = Field(default_factory=dict, repr=False)
    """Read store → DSN, from POSEIDON_PG_DSN_<STORE> (`_WALLET`): that store lives in a database of its own."""
    schema_registry_url: str = ""
    topic_prefix: str = ""
    schema_prefix: str = ""
    topic_partitions: int = 4
    topic_replication: int = 1
    topic_min_isr: int = 1
    grpc_host: str = "127.0.0.1"
    grpc_tls: bool = True
    """Every gRPC server serves TLS and every client verifies it (infra/tls.py); false: plaintext."""
    grpc_mtls: bool = False
    """Mutual TLS: servers also require a client certificate from the CA, clients present theirs."""
    http_tls: bool = False
    """The webhook ingress, the REST gateway and the dashboard serve HTTPS with the TLS certificate
    (POSEIDON_TLS_CERT / _KEY; the development CA's by default). Off: plain HTTP, for a
    TLS-terminating load balancer in front. Ops ports (metrics, probes) stay plain HTTP."""
    tls_dir: str = ""
    """Where `poseidon tls init` writes, and the TLS files are looked for; empty: `<state_dir>/tls`."""
    tls_cert: str = ""
    """The server certificate (PEM); empty: `<tls dir>/server.pem`."""
    tls_key: str = Field("", repr=False)
    """The server key (PEM, a secret); empty: `<tls dir>/server-key.pem`."""
    tls_ca: str = ""
    """The CA clients verify servers (and, under mTLS, servers verify clients) with; empty: `<tls dir>/ca.pem`."""
    tls_client_cert: str = ""
    """The client certificate presented under mutual TLS; empty: `<tls dir>/client.pem`."""
    tls_client_key: str = Field("", repr=False)
    """Its key; empty: `<tls dir>/client-key.pem`."""
    grpc_ports: Mapping[str, int] = Field(default_factory=dict)
    """Hub → gRPC port: the POSEIDON_GRPC_PORT_<HUB> overrides, over the hubs' declared ports once `with_topology` ran."""
    ops_indices: Mapping[str, int] = Field(default_factory=dict)
    """Hub → the index its ops ports add to the role's base (`with_topology`)."""
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None
    """One ops port for whatever this process is (0: any free port); unset: the role's base + the index."""
    log_format: str = "auto"
    log_level: str = "INFO"
    otlp_endpoint: str = ""
    """OTLP/gRPC endpoint every process exports its trace spans to (`http://127.0.0.1:4317`: `make jaeger`);
    empty: the standard OTEL_EXPORTER_OTLP_ENDPOINT if set, else tracing is off (no SDK loaded)."""
    trace_url_template: str = ""
    """A trace viewer's page for one trace, `{trace_id}` in it (`http://127.0.0.1:16686/trace/{trace_id}`):
    the dashboard's saga page links the saga's trace there; empty: the trace id is shown without a link."""
    processor_batch_max: int = 1000
    """Most command records one processor decides in one transaction per partition."""
    replay_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    """Processes a bulk rebuild (`poseidon replay`) shares the partitions among."""
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    """The path's consumers (processors, projectors, router, spokes, command results) ask
    the broker for records with these: it answers once it holds `fetch_min_bytes`, or
    after `fetch_max_wait_ms`. Larger values mean fewer fetches and bigger batches and
    transactions (less CPU per message) at up to that wait per hop when traffic is thin."""
    dedup_window_s: float = 24 * 3600.0
    """How long a processor answers a repeated command id with its first outcome (and how far back it reads results at start)."""
    dedup_max_per_partition: int = 100_000
    """At most this many recent command ids per command partition are remembered for deduplication."""
    aggregate_cache_size: int = 10_000
    """Decoded aggregates a processor keeps in memory (least recently used evicted; their stored state stays)."""
    state_dir: str = ".state"
    dev_mode: bool = False
    """Development mode (POSEIDON_DEV_MODE=1, set by `make up` and the tests): the built-in
    development webhook secrets are accepted. Off (production), a role that verifies
    webhooks refuses to start while one of them is still the default."""
    secrets_dir: str = ""
    """Folder of secret files, one per variable (`POSEIDON_S3_SECRET_KEY`); empty: none."""
    jwt_keys_dir: str = ""
    """Folder of ES256 signing keys `<kid>.pem` (private: only the Identity hub needs it); empty: `<state_dir>/jwt-keys`."""
    jwt_public_keys_dir: str = ""
    """Folder of the signing keys' public halves `<kid>.pem`, all a verifier reads (every gRPC
    server, the dashboard); empty: `<jwt keys dir>/public`, where the Identity hub publishes them."""
    event_keys_dir: str = ""
    """HMAC-SHA256 keys each hub's processor signs its events with, `<hub>/<kid>.key`; its
    projector, rebuilds, the router and `audit verify` check them; empty: `<state_dir>/event-keys`."""
    identity_sealing_keys_dir: str = ""
    """AES-256-GCM keys sealing password hashes and TOTP secrets; empty: `<state_dir>/identity-sealing-keys`."""
    jwt_issuer: str = "poseidon-identity"
    jwt_audience: str = "poseidon"
    login_rate_per_min: float = Field(20.0, gt=0)
    """Login attempts per client address per minute (burst: the same number), counted before
    any password is hashed; beyond it the Identity hub answers RESOURCE_EXHAUSTED with the wait."""
    login_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1", "::1")
    """Addresses or networks (`10.0.0.0/8`: a pod network) whose `x-poseidon-client-address` metadata
    is believed (the dashboard, the API gateway log in on behalf of browsers); any other caller's own
    address is its source."""
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    token: str = Field("", repr=False)
    """An operator's bearer token for the CLI's gRPC queries (POSEIDON_TOKEN); empty:
    the CLI mints a short one from the local keyring."""
    dashboard_port: int = 8090
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8070
    gateway_public_url: str = ""
    """The gateway's address as clients reach it (for the OAuth metadata); empty: http://host:port."""
    gateway_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Web origins (comma-separated, `https://app.example.com`) whose browsers may call the REST API."""
    gateway_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    """Load balancers in front of the gateway (comma-separated addresses or networks): from them the client's
    address is the last X-Forwarded-For entry that is not one of them (rate limits, login lockouts)."""
    gateway_rate_per_s_client: float = Field(20.0, gt=0)
    """REST requests per second per client (its principal, or its address before sign-in); bursts of 2x."""
    gateway_rate_per_s_tenant: float = Field(100.0, gt=0)
    """REST requests per second per tenant named in the path, all its clients together; bursts of 2x."""
    gateway_call_timeout_s: float = Field(30.0, gt=0)
    """How long the gateway waits for a hub's answer (a write waits for the hub's decision)."""
    gateway_consistency_wait_s: float = Field(3.0, ge=0)
    """How long a read given a consistency token waits for the read store to show that write."""
    gateway_max_body_bytes: int = Field(256 * 1024, gt=0)
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    ingress_max_body_bytes: int = 1024 * 1024
    ingress_body_timeout_s: float = 10.0
    """How long ingress waits for a request's whole body (slow-loris bodies get 408)."""
    ingress_rate_per_s: float = 50.0
    """Per channel account (≈ per tenant channel) sustained webhook items per second; bursts of 2x."""
    facebook_app_secret: str = Field("dev-app-secret", repr=False)
    facebook_verify_token: str = Field("dev-verify-token", repr=False)
    facebook_graph_url: str = "http://127.0.0.1:18081"
    facebook_page_token: str = Field("dev-page-token", repr=False)
    facebook_delivery_policy: str = "at_most_once"
    """When an earlier send's outcome is unknown: `at_most_once` (report it, never send again) or `at_least_once`
    (send again); a tenant overrides it with the Config hub key `facebook.delivery_policy`."""
    botpress_url: str = "http://127.0.0.1:18082"
    botpress_webhook_secret: str = Field("dev-botpress-secret", repr=False)
    botpress_listen: bool = True
    """Hear the bot's replies on the Chat API's listen stream (server-sent events) as they are
    written; false, or a bot whose stream is refused: poll the conversation's messages."""
    botpress_turn_quiet_s: float = Field(0.15, gt=0, le=10)
    """On the listen stream, the bot's turn is taken as finished this long after its last
    message: what it writes later is not part of this answer (raise it for bots that pause)."""
    odoo_url: str = "http://127.0.0.1:18083"
    odoo_db: str = "poseidon"
    odoo_user: str = "admin"
    odoo_api_key: str = Field("dev-odoo-key", repr=False)
    odoo_protocol: str = "xmlrpc"
    """`xmlrpc` (deprecated upstream, still the default of most servers) or `json2`."""
    s3_url: str = "http://127.0.0.1:18084"
    s3_access_key: str = "poseidon"
    s3_secret_key: str = Field("poseidon-secret", repr=False)
    s3_region: str = "us-east-1"
    attachment_hosts: Annotated[tuple[str, ...], NoDecode] = ("*.fbcdn.net", "*.fbsbx.com")
    """Hosts the MinIO spoke fetches attachments from (comma-separated): an exact host
    (`lookaside.fbsbx.com`), or `*.` and a domain for every host below it (`*.fbcdn.net`,
    not `fbcdn.net` itself). The default is Facebook's CDNs, where Messenger's attachment
    URLs point (`lookaside.fbsbx.com` falls under `*.fbsbx.com`). An attachment URL comes
    from a webhook, so anyone who can shape one could otherwise make the spoke fetch
    anything the spoke can reach: a URL on another host is refused, not fetched. Only
    https, unless POSEIDON_DEV_MODE (the stand-ins serve plain http on 127.0.0.1)."""
    attachment_allowed_addresses: Annotated[tuple[str, ...], NoDecode] = ()
    """Exact IP addresses an attachment host may resolve to although they are not public
    (loopback, private, link-local…), comma-separated: `127.0.0.1` for the stand-ins of
    development and the tests; empty in production. Every other such address is refused,
    and the cloud metadata addresses (169.254.169.254, fd00:ec2::254) even when listed."""
    attachment_timeout_s: float = 30.0
    """One deadline for the whole download of an attachment: resolving, connecting, every
    redirect and every read. A source that drips its bytes is cut off here; a timeout per
    read alone would let it hold the spoke for as long as it keeps dripping. 30 s fetches
    the 25 MiB cap at 1 MB/s and is half the inbound saga's 60 s for `store_attachments`."""
    spoke_max_attempts: int = 4
    breaker_fail_max: int = 5
    breaker_reset_s: float = 30.0
    http_timeout_s: float = 10.0
    message_charge_minor: int = 1
    """Reserved on the tenant's wallet for each routed message (minor units), captured when it was handled."""
    inbound_saga_deadlines_s: Annotated[Mapping[str, float], NoDecode] = Field(
        default_factory=dict, validation_alias="POSEIDON_INBOUND_SAGA_DEADLINES"
    )
    """Per-step deadlines of the inbound-message saga overriding its defaults: `ask_bot=20,deliver_reply=15`."""
    facebook_app_id: str = "1517776481860111"
    """The Facebook app's id: `client_id` of the Facebook Login dialog and of the OAuth token
    exchanges in the page connect flow (default: the stand-in's app)."""
    facebook_login_url: str = "https://www.facebook.com"
    """Where the Facebook Login dialog is (`<url>/<version>/dialog/oauth`), for the connect flow's URL."""
    credential_sealing_keys_dir: str = ""
    """AES-256-GCM keys sealing tenants' credentials (page access tokens) before they enter a
    command or event, and the connect flow's `state`; the Tenant gRPC service seals, the
    Facebook spoke unseals. Empty: `<state_dir>/credential-sealing-keys`."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # Only what is passed: from_env is the one door to the environment and the secret files.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from `env` (default: the process environment) and, when
        POSEIDON_SECRETS_DIR names a folder, its secret files; the environment wins."""
        env = os.environ if env is None else env
        from_variables = _MappingEnvSource(cls, env)()
        values: dict[str, Any] = {}
        secrets_dir = from_variables.get("secrets_dir")
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                raise SettingsError(f"POSEIDON_SECRETS_DIR must name a folder of secret files, not {secrets_dir!r}")
            from_files = SecretsSettingsSource(cls, secrets_dir=secrets_dir)()
            values.update({name: value for name, value in from_files.items() if name not in _TOPOLOGY_FIELDS})
        values.update(from_variables)
        values["grpc_ports"] = _by_suffix(env, GRPC_PORT_PREFIX)
        # A DSN may hold a password: a secret file named like the variable works too (the environment wins).
        files = {p.name: p.read_text().strip() for p in Path(secrets_dir).glob(f"{PG_DSN_PREFIX}*")} if secrets_dir else {}
        values["pg_dsns"] = {**_by_suffix(files, PG_DSN_PREFIX), **_by_suffix(env, PG_DSN_PREFIX)}
        return cls(**values)

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("schema_registry_url", "facebook_graph_url", "botpress_url", "odoo_url", "s3_url", "facebook_login_url")
    @classmethod
    def _without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator(
        "attachment_hosts",
        "attachment_allowed_addresses",
        "login_trusted_proxies",
        "gateway_cors_origins",
        "gateway_trusted_proxies",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(item).strip().lower().rstrip(".") for item in items if str(item).strip())

    @field_validator("login_trusted_proxies", "gateway_trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        return value

    @field_validator("inbound_saga_deadlines_s", mode="before")
    @classmethod
    def _deadlines(cls, value: Any) -> Any:
        return _deadlines(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.check()
        return self

    def check(self) -> None:
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(f"POSEIDON_LOG_FORMAT must be auto, json or console, not {self.log_format!r}")
        template = self.trace_url_template
        if template and (not template.startswith(("http://", "https://")) or "{trace_id}" not in template):
            raise SettingsError(
                "POSEIDON_TRACE_URL_TEMPLATE must be an http(s) URL with {trace_id} in it (the dashboard links it), "
                f"not {template[:80]!r}"
            )
        if self.topic_partitions < 1 or self.topic_replication < 1 or self.topic_min_isr < 1:
            raise SettingsError("POSEIDON_TOPIC_PARTITIONS, _REPLICATION and _MIN_ISR must be at least 1")
        if self.facebook_delivery_policy not in ("at_most_once", "at_least_once"):
            raise SettingsError(
                f"POSEIDON_FACEBOOK_DELIVERY_POLICY must be at_most_once or at_least_once, not {self.facebook_delivery_policy!r}"
            )
        if self.odoo_protocol not in ("xmlrpc", "json2"):
            raise SettingsError(f"POSEIDON_ODOO_PROTOCOL must be xmlrpc or json2, not {self.odoo_protocol!r}")
        if self.spoke_max_attempts < 1 or self.breaker_fail_max < 1 or self.breaker_reset_s <= 0 or self.http_timeout_s <= 0:
            raise SettingsError("spoke retry, breaker and timeout settings must be positive")
        _check_attachment_sources(self.attachment_hosts, self.attachment_allowed_addresses)
        if self.attachment_timeout_s <= 0:
            raise SettingsError("POSEIDON_ATTACHMENT_TIMEOUT_S must be positive")
        if self.message_charge_minor < 0:
            raise SettingsError("POSEIDON_MESSAGE_CHARGE_MINOR cannot be negative")
        if self.ingress_body_timeout_s <= 0:
            raise SettingsError("POSEIDON_INGRESS_BODY_TIMEOUT_S must be positive")
        if self.replay_workers < 1:
            raise SettingsError("POSEIDON_REPLAY_WORKERS must be at least 1")
        if not (1 <= self.fetch_min_bytes <= 64 * 1024 * 1024 and 0 <= self.fetch_max_wait_ms <= 30_000):
            raise SettingsError("POSEIDON_FETCH_MIN_BYTES must be 1..64 MiB and POSEIDON_FETCH_MAX_WAIT_MS 0..30000")
        if (
            self.processor_batch_max < 1
            or self.dedup_max_per_partition < 1
            or self.aggregate_cache_size < 1
            or self.dedup_window_s <= 0
        ):
            raise SettingsError("processor batch, dedup window and cache sizes must be positive")
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

    @property
    def public_keys_dir(self) -> str:
        return self.jwt_public_keys_dir or os.path.join(self.keys_dir, "public")

    def topic(self, name: str) -> str:
        """Physical Kafka topic name for a logical one (`wallet.events`)."""
        return f"{self.topic_prefix}{name}"

    def pg_schema(self, name: str) -> str:
        """Physical PostgreSQL schema for a read store (`wallet`)."""
        return f"{self.schema_prefix}{name}"

    def with_topology(self, hubs: Iterable[HubPorts]) -> Settings:
        """These settings knowing each hub's declared gRPC port and ops index.

        Why here: base may not import the hubs, yet the machinery that only knows a
        hub's name (gRPC clients and servers, processors, projectors, the router)
        is handed a Settings anyway. So the composition root, which discovers the
        hubs, registers their declarations in the one Settings it builds, and the
        declarations stay the only table. A POSEIDON_GRPC_PORT_<HUB> override (or a
        port set with `with_`) already in `grpc_ports` wins over the declaration."""
        hubs = list(hubs)
        for attribute in ("grpc_port", "ops_index"):
            seen: dict[int, str] = {}
            for hub in hubs:
                number = getattr(hub, attribute)
                if seen.setdefault(number, hub.name) != hub.name:
                    raise SettingsError(f"hubs {seen[number]} and {hub.name} both declare {attribute} {number}")
        return self.with_(
            grpc_ports={**{hub.name: hub.grpc_port for hub in hubs}, **self.grpc_ports},
            ops_indices={**{hub.name: hub.ops_index for hub in hubs}, **self.ops_indices},
        )

    def dsn_for(self, store: str) -> str:
        """The DSN of the database holding read store `store` (`wallet`, `tenant`, `saga`…)."""
        return self.pg_dsns.get(store, self.pg_dsn)

    def grpc_port(self, hub: str) -> int:
        try:
            return self.grpc_ports[hub]
        except KeyError:
            raise SettingsError(
                f"no gRPC port known for hub {hub!r}: build settings with poseidon.bootstrap.settings() "
                f"or set {GRPC_PORT_PREFIX}{hub.upper()}"
            ) from None

    def ops_port_at(self, role: str, index: int) -> int:
        """POSEIDON_OPS_PORT if set, else the role's base + a declared index (a spoke's `SpokeSpec.ops_index`)."""
        return self.ops_port if self.ops_port is not None else OPS_PORT_BASE[role] + index

    def ops_port_for(self, role: str, hub: str) -> int:
        """POSEIDON_OPS_PORT if set, else the role's base + the hub's declared index."""
        if self.ops_port is not None:
            return self.ops_port
        if hub not in self.ops_indices:
            raise SettingsError(f"no ops port index known for hub {hub!r}: build settings with poseidon.bootstrap.settings()")
        return self.ops_port_at(role, self.ops_indices[hub])

    def unsafe_secrets(self, names: Iterable[str]) -> list[str]:
        """The variables among `names` whose value must not be used here: empty
        always (an HMAC keyed by nothing is forgeable by anyone), the built-in
        development default unless dev_mode is on."""
        unsafe = []
        for name in names:
            value = getattr(self, name)
            if not value or (value == type(self).model_fields[name].default and not self.dev_mode):
                unsafe.append(f"{PREFIX}{name.upper()}")
        return unsafe

    def require_secrets(self, names: Iterable[str], role: str) -> None:
        """Raise SettingsError naming every variable `unsafe_secrets` finds."""
        unsafe = self.unsafe_secrets(names)
        if unsafe:
            raise SettingsError(
                f"{role} refuses to start: {', '.join(unsafe)} must be set to a secret of your own "
                f"(empty or the built-in development value; POSEIDON_DEV_MODE=1 accepts the latter on a development machine)"
            )

    def with_(self, **changes: Any) -> Settings:
        return type(self)(**{**dict(self), **changes})


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (from_env's
    argument) instead of os.environ, skipping the fields filled from the topology."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in _TOPOLOGY_FIELDS:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def _variable(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias if field_name in Settings.model_fields else None
    return alias if isinstance(alias, str) else f"{PREFIX}{field_name.upper()}"


def _settings_error(exc: ValidationError) -> SettingsError:
    """The first problem, worded as before: the variable, what it must be, the value."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingsError):
        return cause
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] == "grpc_ports" and len(loc) > 1:
        variable = f"{GRPC_PORT_PREFIX}{loc[1].upper()}"
    elif loc:
        variable = _variable(loc[0])
    else:
        variable = "settings"
    wanted = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number"}
    if error["type"] in wanted:
        return SettingsError(f"{variable} must be {wanted[error['type']]}, not {error['input']!r}")
    if error["type"] == "extra_forbidden":
        return SettingsError(f"{loc[0] if loc else '?'} is not a setting")
    return SettingsError(f"{variable}: {error['msg']}")


def _check_attachment_sources(hosts: Iterable[str], addresses: Iterable[str]) -> None:
    """Every host pattern names a host (`*` alone would allow every host); every address is one."""
    for pattern in hosts:
        host = pattern.removeprefix("*.")
        if not host or "*" in host or "/" in host or "@" in host:
            raise SettingsError(f"POSEIDON_ATTACHMENT_HOSTS: {pattern!r} is neither a host nor '*.' and a domain")
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SettingsError(f"POSEIDON_ATTACHMENT_ALLOWED_ADDRESSES: {address!r} is not an IP address") from None


def _deadlines(raw: str) -> dict[str, float]:
    """`step=seconds,step=seconds` → {step: seconds}; each between 0 and a day."""
    found: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.strip().split(","))):
        step, sep, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not step.strip() or not 0 < value <= 86_400:
            raise SettingsError(
                f"POSEIDON_INBOUND_SAGA_DEADLINES must look like 'ask_bot=20,deliver_reply=15' (seconds up to 86400), not {raw!r}"
            )
        found[step.strip()] = value
    return found


def _by_suffix(variables: Mapping[str, str], prefix: str) -> dict[str, str]:
    """`<prefix><NAME>` variables as {name: value} (lower-case names, empty values unset)."""
    return {
        key[len(prefix) :].lower(): raw
        for key, raw in variables.items()
        if key.upper().startswith(prefix) and len(key) > len(prefix) and raw != ""
    }
