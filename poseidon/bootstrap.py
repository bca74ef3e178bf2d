"""What this installation is made of, discovered from the folders: which hubs
exist (the saga hub with the saga types of `sagas/`), which read models project
them, which query services serve them, which spokes and webhooks there are, and
how the codec is built from settings. Only the composition root (`poseidon/`)
imports this module; everything below it is handed what it needs."""

from __future__ import annotations

import dataclasses
import pkgutil
from collections.abc import Mapping
from functools import lru_cache
from importlib import import_module

from base.settings import Settings
from infra.hub import HubSpec
from schemas.codec import Catalog, Codec


def _discover(package: str, module: str, attribute: str) -> list:
    """Every `<package>/<folder>/<module>.py` that defines `attribute`: a new hub
    or read model is a folder, not an edit here."""
    root = import_module(package)
    found = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{package}.{info.name}{'.' + module if module else ''}"
        try:
            found.append(getattr(import_module(name), attribute))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
        except AttributeError:
            continue
    return found


@lru_cache(maxsize=1)
def hubs() -> dict[str, HubSpec]:
    """Every `hubs/<name>/hub.py` that declares `HUB`, and the saga hub running the
    saga types of `sagas/registry.py` (its aggregate lives among the hubs, the
    processes it runs above them)."""
    from hubs.saga.hub import saga_hub
    from sagas.registry import DEFINITIONS

    found = _discover("hubs", "hub", "HUB")
    found.append(saga_hub(DEFINITIONS, hubs=[hub.name for hub in found], spokes=list(spokes())))
    return {hub.name: hub for hub in sorted(found, key=lambda h: h.name)}


def settings(env: Mapping[str, str] | None = None) -> Settings:
    """This installation's settings: `Settings.from_env(env)` knowing the gRPC port
    and ops index every discovered hub declares (`HubSpec.grpc_port`, `.ops_index`),
    under the POSEIDON_GRPC_PORT_<HUB> overrides. Entry points build theirs here, so
    `settings.grpc_port("wallet")` answers from the wallet hub's own declaration."""
    return Settings.from_env(env).with_topology(hubs().values())


def processor_hub(name: str, settings: Settings) -> HubSpec:
    """The hub as its processor runs it: its own outbox, and the StartSaga of every
    saga one of its events starts by itself (hubs/saga/dispatch.Starts)."""

    from hubs.saga.dispatch import Starts, chained
    from sagas.registry import DEFINITIONS

    spec = hub(name)
    starts = Starts(spec.name, DEFINITIONS.values(), settings)
    if not starts:
        return spec
    return dataclasses.replace(spec, outbox=chained(spec.outbox, starts))


def hub(name: str) -> HubSpec:
    try:
        return hubs()[name]
    except KeyError:
        raise KeyError(f"unknown hub {name!r}; known: {', '.join(sorted(hubs()))}") from None


@lru_cache(maxsize=1)
def spokes() -> dict:
    """Every `spokes/<name>/spoke.py` that declares `SPOKE`."""
    return {spec.name: spec for spec in _discover("spokes", "spoke", "SPOKE")}


def spoke(name: str):
    try:
        return spokes()[name]
    except KeyError:
        raise KeyError(f"unknown spoke {name!r}; known: {', '.join(sorted(spokes()))}") from None


def all_topics() -> list:
    """Every topic the platform uses: hubs, ingress, spokes."""
    from infra.topics import hub_topics, ingress_topics, spoke_topics

    specs = [spec for hub in hubs().values() for spec in hub_topics(hub)]
    specs += ingress_topics()
    specs += [spec for name in spokes() for spec in spoke_topics(name)]
    return specs


@lru_cache(maxsize=1)
def projections() -> dict:
    return {p.name: p for p in _discover("projections", "", "PROJECTION")}


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
    """The gRPC query service a hub's read model declares in `projections/<hub>/service.py`."""
    hub(hub_name)
    return import_module(f"projections.{hub_name}.service").SERVICE


def cli_queries(hub_name: str) -> list:
    try:
        module = import_module(f"projections.{hub_name}.service")
    except ModuleNotFoundError as exc:
        if exc.name != f"projections.{hub_name}.service":
            raise
        return []
    return list(getattr(module, "CLI_QUERIES", []))


def webhook_secrets() -> list[str]:
    """The settings every spoke's webhook verifies requests with (`SECRETS` in its webhook.py)."""
    return [name for names in _discover("spokes", "webhook", "SECRETS") for name in names]


def webhook_setups() -> list:
    """What spokes' webhooks give the ingress application for its lifetime (`setup` in their webhook.py)."""
    return _discover("spokes", "webhook", "setup")


def webhook_routes() -> list:
    """Every spoke's webhook routes (`spokes/<name>/webhook.py` declaring `routes()`)."""
    return [route for routes in _discover("spokes", "webhook", "routes") for route in routes()]


def http_routes() -> list:
    """Every hub's REST operations (`http_routes` of its query service), for the API gateway."""
    from infra.rest import for_hub

    routes = []
    for name in hubs():
        try:
            service = query_service(name)
        except ModuleNotFoundError as exc:  # a hub without a read model's service answers no queries
            if exc.name != f"projections.{name}.service":
                raise
            continue
        routes += for_hub(name, service.http_routes, service.http_fields)
    return routes
