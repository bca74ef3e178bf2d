"""Settings.from_env: the defaults the local stack relies on, every override the
README documents, and refusal of values that cannot work, naming the variable.
The default gRPC ports and ops indices are the hubs' own declarations, which the
composition root registers (`bootstrap.settings`)."""

from __future__ import annotations

import pytest

from base.settings import Settings, SettingsError
from poseidon import bootstrap


def declared_ports() -> dict[str, int]:
    return {name: hub.grpc_port for name, hub in bootstrap.hubs().items()}


def test_with_no_environment_the_settings_are_the_documented_defaults():
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.pg_dsn == "postgresql://poseidon@127.0.0.1:15432/poseidon"
    assert (settings.topic_prefix, settings.schema_prefix, settings.schema_registry_url) == ("", "", "")
    assert (settings.topic_partitions, settings.topic_replication, settings.topic_min_isr) == (4, 1, 1)
    assert (settings.processor_batch_max, settings.dedup_window_s) == (1000, 86400.0)
    assert settings.ops_port is None
    installed = bootstrap.settings({})
    assert installed.grpc_port("wallet") == 50056
    assert dict(installed.grpc_ports) == declared_ports()


def test_empty_variables_count_as_unset():
    settings = bootstrap.settings({"POSEIDON_TOPIC_PARTITIONS": "", "POSEIDON_OPS_PORT": "", "POSEIDON_GRPC_PORT_WALLET": ""})

    assert settings.topic_partitions == 4
    assert settings.ops_port is None
    assert settings.grpc_port("wallet") == 50056


def test_every_variable_overrides_its_setting():
    env = {
        "POSEIDON_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "POSEIDON_PG_DSN": "postgresql://x@db/y",
        "POSEIDON_SCHEMA_REGISTRY_URL": "http://registry:8081/",
        "POSEIDON_TOPIC_PREFIX": "ci-42.",
        "POSEIDON_SCHEMA_PREFIX": "ci_42_",
        "POSEIDON_TOPIC_PARTITIONS": "12",
        "POSEIDON_TOPIC_REPLICATION": "3",
        "POSEIDON_TOPIC_MIN_ISR": "2",
        "POSEIDON_GRPC_HOST": "0.0.0.0",
        "POSEIDON_GRPC_PORT_WALLET": "6056",
        "POSEIDON_OPS_HOST": "0.0.0.0",
        "POSEIDON_OPS_PORT": "8080",
        "POSEIDON_LOG_FORMAT": "json",
        "POSEIDON_LOG_LEVEL": "debug",
        "POSEIDON_PROCESSOR_BATCH_MAX": "250",
        "POSEIDON_DEDUP_WINDOW_S": "3600",
        "POSEIDON_STATE_DIR": "/var/lib/poseidon",
    }

    s = Settings.from_env(env)

    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.pg_dsn == "postgresql://x@db/y"
    assert s.schema_registry_url == "http://registry:8081"  # trailing slash dropped
    assert (s.topic_prefix, s.schema_prefix) == ("ci-42.", "ci_42_")
    assert (s.topic_partitions, s.topic_replication, s.topic_min_isr) == (12, 3, 2)
    assert (s.grpc_host, s.ops_host, s.ops_port) == ("0.0.0.0", "0.0.0.0", 8080)
    assert (s.log_format, s.log_level) == ("json", "DEBUG")
    assert (s.processor_batch_max, s.dedup_window_s) == (250, 3600.0)
    assert s.state_dir == "/var/lib/poseidon"


def test_a_hub_grpc_port_override_changes_only_that_hub():
    settings = bootstrap.settings({"POSEIDON_GRPC_PORT_WALLET": "6056"})

    assert settings.grpc_port("wallet") == 6056
    assert {h: p for h, p in settings.grpc_ports.items() if h != "wallet"} == {
        h: p for h, p in declared_ports().items() if h != "wallet"
    }
    assert bootstrap.hub("wallet").grpc_port == 50056  # the declaration is not mutated


@pytest.mark.parametrize(
    "variable",
    [
        "POSEIDON_TOPIC_PARTITIONS",
        "POSEIDON_TOPIC_REPLICATION",
        "POSEIDON_TOPIC_MIN_ISR",
        "POSEIDON_GRPC_PORT_WALLET",
        "POSEIDON_OPS_PORT",
        "POSEIDON_PROCESSOR_BATCH_MAX",
    ],
)
@pytest.mark.parametrize("value", ["four", "1.5", "0x10"])
def test_a_value_that_is_not_an_integer_is_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})

    assert variable in str(raised.value)
    assert repr(value) in str(raised.value)


def test_a_min_isr_above_the_replication_factor_is_refused():
    with pytest.raises(SettingsError, match="MIN_ISR cannot exceed"):
        Settings.from_env({"POSEIDON_TOPIC_REPLICATION": "2", "POSEIDON_TOPIC_MIN_ISR": "3"})


