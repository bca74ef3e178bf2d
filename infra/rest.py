"""The REST face of the hubs' gRPC methods: a route declares an HTTP method and path
for one gRPC method; this module turns an HTTP request into that method's protobuf
request (path, query string or JSON body, and the Idempotency-Key / If-Match
headers), its reply into JSON, a gRPC refusal into an RFC 9457 problem, and every
route into OpenAPI 3.1. Pure: no I/O. The gateway (infra/gateway.py) serves it.

Why transcoding rather than a second set of handlers: the gRPC services already
parse, authorise (the caller's own token is passed through) and answer; the REST
API is the same API, so tenant isolation and roles are exactly those of gRPC and a
new gRPC method becomes an HTTP operation by one declaration."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HEADER_VALUE = 200
_PATH_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_RULE = re.compile(r"^([A-Z][A-Za-z0-9]+): (.*)$", re.S)
_RETRY_IN = re.compile(r"retry in (\d+) ?s")
_VISIBLE = re.compile(r"^[\x21-\x7e]+$")


UUID_FIELD = {"type": "string", "format": "uuid"}
"""The OpenAPI description of a UUID request field (a service's `http_fields`)."""


class BadRequest(ValueError):
    """The HTTP request cannot become the method's request; the message says why."""


@dataclass(frozen=True)
class Route:
    """One HTTP operation answered by one gRPC method of `hub`."""

    http_method: str
    path: str
    """`/v1/tenants/{tenant_id}/…`: each `{name}` fills the request field `name`."""
    method: MethodDescriptor
    summary: str
    status: int = 200
    public: bool = False
    """Callable without a bearer token (the gRPC method is public too)."""
    idempotency_field: str | None = None
    """The request field the `Idempotency-Key` header fills (a command id): a resend gets the first outcome."""
    version_field: str | None = None
    """The request field `If-Match: "<version>"` fills (the expected version)."""
    affects: str | None = None
    """The read path (a template over this route's path parameters) whose resource this
    write changes: its reply carries a consistency token for reads of that path."""
    hub: str = ""
    """Filled by `for_hub` (the hub whose gRPC server answers)."""
    fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """JSON Schema of request fields by name, beyond their protobuf type (a pattern, an
    enum, a length): documented in OpenAPI. Filled by `for_hub` from the service's vocabulary."""

    @property
    def operation_id(self) -> str:
        return self.method.name[:1].lower() + self.method.name[1:]

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    @property
    def takes_body(self) -> bool:
        return self.http_method in ("POST", "PUT", "PATCH")

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def reply_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    def open_fields(self) -> list[FieldDescriptor]:
        """Request fields the caller gives in the body or query string (not the path, not headers)."""
        hidden = {*self.path_params, self.idempotency_field, self.version_field}
        return [f for f in self.method.input_type.fields if f.name not in hidden]


def for_hub(hub: str, routes: Iterable[Route], fields: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Route, ...]:
    """The routes answered by `hub`, their fields described by the hub's vocabulary."""
    return tuple(Route(**{**r.__dict__, "hub": hub, "fields": {**(fields or {}), **r.fields}}) for r in routes)


def methods(pb2_module, service: str) -> SimpleNamespace:
    """`methods(wallet_pb2, "WalletQuery").GetBalance`: the method descriptors of a service."""
    return SimpleNamespace(**pb2_module.DESCRIPTOR.services_by_name[service].methods_by_name)


def check_routes(routes: Iterable[Route]) -> None:
    """Declarations that cannot work fail at start, not on the first request."""
    routes = list(routes)
    seen: set[tuple[str, str]] = set()
    for r in routes:
        names = {f.name for f in r.method.input_type.fields}
        missing = [p for p in (*r.path_params, r.idempotency_field, r.version_field) if p and p not in names]
        if missing:
            raise ValueError(f"{r.http_method} {r.path}: {r.method.full_name} has no field {', '.join(missing)}")
        if (r.http_method, r.path) in seen:
            raise ValueError(f"{r.http_method} {r.path} is declared twice")
        seen.add((r.http_method, r.path))
    reads = {r.path: r for r in routes if r.http_method == "GET"}
    for r in routes:
        if r.affects is None:
            continue
        read = reads.get(r.affects)
        if read is None or not reply_has_version(read) or not reply_has_version(r):
            raise ValueError(
                f"{r.http_method} {r.path} affects {r.affects}: a consistency token needs a read of that path "
                "and a version in both replies"
            )
        if missing := set(read.path_params) - set(r.path_params) - {f.name for f in r.method.output_type.fields}:
            raise ValueError(f"{r.http_method} {r.path} affects {r.affects} but cannot fill {', '.join(sorted(missing))}")


# -- request --------------------------------------------------------------------------------


def build_request(
    route: Route,
    path_params: Mapping[str, str],
    query: Mapping[str, list[str]],
    body: Any,
    headers: Mapping[str, str],
    caller: str = "",
) -> Message:
    """The method's request from the path, query string or JSON body, and headers. The
    Idempotency-Key becomes a command id of the `caller`'s own (`idempotency_id`)."""
    open_names = {f.name: f for f in route.open_fields()}
    values: dict[str, Any] = {}
    if route.takes_body:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        unknown = sorted(set(body) - set(open_names))
        if unknown:
            raise BadRequest(f"unknown field(s) in the body: {', '.join(unknown)}")
        values.update(body)
    unknown = sorted(set(query) - (set() if route.takes_body else set(open_names)))
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    if not route.takes_body:
        for name, given in query.items():
            f = open_names[name]
            values[name] = [_query_value(f, v) for v in given] if f.is_repeated else _query_value(f, _single(name, given))
    values.update(path_params)
    if route.http_method in WRITE_METHODS and not route.idempotency_field and "Idempotency-Key" in headers:
        raise BadRequest("this operation takes no Idempotency-Key (it is safe to repeat, or has no command id)")
    if not route.version_field and "If-Match" in headers:
        raise BadRequest("this operation takes no If-Match (its hub checks no expected version)")
    if route.idempotency_field and (key := headers.get("Idempotency-Key")) is not None:
        values[route.idempotency_field] = idempotency_id(caller, _header_token("Idempotency-Key", key))
    if route.version_field and (match := headers.get("If-Match")) is not None and match.strip() != "*":
        values[route.version_field] = parse_etag(match)
    request = route.request_class()()
    try:
        json_format.ParseDict(values, request)
    except json_format.ParseError as exc:
        raise BadRequest(_parse_error(str(exc))) from None
    return request


def _query_value(f: FieldDescriptor, text: str) -> Any:
    """A query string's value as the JSON value its field takes (`?active_only=true`)."""
    if f.type == FieldDescriptor.TYPE_BOOL:
        if text not in ("true", "false"):
            raise BadRequest(f"query parameter {f.name} must be true or false")
        return text == "true"
    return text  # numbers, enums, timestamps: protobuf's JSON parser reads their text


IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:gateway:idempotency-key")


def idempotency_id(caller: str, key: str) -> str:
    """The command id an Idempotency-Key stands for: the caller's own, so two clients that
    happen to pick one key never get each other's outcome (nor can one spoil another's key)."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{caller}\n{key}")) if caller else key


def _single(name: str, given: list[str]) -> str:
    if len(given) != 1:
        raise BadRequest(f"query parameter {name} is given {len(given)} times")
    return given[0]


def _header_token(name: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_HEADER_VALUE or not _VISIBLE.match(value):
        raise BadRequest(f"{name} must be 1..{MAX_HEADER_VALUE} visible ASCII characters")
    return value


def parse_etag(value: str) -> int:
    """`"7"` (or `W/"7"`) → 7: the version an If-Match names."""
    m = re.fullmatch(r'\s*(?:W/)?"(\d{1,18})"\s*', value)
    if m is None:
        raise BadRequest('If-Match must be one version as an entity tag, e.g. "7"')
    return int(m.group(1))


def etag(version: int) -> str:
    return f'"{version}"'


def _parse_error(text: str) -> str:
    # ParseDict's messages name the field and the value; keep them short and path-free.
    text = text.replace("Failed to parse ", "").replace(" field: ", ": ")
    return f"invalid request: {text[:300]}"


# -- reply ----------------------------------------------------------------------------------


def reply_json(reply: Message) -> dict[str, Any]:
    """The reply as JSON: proto field names, every field present, int64 as a number
    where a double holds it exactly (else a string), timestamps RFC 3339."""
    return json_format.MessageToDict(
        reply, always_print_fields_with_no_presence=True, preserving_proto_field_name=True, unquote_int64_if_possible=True
    )


def reply_version(reply: Message) -> int | None:
    """The resource's version when the reply has one (an entity tag and consistency token)."""
    if any(f.name == "version" and f.type in _INTEGERS for f in reply.DESCRIPTOR.fields):
        return int(reply.version)
    return None


def fill_path(template: str, params: Mapping[str, str]) -> str:
    return _PATH_PARAM.sub(lambda m: str(params[m.group(1)]), template)


def consistency_token(path: str, version: int) -> str:
    """An opaque token a read of `path` waits on until it shows `version` (bounded)."""
    return base64.urlsafe_b64encode(f"{path}\n{version}".encode()).decode().rstrip("=")


def parse_consistency_token(token: str) -> tuple[str, int]:
    try:
        path, version = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("\n")
        return path, int(version)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadRequest("Poseidon-Consistency-Token is not a token this API issued") from None


# -- refusals as problems (RFC 9457) --------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    status: int
    title: str
    detail: str
    rule: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, instance: str, request_id: str) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.rule}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "rule": self.rule,
            "request_id": request_id,
        }


