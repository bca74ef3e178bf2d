"""Where a setting comes from: a POSEIDON_* variable, a secret file in
POSEIDON_SECRETS_DIR (one file per variable, as Kubernetes and Docker mount
secrets), or the default — in that order — and a bad value from either source is
refused naming its variable. Building Settings directly never reads the environment."""

from __future__ import annotations

import pytest

from base.settings import Settings, SettingsError


def test_a_secret_is_read_from_its_file_in_the_secrets_folder(tmp_path):
    (tmp_path / "POSEIDON_FACEBOOK_APP_SECRET").write_text("app-secret-from-a-file\n")
    (tmp_path / "POSEIDON_S3_SECRET_KEY").write_text("s3-key-from-a-file")

    settings = Settings.from_env({"POSEIDON_SECRETS_DIR": str(tmp_path)})

    assert settings.facebook_app_secret == "app-secret-from-a-file"  # trailing newline dropped
    assert settings.s3_secret_key == "s3-key-from-a-file"
    assert settings.odoo_api_key == Settings().odoo_api_key  # no file: the default


def test_a_variable_in_the_environment_wins_over_the_secret_file(tmp_path):
    (tmp_path / "POSEIDON_FACEBOOK_APP_SECRET").write_text("from-the-file")

    settings = Settings.from_env({"POSEIDON_SECRETS_DIR": str(tmp_path), "POSEIDON_FACEBOOK_APP_SECRET": "from-the-env"})

    assert settings.facebook_app_secret == "from-the-env"


def test_an_empty_variable_leaves_the_secret_file_in_force(tmp_path):
    (tmp_path / "POSEIDON_ODOO_API_KEY").write_text("from-the-file")

    settings = Settings.from_env({"POSEIDON_SECRETS_DIR": str(tmp_path), "POSEIDON_ODOO_API_KEY": ""})

    assert settings.odoo_api_key == "from-the-file"


def test_a_bad_value_in_a_secret_file_is_refused_naming_the_variable(tmp_path):
    (tmp_path / "POSEIDON_TOPIC_PARTITIONS").write_text("many")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"POSEIDON_SECRETS_DIR": str(tmp_path)})

    assert str(raised.value) == "POSEIDON_TOPIC_PARTITIONS must be an integer, not 'many'"


def test_a_secrets_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="POSEIDON_SECRETS_DIR"):
        Settings.from_env({"POSEIDON_SECRETS_DIR": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("POSEIDON_BREAKER_RESET_S", "soon", "POSEIDON_BREAKER_RESET_S must be a number, not 'soon'"),
        ("POSEIDON_GRPC_PORT_WALLET", "x", "POSEIDON_GRPC_PORT_WALLET must be an integer, not 'x'"),
        ("POSEIDON_GRPC_PORT_WALLET", "70000", "ports must be between 1 and 65535"),
        ("POSEIDON_INBOUND_SAGA_DEADLINES", "ask_bot", "POSEIDON_INBOUND_SAGA_DEADLINES must look like"),
    ],
)
def test_a_bad_variable_is_refused_naming_it(variable, value, message):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})

    assert str(raised.value).startswith(message)


def test_saga_deadlines_are_read_from_their_variable():
    settings = Settings.from_env({"POSEIDON_INBOUND_SAGA_DEADLINES": "ask_bot=20, deliver_reply=15"})

    assert dict(settings.inbound_saga_deadlines_s) == {"ask_bot": 20.0, "deliver_reply": 15.0}


def test_building_settings_directly_never_reads_the_environment(monkeypatch):
    monkeypatch.setenv("POSEIDON_TOPIC_PREFIX", "from-the-process.")

    assert Settings().topic_prefix == ""
    assert Settings(state_dir="/srv").topic_prefix == ""
    assert Settings.from_env().topic_prefix == "from-the-process."


def test_settings_cannot_be_changed_in_place_and_with_refuses_unknown_names():
    settings = Settings()

    with pytest.raises(ValueError):
        settings.topic_prefix = "t."  # type: ignore[misc]
    with pytest.raises(SettingsError, match="topic_prefx is not a setting"):
        settings.with_(topic_prefx="t.")
    with pytest.raises(SettingsError, match="POSEIDON_TOPIC_MIN_ISR cannot exceed"):
        settings.with_(topic_min_isr=2)  # a copy is checked like a fresh read


def test_secrets_stay_out_of_the_settings_repr():
    text = repr(Settings(facebook_app_secret="very-secret", s3_secret_key="also-secret"))

    assert "very-secret" not in text and "also-secret" not in text
    assert "kafka_bootstrap" in text
