"""A stand-in for an Odoo 19 server's external API (tests and `make run`): XML-RPC `/xmlrpc/2` with
Odoo's fault codes and JSON-2 `/json/2/<model>/<method>` with bearer keys and Odoo's error bodies, over
an in-memory `res.partner`. Not Odoo: one model, no ORM, no access rules; told to fail through `OdooState`
or `/_control/*`, and records every call."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import traceback
import xmlrpc.client
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.parsers.expat import ExpatError

from aiohttp import web

SERVER_VERSION_INFO = [19, 0, 0, "final", 0, ""]
PARTNER_FIELDS = ("id", "name", "display_name", "phone", "email", "x_facebook_psid", "comment", "active", "type", "is_company")
MAX_RECORDED_CALLS = 10_000
FAILURE_MODES = ("server_error", "500", "502", "503", "504", "429", "timeout", "access_denied", "validation", "missing", "lock")
"""`server_error`: Odoo's own internal error (fault 1 / JSON 500 with a psycopg2 error); `500`…`504`, `429`: an
HTML answer with that status, as a crashed worker or the proxy in front gives; `timeout`: the call is carried out,
then the answer waits `delay_s` (the client gives up first); `access_denied`: the credentials are refused;
`validation`, `missing`, `lock`: ValidationError, MissingError, LockError from the model method."""


# --- Odoo's exceptions, named as Odoo names them (serialize_exception uses module.class) ------


class UserError(Exception):
    __module__ = "odoo.exceptions"
    http_status = 422


class AccessDenied(UserError):
    __module__ = "odoo.exceptions"
    http_status = 403

    def __init__(self, message: str = "Access Denied"):
        super().__init__(message)


class AccessError(UserError):
    __module__ = "odoo.exceptions"
    http_status = 403


class MissingError(UserError):
    __module__ = "odoo.exceptions"
    http_status = 404


class LockError(UserError):
    __module__ = "odoo.exceptions"
    http_status = 409


class ValidationError(UserError):
    __module__ = "odoo.exceptions"


class OperationalError(Exception):
    __module__ = "psycopg2"


class HTTPException(Exception):
    """werkzeug.exceptions.*: JSON-2 serialises them with message = description, arguments = (description, code)."""

    __module__ = "werkzeug.exceptions"
    code = 500

    def __init__(self, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.description, self.headers = description, headers or {}


class BadRequest(HTTPException):
    __module__, code = "werkzeug.exceptions", 400


class Unauthorized(HTTPException):
    __module__, code = "werkzeug.exceptions", 401


class NotFound(HTTPException):
    __module__, code = "werkzeug.exceptions", 404


class MethodNotAllowed(HTTPException):
    __module__, code = "werkzeug.exceptions", 405


class UnprocessableEntity(HTTPException):
    __module__, code = "werkzeug.exceptions", 422


# --- state -----------------------------------------------------------------------------------


@dataclass
class OdooUser:
    uid: int
    login: str
    password: str
    api_keys: set[str] = field(default_factory=set)


@dataclass
class RecordedCall:
    """One request as the server understood it."""

    protocol: str
    """`xmlrpc`, `json2` or `web`."""
    path: str
    model: str = ""
    method: str = ""
    """The common-service method (`authenticate`) or the model method (`search_read`)."""
    params: Any = None
    """XML-RPC: {"args", "kwargs"} of execute_kw (or the common call's params, password masked); JSON-2: the body."""
    answer: str = ""
    """`ok`, `fault <code>` or `HTTP <status>`."""


@dataclass
class Injected:
    mode: str
    remaining: int | None
    method: str | None
    delay_s: float
    retry_after: float | None


@dataclass
class OdooState:
    """Everything the stand-in knows; tests change it and read it."""

    databases: set[str] = field(default_factory=lambda: {"poseidon"})
    users: dict[str, OdooUser] = field(default_factory=dict)
    partners: dict[int, dict[str, Any]] = field(default_factory=dict)
    partner_fields: set[str] = field(default_factory=lambda: set(PARTNER_FIELDS))
    """Remove `x_facebook_psid` to play a database without the custom field."""
    calls: list[RecordedCall] = field(default_factory=list)
    delay_s: float = 0.0
    """Added before every API answer (`slow`)."""
    injected: list[Injected] = field(default_factory=list)
    next_id: int = 7

    def __post_init__(self) -> None:
        if not self.users:
            self.add_user("admin", "admin", api_key="dev-odoo-key", uid=2)
        if not self.partners:
            # What a fresh database holds: the company and the administrator.
            self.partners[1] = _partner(1, {"name": "YourCompany", "is_company": True, "type": "contact"})
            self.partners[3] = _partner(3, {"name": "Mitchell Admin", "email": "admin@yourcompany.example.com"})

    def add_user(self, login: str, password: str, *, api_key: str | None = None, uid: int | None = None) -> OdooUser:
        uid = uid or max([u.uid for u in self.users.values()] + [5]) + 1
        user = self.users[login] = OdooUser(uid, login, password, {api_key} if api_key else set())
        return user

    def revoke_key(self, api_key: str) -> None:
        for user in self.users.values():
            user.api_keys.discard(api_key)

    def add_key(self, login: str, api_key: str) -> None:
        self.users[login].api_keys.add(api_key)

    def fail(
        self,
        mode: str,
        count: int | None = 1,
        *,
        method: str | None = None,
        delay_s: float = 30.0,
        retry_after: float | None = None,
    ) -> None:
        """The next `count` API calls (None: all, until `clear`) of `method` (None: any) fail as `mode`."""
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; one of {FAILURE_MODES}")
        self.injected.append(Injected(mode, count, method, delay_s, retry_after))

    def slow(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def clear(self) -> None:
        """Stop failing and slowing down."""
        self.injected.clear()
        self.delay_s = 0.0

    def find(self, **values: Any) -> list[dict[str, Any]]:
        return [dict(p) for p in self.partners.values() if all(p.get(k) == v for k, v in values.items())]

    def record(self, call: RecordedCall) -> RecordedCall:
        self.calls.append(call)
        if len(self.calls) > MAX_RECORDED_CALLS:  # a long `make run` must not grow without end
            del self.calls[: len(self.calls) - MAX_RECORDED_CALLS]
        return call

    def calls_of(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    def user_for_key(self, api_key: str) -> OdooUser | None:
        return next((u for u in self.users.values() if api_key in u.api_keys), None)

    def _take(self, method: str) -> Injected | None:
        for injected in self.injected:
            if injected.method not in (None, method):
                continue
            if injected.remaining is not None:
                injected.remaining -= 1
                if injected.remaining <= 0:
                    self.injected.remove(injected)
            return injected
        return None


def _partner(pid: int, vals: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {name: False for name in PARTNER_FIELDS}
    record.update({"active": True, "type": "contact", "is_company": False, **vals})
    record["id"], record["display_name"] = pid, record["name"]
    return record


# --- res.partner: the ORM methods with their real signatures (arguments bind as in Odoo) ------


class Partners:
    """`env['res.partner']` over `state.partners`, acting as user `uid`."""

    model = "res.partner"
    api_model = {"search", "search_read", "search_count", "create"}
    """@api.model methods: no ids (XML-RPC passes args as they are; JSON-2 refuses ids)."""

    def __init__(self, state: OdooState, uid: int):
        self.state, self.uid = state, uid

    def public_method(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AccessError(f"Private methods (such as {self.model}.{name}) cannot be called remotely.")
        method = getattr(self, f"rpc_{name}", None)
        if method is None:
            raise AttributeError(f"The method '{self.model}.{name}' does not exist")
        return method

    def rpc_search(self, ids, domain, offset=0, limit=None, order=None):
        matching = [pid for pid in sorted(self.state.partners) if self._matches(self.state.partners[pid], domain)]
        return matching[offset : offset + limit if limit else None]

    def rpc_search_count(self, ids, domain, limit=None):
        return len(self.rpc_search(ids, domain, limit=limit))

    def rpc_search_read(self, ids, domain=None, fields=None, offset=0, limit=None, order=None, **read_kwargs):
        found = self.rpc_search(ids, domain or [], offset, limit, order)
        return self.rpc_read(found, fields, **read_kwargs) if found else []

    def rpc_read(self, ids, fields=None, load="_classic_read"):
        ids = self._existing(ids)
        names = list(fields) if fields else sorted(self.state.partner_fields)
        for name in names:
            self._check_field(name)
        return [{"id": pid, **{n: self.state.partners[pid].get(n, False) for n in names if n != "id"}} for pid in ids]

    def rpc_create(self, ids, vals_list):
        vals_list = [vals_list] if isinstance(vals_list, dict) else vals_list
        created = []
        for vals in vals_list:
            for name in vals:
                self._check_field(name, f"Invalid field {name!r} on model {self.model!r}")
            if not vals.get("name") and vals.get("type", "contact") == "contact":
                raise ValidationError("Contacts require a name")
            pid, self.state.next_id = self.state.next_id, self.state.next_id + 1
            self.state.partners[pid] = _partner(pid, {k: v for k, v in vals.items() if k not in ("id", "display_name")})
            created.append(pid)
        return created

    def rpc_write(self, ids, vals):
        ids = self._existing(ids)
        for name in vals:
            self._check_field(name, f"Invalid field {name!r} on model {self.model!r}")
        if "name" in vals and not vals["name"]:
            raise ValidationError("Contacts require a name")
        for pid in ids:
            self.state.partners[pid].update(vals)
            self.state.partners[pid]["display_name"] = self.state.partners[pid]["name"]
        return True

    def rpc_unlink(self, ids):
        for pid in self._existing(ids):
            del self.state.partners[pid]
        return True

    def _existing(self, ids) -> list[int]:
        ids = [ids] if isinstance(ids, int) else list(ids)
        missing = [i for i in ids if i not in self.state.partners]
        if missing:
            records = f"{self.model}({', '.join(map(str, missing))},)"
            raise MissingError(f"Record does not exist or has been deleted.\n(Records: {records}, User: {self.uid})")
        return ids

    def _check_field(self, name: str, message: str | None = None) -> None:
        if name not in self.state.partner_fields:
            raise ValueError(message or f"Invalid field {name!r} on model {self.model!r}")

    def _matches(self, record: dict[str, Any], domain: list) -> bool:
        domain = list(domain)
        if not any(isinstance(leaf, (list, tuple)) and leaf and leaf[0] == "active" for leaf in domain):
            domain = ["&", ["active", "=", True], *domain] if domain else [["active", "=", True]]
        stack: list[bool] = []
        for term in reversed(domain):  # Polish notation, evaluated right to left
            if term == "!":
                stack.append(not stack.pop())
            elif term in ("&", "|"):
                a, b = stack.pop(), stack.pop()
                stack.append(a and b if term == "&" else a or b)
            else:
                stack.append(self._leaf(record, term))
        while len(stack) > 1:  # implicit '&' between top-level terms
            stack.append(stack.pop() and stack.pop())
        return stack[0] if stack else True

    def _leaf(self, record: dict[str, Any], leaf: Any) -> bool:
        if not isinstance(leaf, (list, tuple)) or len(leaf) != 3:
            raise ValueError(f"Invalid leaf {leaf!r}")
        name, op, value = leaf
        if name not in self.state.partner_fields:
            raise ValueError(f"Invalid field {self.model}.{name} in leaf {tuple(leaf)!r}")
        have = record.get(name, False)
        if op == "=":
            return have == value or (value is False and have in (False, None, ""))
        if op in ("!=", "<>"):
            return not self._leaf(record, [name, "=", value])
        if op in ("in", "not in"):
            inside = have in (value if isinstance(value, (list, tuple)) else [value])
            return inside if op == "in" else not inside
        if op in ("like", "ilike", "not like", "not ilike", "=like", "=ilike"):
            text, pattern = str(have or ""), str(value)
            if op.endswith("ilike"):
                text, pattern = text.lower(), pattern.lower()
            hit = re.fullmatch(_like_to_regex(pattern), text) is not None if op.startswith("=") else pattern in text
            return not hit if op.startswith("not") else hit
        if op in ("<", ">", "<=", ">="):
            return have is not False and {"<": have < value, ">": have > value, "<=": have <= value, ">=": have >= value}[op]
        raise ValueError(f"Invalid leaf {tuple(leaf)!r}")


def _like_to_regex(pattern: str) -> str:
    return "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)


def _model(state: OdooState, name: str, uid: int) -> Partners | None:
    return Partners(state, uid) if name == Partners.model else None


# --- XML-RPC ---------------------------------------------------------------------------------


def _xmlrpc_dumps(params: tuple | xmlrpc.client.Fault) -> bytes:
    # As odoo.addons.base.controllers.rpc.dumps: allow_none=False, the methodResponse wrapper.
    body = xmlrpc.client.Marshaller(allow_none=False).dumps(params)
    return f'<?xml version="1.0"?>\n<methodResponse>\n{body}\n</methodResponse>\n'.encode()


def _fault_for(exc: BaseException) -> xmlrpc.client.Fault:
    # xmlrpc_handle_exception_int, in its order.
    if isinstance(exc, AccessError):
        return xmlrpc.client.Fault(4, str(exc))
    if isinstance(exc, AccessDenied):
        return xmlrpc.client.Fault(3, str(exc))
    if isinstance(exc, UserError):
        return xmlrpc.client.Fault(2, str(exc))
    return xmlrpc.client.Fault(1, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _unknown_database(db: str) -> OperationalError:
    return OperationalError(
        f'connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  database "{db}" does not exist\n'
    )


def _server_error() -> OperationalError:
    return OperationalError("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally")


class XmlRpcService:
    def __init__(self, state: OdooState):
        self.state = state

    def common(self, method: str, params: tuple, denying: bool = False) -> Any:
        if method == "version":
            return {
                "server_version": "19.0",
                "server_version_info": SERVER_VERSION_INFO,
                "server_serie": "19.0",
                "protocol_version": 1,
            }
        if method in ("login", "authenticate"):
            db, login, password = params[0], params[1], params[2]
            if db not in self.state.databases:
                raise _unknown_database(db)
            user = self.state.users.get(login)
            if user is None or denying or not _accepts(user, password):
                return False  # exp_authenticate swallows AccessDenied
            return user.uid
        raise Exception(f"Method not found: {method}")

    def object(self, method: str, params: tuple) -> tuple[str, str, Callable[[bool], Any]]:
        if method == "execute_kw":
            db, uid, password, model, name, args, *rest = params
            kwargs = rest[0] if rest else {}
        elif method == "execute":
            db, uid, password, model, name, *args = params
            kwargs = {}
        else:
            raise NameError(f"Method not available {method}")
        return model, name, lambda denying: self._execute(db, uid, password, model, name, list(args), dict(kwargs or {}), denying)

    def _execute(self, db: str, uid: int, password: str, model: str, name: str, args: list, kwargs: dict, denying: bool) -> Any:
        if db not in self.state.databases:
            raise _unknown_database(db)
        user = next((u for u in self.state.users.values() if u.uid == uid), None)
        if user is None or denying or not _accepts(user, password):
            raise AccessDenied()
        records = _model(self.state, model, uid)
        if records is None:
            raise UserError(f"Object {model} doesn't exist")
        method = records.public_method(name)
        kwargs.pop("context", None)
        if name in Partners.api_model:
            result = method((), *args, **kwargs)
            if name == "create":  # _call_kw_model_create: one dict in, one id out
                return result[0] if isinstance(args[0], dict) else result
            return result
        ids, *rest = args if args else [()]
        return method(ids, *rest, **kwargs)


def _accepts(user: OdooUser, secret: str) -> bool:
    return secret == user.password or secret in user.api_keys


# --- JSON-2 ----------------------------------------------------------------------------------


def _serialize_exception(exc: BaseException) -> dict[str, Any]:
    name = f"{type(exc).__module__}.{type(exc).__name__}"
    if isinstance(exc, HTTPException):
        message, arguments = exc.description, [exc.description, exc.code]
    else:
        message, arguments = str(exc), list(exc.args)
    debug = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"name": name, "message": message, "arguments": arguments, "context": {}, "debug": debug}


def _json2_error(exc: BaseException) -> web.Response:
    # Json2RpcDispatcher.handle_error: UserError → its http_status, werkzeug → its code, anything else → 500.
    headers: dict[str, str] = {}
    if isinstance(exc, UserError):
        status = exc.http_status
    elif isinstance(exc, HTTPException):
        status, headers = exc.code, exc.headers
    else:
        status = 500
    return web.json_response(_serialize_exception(exc), status=status, headers=headers)


# --- the application -------------------------------------------------------------------------


def make_app(state: OdooState) -> web.Application:
    """The aiohttp application, for embedding; `running_odoo` is the usual way in."""
    app = web.Application()
    routes = web.RouteTableDef()
    xmlrpc_service = XmlRpcService(state)

    @routes.post("/xmlrpc/2/{service}")
    async def xmlrpc_2(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        call = RecordedCall("xmlrpc", request.path)
        state.record(call)
        try:
            params, method = xmlrpc.client.loads(await request.read(), use_builtin_types=True)
        except (ExpatError, ValueError) as exc:
            return _xml(call, _fault_for(exc))
        call.method = method or ""
        run: Callable[[bool], Any]
        try:
            if service == "common":
                call.params = [p if i != 2 else "***" for i, p in enumerate(params)]
                run = lambda denying: xmlrpc_service.common(method, params, denying)  # noqa: E731
            elif service == "object":
                call.model, call.method, run = xmlrpc_service.object(method, params)
                call.params = {"args": list(params[5]) if len(params) > 5 else [], "kwargs": params[6] if len(params) > 6 else {}}
            else:
                raise Exception(f"Unknown service {service!r}")  # noqa: TRY002 - as dispatch_rpc raises
        except Exception as exc:
            return _xml(call, _fault_for(exc))
        injected = state._take(call.method) if method != "version" else None
        if early := await _injected_answer(state, call, injected, xml=True):
            return early
        failure = _injected_failure(injected, call.model)
        try:
            if failure is not None:
                raise failure
            answer = _xml(call, run(injected is not None and injected.mode == "access_denied"))
        except Exception as exc:
            answer = _xml(call, _fault_for(exc))
        await _delay(state, injected)
        return answer

    def _xml(call: RecordedCall, result: Any) -> web.Response:
        if isinstance(result, xmlrpc.client.Fault):
            call.answer = f"fault {result.faultCode}"
            body = _xmlrpc_dumps(result)
        else:
            call.answer = "ok"
            body = _xmlrpc_dumps((result,))
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    @routes.route("*", "/json/2/{model}/{method}")
    async def json_2(request: web.Request) -> web.Response:
        model_name, method_name = request.match_info["model"], request.match_info["method"]
        call = RecordedCall("json2", request.path, model_name, method_name)
        state.record(call)
        answer = await _json2(request, call, model_name, method_name)
        call.answer = "ok" if answer.status == 200 else f"HTTP {answer.status}"
        return answer

    async def _json2(request: web.Request, call: RecordedCall, model_name: str, method_name: str) -> web.Response:
        db = request.headers.get("X-Odoo-Database") or (next(iter(state.databases)) if len(state.databases) == 1 else "")
        if db not in state.databases:
            # No database: the request is served without one, where /json/2 is not routed.
            return _html(404, "Not Found", "The requested URL was not found on the server.")
        if request.content_type != "application/json":
            return _html(400, "Bad Request", "Request inferred type is compatible with ['http'] but '/json/2/rpc' was expected.")
        injected = state._take(method_name)
        if early := await _injected_answer(state, call, injected, xml=False):
            return early
        try:
            user = _bearer_user(request, denying=injected is not None and injected.mode == "access_denied")
            if request.method != "POST":
                raise MethodNotAllowed("The method is not allowed for the requested URL.")
            params = await _json_params(request)
            call.params = params
            ids = params.pop("ids", ())
            params.pop("context", None)
            records = _model(state, model_name, user.uid)
            if records is None:
                raise NotFound(f"the model {model_name!r} does not exist")
            try:
                method = records.public_method(method_name)
            except AttributeError as exc:
                raise NotFound(exc.args[0]) from exc
            if method_name in Partners.api_model and ids:
                raise UnprocessableEntity(f"cannot call {model_name}.{method_name} with ids")
            try:
                inspect.signature(method).bind(ids, **params)
            except TypeError as exc:
                raise UnprocessableEntity(exc.args[0]) from exc
            if (failure := _injected_failure(injected, model_name)) is not None:
                raise failure
            result = method(ids, **params)
        except Exception as exc:
            return _json2_error(exc)
        await _delay(state, injected)
        return web.json_response(result)

    def _bearer_user(request: web.Request, *, denying: bool) -> OdooUser:
        header = request.headers.get("Authorization", "")
        match = re.match(r"^bearer\s+(.+)$", header, re.IGNORECASE)
        challenge = {"WWW-Authenticate": "Bearer"}
        if not match:
            raise Unauthorized("User not authenticated, use an API Key with a Bearer Authorization header.", challenge)
        user = None if denying else state.user_for_key(match[1].strip())
        if user is None:
            raise Unauthorized("Invalid apikey", challenge)
        return user

    @routes.get("/web/version")
    async def web_version(request: web.Request) -> web.Response:
        state.record(RecordedCall("web", request.path, method="version", answer="ok"))
        return web.json_response({"version_info": SERVER_VERSION_INFO, "version": "19.0"})

    # --- control API, for tests and for poking at `make run` by hand ---

    @routes.post("/_control/fail")
    async def control_fail(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            state.fail(
                body["mode"],
                body.get("count", 1),
                method=body.get("method"),
                delay_s=float(body.get("delay_s", 30.0)),
                retry_after=body.get("retry_after"),
            )
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    @routes.post("/_control/slow")
    async def control_slow(request: web.Request) -> web.Response:
        state.slow(float((await request.json()).get("delay_s", 0)))
        return web.json_response({"ok": True})

    @routes.post("/_control/reset")
    async def control_reset(request: web.Request) -> web.Response:
        state.clear()
        return web.json_response({"ok": True})

    @routes.get("/_control/requests")
    async def control_requests(request: web.Request) -> web.Response:
        return web.json_response([asdict(c) for c in state.calls])

    @routes.get("/_control/partners")
    async def control_partners(request: web.Request) -> web.Response:
        return web.json_response(list(state.partners.values()))

    app.add_routes(routes)
    return app


def _injected_failure(injected: Injected | None, model: str) -> Exception | None:
    """The model-level failures, raised where Odoo raises them (in the model method)."""
    mode = injected.mode if injected is not None else ""
    if mode == "server_error":
        return _server_error()
    if mode == "validation":
        return ValidationError("Contacts require a name")
    if mode == "missing":
        return MissingError(f"Record does not exist or has been deleted.\n(Records: {model}(0,), User: 2)")
    if mode == "lock":
        return LockError("Some records are being modified by another transaction; try again later.")
    return None


async def _injected_answer(state: OdooState, call: RecordedCall, injected: Injected | None, *, xml: bool) -> web.Response | None:
    """The failures that happen before Odoo sees the call: a crashed worker or the proxy in front of it."""
    if injected is None or not injected.mode.isdigit():
        return None
    status = int(injected.mode)
    call.answer = f"HTTP {status}"
    headers = {"Retry-After": f"{injected.retry_after:g}"} if injected.retry_after is not None else {}
    if status == 500:
        return _html(500, "Internal Server Error", "The server encountered an internal error.", headers)
    titles = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
    return web.Response(
        status=status, text=f"<html><head><title>{status} {titles[status]}</title></head>"
        f"<body><center><h1>{status} {titles[status]}</h1></center><hr><center>nginx</center></body></html>",
        content_type="text/html", headers=headers,
    )  # fmt: skip


async def _delay(state: OdooState, injected: Injected | None) -> None:
    delay = state.delay_s + (injected.delay_s if injected is not None and injected.mode == "timeout" else 0.0)
    if delay > 0:
        await asyncio.sleep(delay)


async def _json_params(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"could not parse the body as json: {exc.args[0]}") from exc
    if not isinstance(params, dict):
        raise BadRequest("could not parse the body, expecting a json object")
    return params


def _html(status: int, title: str, text: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f"<!doctype html>\n<html lang=en>\n<title>{status} {title}</title>\n<h1>{title}</h1>\n<p>{text}</p>\n"
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


@dataclass
class RunningOdoo:
    """A stand-in listening on `url`; `state` is live."""

    url: str
    state: OdooState


@asynccontextmanager
async def running_odoo(state: OdooState | None = None, port: int = 0) -> AsyncIterator[RunningOdoo]:
    """Serves the stand-in on 127.0.0.1 (a free port unless told) on the running event loop until the block ends."""
    state = state or OdooState()
    runner = web.AppRunner(make_app(state), handler_cancellation=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield RunningOdoo(url=f"http://127.0.0.1:{runner.addresses[0][1]}", state=state)
    finally:
        await runner.cleanup()


def main() -> None:
    from urllib.parse import urlsplit

    from base.settings import Settings

    default_port = urlsplit(Settings().odoo_url).port or 18083
    parser = argparse.ArgumentParser(description="Odoo external API stand-in (XML-RPC /xmlrpc/2 and JSON-2 /json/2)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    web.run_app(make_app(OdooState()), host=args.host, port=args.port, print=lambda *_: None, handler_cancellation=False)


if __name__ == "__main__":
    main()