_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "Invalid request", "InvalidArgument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "Invalid request", "OutOfRange"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "Not authenticated", "Unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Not allowed", "PermissionDenied"),
    grpc.StatusCode.NOT_FOUND: (404, "Not found", "NotFound"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "Already exists", "AlreadyExists"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "Refused by a rule", "FailedPrecondition"),
    grpc.StatusCode.ABORTED: (409, "Conflict", "Aborted"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "Too many requests", "TooManyRequests"),
    grpc.StatusCode.UNAVAILABLE: (503, "Unavailable", "Unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "No answer in time", "Timeout"),
}
_OWN_UNAVAILABLE = ("read store unavailable", "the hub did not answer in time")
"""How our gRPC servers word UNAVAILABLE themselves (infra/grpc_server.py): passed on as they are."""
PRECONDITION_RULES = frozenset({"VersionConflict"})
"""Rules that mean the If-Match version was not the current one: 412."""


def problem_of(code: grpc.StatusCode, details: str) -> Problem:
    """The problem for a gRPC refusal; a rejected command's "<Rule>: <reason>" names the rule."""
    status, title, rule = _STATUS.get(code, (502, "The hub failed", "HubError"))
    detail = details or title
    if status == 502:
        detail = "the hub could not answer this request"  # never a hub's internal message
    elif status in (503, 504) and not _RETRY_IN.search(detail) and not detail.startswith(_OWN_UNAVAILABLE):
        # gRPC's own connection errors name addresses inside the platform: say what matters.
        detail = "the hub is unavailable; retry" if status == 503 else "the hub did not answer in time; retry"
    elif m := _RULE.match(detail):
        rule, detail = m.group(1), m.group(2)
        if rule in PRECONDITION_RULES:
            status, title = 412, "Precondition failed"
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="poseidon"'
    if status in (429, 503):
        retry = _RETRY_IN.search(detail)
        headers["Retry-After"] = retry.group(1) if retry else "1"
    return Problem(status, title, detail, rule, headers)


