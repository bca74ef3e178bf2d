"""Each hub declares its gRPC port and ops-port index, each spoke its ops index
(HubSpec / SpokeSpec); no settings table repeats them. The numbers are the ones
docs, the Makefile and the Kubernetes manifests use, and the composition root
registers them in the Settings it builds, overridable per hub."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from base.settings import Settings, SettingsError
from poseidon import bootstrap, devstack

ARCHITECTURE_PORTS = {
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


def test_every_hub_declares_the_grpc_port_and_ops_index_of_the_architecture():
    hubs = bootstrap.hubs()

    assert {name: hub.grpc_port for name, hub in hubs.items()} == ARCHITECTURE_PORTS
    assert {name: hub.ops_index for name, hub in hubs.items()} == {h: p - 50050 for h, p in ARCHITECTURE_PORTS.items()}


def test_every_spoke_declares_a_distinct_ops_index():
    assert {name: spoke.ops_index for name, spoke in bootstrap.spokes().items()} == {
        "facebook": 1,
        "botpress": 2,
        "odoo": 3,
        "minio": 4,
    }


def test_settings_built_by_the_composition_root_answer_from_the_declarations():
    settings = bootstrap.settings({})

    assert settings.grpc_port("saga") == 50059
    assert settings.ops_port_for("projector", "identity") == 9201
    assert (settings.ops_port_for("router", "message"), settings.ops_port_for("router", "saga")) == (9508, 9509)
    assert settings.ops_port_at("spoke", bootstrap.spoke("minio").ops_index) == 9404


def test_an_override_already_in_the_settings_wins_over_the_declaration():
    settings = Settings(grpc_ports={"wallet": 6056}).with_topology(bootstrap.hubs().values())

    assert settings.grpc_port("wallet") == 6056
    assert settings.grpc_port("config") == 50057


def test_settings_without_the_topology_say_where_to_get_it():
    with pytest.raises(SettingsError, match="bootstrap.settings"):
        Settings.from_env({}).grpc_port("wallet")
    with pytest.raises(SettingsError, match="bootstrap.settings"):
        Settings.from_env({}).ops_port_for("processor", "wallet")
    assert Settings.from_env({"POSEIDON_GRPC_PORT_NOTE": "50060"}).grpc_port("note") == 50060


def test_two_hubs_declaring_the_same_port_are_refused():
    hubs = [SimpleNamespace(name="a", grpc_port=50070, ops_index=20), SimpleNamespace(name="b", grpc_port=50070, ops_index=21)]

    with pytest.raises(SettingsError, match="hubs a and b both declare grpc_port 50070"):
        Settings().with_topology(hubs)


def test_an_explicit_ops_port_wins_for_spokes_too():
    assert Settings(ops_port=8080).ops_port_at("spoke", 1) == 8080
    assert Settings().ops_port_at("spoke", 1) == 9401


def test_the_dev_stack_lists_the_declared_ports():
    rows = {name: (url, serves) for name, url, serves in devstack.endpoints(bootstrap.settings({}))}

    assert rows["wallet-grpc"] == ("http://127.0.0.1:9306/healthz", "gRPC 127.0.0.1:50056")
    assert rows["spoke-facebook"][0] == "http://127.0.0.1:9401/healthz"
    assert rows["saga-driver"][0] == "http://127.0.0.1:9509/healthz"
    assert rows["gateway"] == ("http://127.0.0.1:9070/healthz", "REST API http://127.0.0.1:8070/openapi.json")
