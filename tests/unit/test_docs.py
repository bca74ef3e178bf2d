"""The hub reference in docs/hubs.md is generated from the schemas and protos;
this fails when someone changed them without regenerating (`make docs`)."""

from poseidon import docs


def test_the_hub_reference_matches_the_schemas_and_protos():
    assert docs.OUTPUT.read_text() == docs.render(), "docs/hubs.md is stale: run `make docs`"


def test_the_reference_names_every_wallet_command_event_and_method():
    text = docs.render()
    for name in ("CreditFunds", "FundsCredited (v2)", "ReservationCaptured", "`GetBalance`", "`ListLedger`", "port 50056"):
        assert name in text


def test_the_api_document_matches_the_route_declarations():
    assert docs.API_OUTPUT.read_text() == docs.render_api(), "docs/openapi/api.json is stale: run `make docs`"