def problem(status: int, rule: str, detail: str, headers: Mapping[str, str] | None = None) -> Problem:
    titles = {400: "Invalid request", 401: "Not authenticated", 404: "Not found", 405: "Method not allowed"}
    titles |= {406: "Not acceptable", 413: "Body too large", 415: "Unsupported media type", 429: "Too many requests"}
    return Problem(status, titles.get(status, "Refused"), detail, rule, dict(headers or {}))


# -- OpenAPI 3.1 ----------------------------------------------------------------------------

_INTEGERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
_WIDE = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UNSIGNED_WIDE = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_WELL_KNOWN = {"google.protobuf.Timestamp": {"type": "string", "format": "date-time"}}
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "rule"],
    "properties": {
        "type": {"type": "string", "description": "`/problems/<rule>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "rule": {"type": "string", "description": "The rule that refused, e.g. InsufficientFunds, VersionConflict"},
        "request_id": {"type": "string"},
    },
}


def field_schema(f: FieldDescriptor, refs: dict[str, Descriptor]) -> dict[str, Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        value = f.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _scalar_schema(value, refs)}
    schema = _scalar_schema(f, refs)
    return {"type": "array", "items": schema} if f.is_repeated else schema


def _scalar_schema(f: FieldDescriptor, refs: dict[str, Descriptor]) -> dict[str, Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        name = f.message_type.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        refs[name] = f.message_type
        return {"$ref": f"#/components/schemas/{name}"}
    if t == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if t == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if t in _WIDE:
        # Protobuf's JSON mapping: a number when a double holds it exactly, else a decimal string.
        return {"type": ["integer", "string"], "format": "int64", "pattern": r"^-?[0-9]{1,19}$"}
    if t in _UNSIGNED_WIDE:
        return {"type": ["integer", "string"], "format": "uint64", "minimum": 0, "pattern": r"^[0-9]{1,20}$"}
    if t in _INTEGERS:
        signed = t not in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)
        return {"type": "integer", "format": "int32" if signed else "uint32", **({} if signed else {"minimum": 0})}
    return {"type": "string"}


