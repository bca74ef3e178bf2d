"""Writes the Kubernetes JSON schemas kubeconform validates the chart against, offline:
from the OpenAPI document Kubernetes publishes in its own Go module (k8s.io/kubernetes,
api/openapi-spec/swagger.json, fetched by `go mod download` from the Go module proxy),
one file per kind in kubeconform's layout (`deployment-apps-v1.json`). Build tooling
only (stdlib, run by the Makefile); nothing in the platform imports it.

    python infra/helm/k8s_schemas.py <swagger.json> <output folder>

What yannh/kubernetes-json-schema's `-standalone-strict` flavour holds, made the same
way as its openapi2jsonschema: every object schema that lists properties refuses
others (`additionalProperties: false`, kubectl's own validation), IntOrString and
Quantity accept a string or a number, and each file carries the definitions it
references, so it stands alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

GVK = "x-kubernetes-group-version-kind"
REF_PREFIX = "#/definitions/"
# Values the API server accepts as a string or a number (`port: 8080` or `port: ops`, `memory: 256Mi`).
STRING_OR_NUMBER = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
}


def strict(node):
    """A copy of a schema in which every object listing properties allows no others."""
    if isinstance(node, dict):
        copy = {key: strict(value) for key, value in node.items()}
        if "properties" in copy and "additionalProperties" not in copy:
            copy["additionalProperties"] = False
        return copy
    if isinstance(node, list):
        return [strict(value) for value in node]
    return node


def references(node) -> set[str]:
    """The definition names a schema refers to directly."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref[len(REF_PREFIX) :])
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


def closure(name: str, definitions: dict) -> dict:
    """`name` and every definition reachable from it."""
    seen: dict = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in definitions:
            continue
        seen[current] = definitions[current]
        todo.extend(references(definitions[current]))
    return seen


def file_name(kind: str, group: str, version: str) -> str:
    """kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json`: the kind, the group's first
    label and the version, lower case (`deployment-apps-v1`, `service-v1`, `ingress-networking-v1`)."""
    parts = [kind, group.split(".")[0], version] if group else [kind, version]
    return "-".join(parts).lower() + ".json"


def write_schemas(swagger: dict, output: Path) -> int:
    definitions = {name: STRING_OR_NUMBER.get(name, strict(schema)) for name, schema in swagger["definitions"].items()}
    output.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in swagger["definitions"].items():
        kinds = schema.get(GVK, [])
        if len(kinds) != 1:  # meta types (DeleteOptions, WatchEvent) name every group: not a resource
            continue
        gvk = kinds[0]
        document = {"$ref": REF_PREFIX + name, "definitions": closure(name, definitions)}
        (output / file_name(gvk["kind"], gvk.get("group", ""), gvk["version"])).write_text(json.dumps(document))
        written += 1
    return written


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: k8s_schemas.py <swagger.json> <output folder>")
    swagger = json.loads(Path(argv[0]).read_text())
    count = write_schemas(swagger, Path(argv[1]))
    print(f"{count} Kubernetes schemas written to {argv[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
