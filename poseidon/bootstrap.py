"""The only place where dependencies are wired: which hubs exist, which read
models project them, and how the codec is built from settings."""

from __future__ import annotations

from functools import lru_cache

from infra.hub import HubSpec
from poseidon.settings import Settings
from schemas.codec import Catalog, Codec


def hubs() -> dict[str, HubSpec]:
    from hubs.wallet.hub import HUB as WALLET

    return {hub.name: hub for hub in (WALLET,)}


def hub(name: str) -> HubSpec:
    try:
        return hubs()[name]
    except KeyError:
        raise KeyError(f"unknown hub {name!r}; known: {', '.join(sorted(hubs()))}") from None


def projections() -> dict:
    from projections.wallet import PROJECTION as WALLET

    return {p.name: p for p in (WALLET,)}


def projection(name: str):
    try:
        return projections()[name]
    except KeyError:
        raise KeyError(f"unknown read model {name!r}; known: {', '.join(sorted(projections()))}") from None


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog.load()


def codec(settings: Settings) -> Codec:
    """Single-object encoding, or Confluent framing when a registry URL is set
    (every newest schema is registered up front, off the hot path)."""
    if not settings.schema_registry_url:
        return Codec(catalog())
    from schemas.registry import ConfluentSchemaRegistry

    registry = ConfluentSchemaRegistry(settings.schema_registry_url)
    registry.register_all(catalog())
    return Codec(catalog(), registry)


def query_service(hub_name: str):
    """The gRPC query service a hub declares in `hubs/<hub>/service.py`."""
    from importlib import import_module

    hub(hub_name)
    return import_module(f"hubs.{hub_name}.service").SERVICE


def cli_queries(hub_name: str) -> list:
    from importlib import import_module

    try:
        module = import_module(f"hubs.{hub_name}.service")
    except ModuleNotFoundError as exc:
        if exc.name != f"hubs.{hub_name}.service":
            raise
        return []
    return list(getattr(module, "CLI_QUERIES", []))