def message_schema(
    d: Descriptor, refs: dict[str, Descriptor], fields: Iterable[FieldDescriptor] | None = None, *, reply: bool
) -> dict:
    chosen = list(d.fields if fields is None else fields)
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: field_schema(f, refs) for f in chosen},
    }
    if reply:  # every field is printed, except optional ones left unset
        required = [f.name for f in chosen if not (f.has_presence and not f.is_repeated)]
        schema["required"] = required
        schema["additionalProperties"] = True  # a newer hub may add fields; clients ignore them
    return schema


_PROBLEM_REF = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_REFUSALS = {
    400: "The request is malformed (the detail names the field)",
    401: "No valid bearer token (or, signing in, wrong credentials)",
    403: "The caller's role does not allow this, or the tenant is not the caller's (exactly as if it did not exist)",
    404: "Not found",
    409: "Refused by a rule (`rule` names it, e.g. InsufficientFunds, ChannelTaken)",
    429: "Too many requests: wait Retry-After seconds",
    503: "A hub or its read store is unavailable: retry after Retry-After seconds",
    504: "The hub did not decide in time: resend with the same Idempotency-Key to learn the outcome",
}


def operation(
    route: Route, refs: dict[str, Descriptor], links: dict[str, Any], affected: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The OpenAPI operation object of a route."""
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, **route.fields.get(p, {})}}
        for p in route.path_params
    ]
    if not route.takes_body:
        for f in route.open_fields():
            schema = {**field_schema(f, refs), **route.fields.get(f.name, {})}
            params.append({"name": f.name, "in": "query", "required": False, "schema": schema})
    if route.idempotency_field:
        params.append(
            _header(
                "Idempotency-Key",
                "Makes the write safe to resend: a resend gets the first outcome.",
                {"maxLength": MAX_HEADER_VALUE, "pattern": "^[\\x21-\\x7e]+$"},
            )
        )
    if route.version_field:
        params.append(
            _header(
                "If-Match",
                'The version the write expects, as an entity tag (`"7"`); `*` or absent: any.',
                {"pattern": '^(\\*|(W/)?"[0-9]{1,18}")$'},
            )
        )
    if route.http_method == "GET" and reply_has_version(route):
        params.append(
            _header("Poseidon-Consistency-Token", "From a write's reply: wait (bounded) until this read shows that write.", {})
        )
    reply = route.method.output_type
    refs[reply.full_name] = reply
    success: dict[str, Any] = {
        "description": "OK" if route.status == 200 else "Created",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{reply.full_name}"}}},
    }
    headers = {"X-Request-Id": {"schema": {"type": "string"}, "description": "This request's id (also in every log line)."}}
    if reply_has_version(route):
        headers["ETag"] = {"schema": {"type": "string"}, "description": "The resource's version as an entity tag."}
    if route.affects:
        headers["Poseidon-Consistency-Token"] = {
            "schema": {"type": "string"},
            "description": f"Give it to `GET {route.affects}` to read this write.",
        }
    success["headers"] = headers
    if links:
        success["links"] = links
    responses: dict[str, Any] = {str(route.status): success}
    for status, why in _REFUSALS.items():  # a public method refuses wrong credentials with 401 too
        responses[str(status)] = {"description": why, "content": _PROBLEM_REF}
    if route.takes_body:
        responses["413"] = {"description": "The body is larger than the gateway accepts", "content": _PROBLEM_REF}
        responses["415"] = {"description": "The body is not application/json", "content": _PROBLEM_REF}
    responses["default"] = {"description": "An error on the platform's side", "content": _PROBLEM_REF}
    if route.version_field:
        responses["412"] = {
            "description": "If-Match names a version that is not the current one (VersionConflict)",
            "content": _PROBLEM_REF,
        }
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.hub],
        "parameters": params,
        "responses": responses,
        "x-grpc-method": route.grpc_path,
    }
    if route.takes_body:
        body = message_schema(route.method.input_type, refs, route.open_fields(), reply=False)
        for name, extra in route.fields.items():
            if name in body["properties"]:
                body["properties"][name] = {**body["properties"][name], **extra}
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    if route.public:
        op["security"] = []
    return op


def reply_has_version(route: Route) -> bool:
    return any(f.name == "version" and f.type in _INTEGERS for f in route.method.output_type.fields)


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string", **schema}}


def links_of(route: Route, routes: Iterable[Route]) -> dict[str, Any]:
    """OpenAPI links from a write to the read of what it changed (clients and schemathesis's
    stateful runs follow them): each path parameter of the read from the reply when it has
    that field, else from this request's path."""
    if not route.affects:
        return {}
    reply_fields = {f.name for f in route.method.output_type.fields}
    out = {}
    for read in routes:
        if read.http_method == "GET" and read.path == route.affects:
            params = {
                p: f"$response.body#/{p}" if p in reply_fields else f"$request.path.{p}"
                for p in read.path_params
                if p in reply_fields or p in route.path_params
            }
            out[read.method.name] = {"operationId": read.operation_id, "parameters": params}
    return out


def openapi_document(
    routes: Iterable[Route], *, title: str, version: str, description: str, extra_paths: Mapping[str, dict] | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes (and of the gateway's own `extra_paths`)."""
    routes = list(routes)
    refs: dict[str, Descriptor] = {}
    paths: dict[str, dict[str, Any]] = {}
    affected = frozenset(r.affects for r in routes if r.affects)
    for route in routes:
        paths.setdefault(route.path, {})[route.http_method.lower()] = operation(route, refs, links_of(route, routes), affected)
    for path, item in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(item)
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    done: set[str] = set()
    while pending := sorted(set(refs) - done):
        for name in pending:
            done.add(name)
            schemas[name] = message_schema(refs[name], refs, reply=True)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": name} for name in sorted({r.hub for r in routes} | {"meta"})],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "client": {"type": "http", "scheme": "basic", "description": "An OAuth client's id and secret"},
            },
        },
    }