def test_a_min_isr_equal_to_the_replication_factor_is_accepted():
    settings = Settings.from_env({"POSEIDON_TOPIC_REPLICATION": "3", "POSEIDON_TOPIC_MIN_ISR": "3"})

    assert (settings.topic_replication, settings.topic_min_isr) == (3, 3)


@pytest.mark.parametrize("variable", ["POSEIDON_TOPIC_PARTITIONS", "POSEIDON_TOPIC_REPLICATION", "POSEIDON_TOPIC_MIN_ISR"])
def test_a_topic_count_below_one_is_refused(variable):
    with pytest.raises(SettingsError, match="at least 1"):
        Settings.from_env({variable: "0"})


@pytest.mark.parametrize(
    "variable, value",
    [
        ("POSEIDON_LOG_FORMAT", "xml"),
        ("POSEIDON_SCHEMA_PREFIX", "ci-42"),
        ("POSEIDON_SCHEMA_PREFIX", 'x"; drop schema wallet; --'),
    ],
)
def test_a_value_outside_what_is_allowed_is_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_topic_and_schema_names_carry_their_prefixes():
    settings = Settings.from_env({"POSEIDON_TOPIC_PREFIX": "ci-42.", "POSEIDON_SCHEMA_PREFIX": "ci_42_"})

    assert settings.topic("wallet.events") == "ci-42.wallet.events"
    assert settings.topic("wallet.commands.dlq") == "ci-42.wallet.commands.dlq"
    assert settings.pg_schema("wallet") == "ci_42_wallet"


def test_without_prefixes_topic_and_schema_names_are_the_logical_ones():
    settings = Settings.from_env({})

    assert settings.topic("wallet.events") == "wallet.events"
    assert settings.pg_schema("wallet") == "wallet"


@pytest.mark.parametrize(
    "role, hub, port",
    [
        ("processor", "wallet", 9106),
        ("projector", "wallet", 9206),
        ("grpc", "wallet", 9306),
        ("processor", "identity", 9101),
        ("grpc", "message", 9308),
    ],
)
def test_each_process_gets_its_ops_port_from_its_role_and_hub(role, hub, port):
    assert bootstrap.settings({}).ops_port_for(role, hub) == port


def test_an_explicit_ops_port_wins_over_the_role_and_hub_rule():
    settings = Settings.from_env({"POSEIDON_OPS_PORT": "8080"})

    assert settings.ops_port_for("processor", "wallet") == 8080
    assert settings.ops_port_for("projector", "wallet") == 8080


def test_with_returns_changed_settings_and_leaves_the_original_alone():
    original = Settings.from_env({})

    changed = original.with_(topic_prefix="t.")

    assert changed.topic("wallet.events") == "t.wallet.events"
    assert original.topic("wallet.events") == "wallet.events"


def test_log_lines_never_carry_secrets_or_pii_in_clear():
    from base.logging import redact

    line = redact(None, "info", {"event": "x", "password": "hunter2", "email": "a@b.co", "command_id": "c1", "text": ""})
    assert line == {"event": "x", "password": "[redacted]", "email": "[pii]", "command_id": "c1", "text": ""}


def test_a_read_store_can_have_a_database_of_its_own_from_a_variable_or_a_secret_file(tmp_path):
    (tmp_path / "POSEIDON_PG_DSN_SAGA").write_text("postgresql://saga:s3cret@db2/sagas\n")
    settings = Settings.from_env({"POSEIDON_PG_DSN_WALLET": "postgresql://w@db1/wallets", "POSEIDON_SECRETS_DIR": str(tmp_path)})

    assert settings.dsn_for("wallet") == "postgresql://w@db1/wallets"
    assert settings.dsn_for("saga") == "postgresql://saga:s3cret@db2/sagas"
    assert settings.dsn_for("tenant") == settings.pg_dsn
    assert "s3cret" not in repr(settings)


def test_trusted_proxies_are_addresses_or_networks_and_anything_else_is_refused_by_name():
    from infra.security import AddressSet

    settings = Settings(login_trusted_proxies="10.0.0.0/8, ::1", gateway_trusted_proxies="192.0.2.10")
    pods = AddressSet(settings.login_trusted_proxies)
    assert "10.3.4.5" in pods and "::1" in pods and "11.0.0.1" not in pods and "not-an-ip" not in pods
    assert "192.0.2.10" in AddressSet(settings.gateway_trusted_proxies) and not AddressSet(())
    with pytest.raises(SettingsError, match="POSEIDON_GATEWAY_TRUSTED_PROXIES.*'lb.internal' is not an IP"):
        bootstrap.settings({"POSEIDON_GATEWAY_TRUSTED_PROXIES": "lb.internal"})


@pytest.mark.parametrize("template", ["javascript:alert(1)//{trace_id}", "http://jaeger/trace/", "ftp://x/{trace_id}"])
def test_a_trace_viewer_link_must_be_an_http_url_naming_the_trace(template):
    with pytest.raises(SettingsError, match="POSEIDON_TRACE_URL_TEMPLATE"):
        Settings(trace_url_template=template)
    assert Settings(trace_url_template="https://jaeger.example/trace/{trace_id}").trace_url_template
