"""A stand-in for the Botpress Chat API (the Chat integration's HTTP API) with a bot
behind it: the paths, bodies, status codes, HS256 user keys and Botpress error bodies
our client meets, plus the webhook push of signals. Not Botpress: memory only, one
scripted bot per webhook id. Tests steer it through `BotpressState` or `/_control`.

API (base `{url}/{webhook_id}`; every call but createUser and the connection check needs `x-user-key`):
  GET  /hello/                                            200 {} (the connection check @botpress/chat makes first)
  POST /users {id?, name?, pictureUrl?, profile?}          201 {"user", "key"}
  POST /users/get-or-create {name?, pictureUrl?, profile?} 200 {"user"}: the key's user; with an encryption key
                                                          set (manual authentication) a key signed by it makes its
                                                          user on first use, as Botpress does
  GET  /users/me                                          200 {"user"}
  POST /conversations {id?}                               201 {"conversation"}
  POST /conversations/get-or-create {id}                  200 {"conversation"} (201 when it made it)
  GET  /conversations?nextToken=                          200 {"conversations" (newest first), "meta"}
  GET  /conversations/{id}                                200 {"conversation"}
  POST /messages {conversationId, payload, metadata?}     201 {"message"}
  GET  /messages/{id}                                     200 {"message"}
  GET  /conversations/{id}/messages?nextToken=            200 {"messages" (newest first), "meta": {"nextToken"?}}
  GET  /conversations/{id}/listen                         200 text/event-stream: one `data: <signal JSON>` event per
                                                          message created in the conversation from then on (the
                                                          same signal the webhook push carries), `: ping` comments
                                                          every `listen_ping_s`
Errors: {"id": "err_<UTC YYYYMMDDHHMMSS>x<8 hex>", "code", "type", "message"} as Botpress
sends them; 429 also carries `Retry-After: <seconds>`. An unknown webhook id is a 404.

Push: with `push_url` set, every message_created signal is POSTed there as
`{"type": "message_created", "data": {<message>, "isBot": bool}}` with the header
`x-bp-secret: <push_secret>` (the Chat integration's "Webhook URL" / "Webhook Secret").

The scripted bot answers a user message by its `value` (a chosen option: how a channel
sends a quick reply or button, `{"type": "text", "text": <title>, "value": <payload>}`)
if it has one, else by its text; replies are text or full Chat API payloads (choice,
dropdown, card, carousel, image, file, audio, video, location, markdown, bloc).

Control (`/_control/...`, JSON): POST fail {"mode", "count", "operation"?, "delay_s"?},
POST script {"text": [replies]}, POST bot {"delay_s"?, "silent"?}, POST push {"url", "secret"},
POST webhook {"id"}, POST reset, GET requests. Fault modes: "500", "503" (a gateway's
text answer), "429", "401", "403", "slow" (answers after `delay_s`), "lost_response"
(does the work, then answers 502 as a gateway that lost the answer).
Run alone: `python -m tests.standins.botpress --port 18082`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
from aiohttp import web

DEFAULT_WEBHOOK_ID = "poseidon-dev"
FAULT_MODES = ("500", "503", "429", "401", "403", "slow", "lost_response")
PAYLOAD_TYPES = (
    "text",
    "markdown",
    "image",
    "audio",
    "video",
    "file",
    "location",
    "card",
    "carousel",
    "choice",
    "dropdown",
    "bloc",
)
_ERROR_TYPES = {400: "InvalidPayload", 401: "Unauthorized", 403: "Forbidden", 404: "ResourceNotFound", 409: "AlreadyExists"}


@dataclass
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    operation: str
    """Chat API operation name (`createUser`…), or "" for unknown paths."""
    webhook_id: str
    query: dict[str, str]
    authenticated: bool
    """Whether it carried an x-user-key header (valid or not)."""
    body: Any


@dataclass
class Fault:
    mode: str
    remaining: int
    operation: str | None = None
    delay_s: float = 5.0


@dataclass
class BotpressState:
    """Everything the stand-in knows and does; tests read and steer it."""

    webhook_ids: set[str] = field(default_factory=lambda: {DEFAULT_WEBHOOK_ID})
    signing_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Conversation id → its messages, oldest first."""
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    script: dict[str, list[str | dict[str, Any]]] = field(default_factory=dict)
    """User text → the bot's replies (text or full payloads); anything else gets "echo: <text>"."""
    reply_delay_s: float = 0.02
    bot_silent: bool = False
    manual_auth: bool = False
    """As with an encryption key configured: createUser is refused (403 Forbidden)."""
    encryption_key: str = ""
    """The Chat integration's encryption key (manual authentication): user keys signed by it (HS256, `{"id"}`) are accepted."""
    page_size: int = 20
    retry_after_s: int = 1
    push_url: str = ""
    push_secret: str = ""
    pushes: list[tuple[int | str, dict[str, Any]]] = field(default_factory=list)
    """(status or error name, body) of every push attempt."""
    listeners: dict[str, set[asyncio.Queue]] = field(default_factory=dict)
    """Conversation id → the queues of its open listen streams."""
    listen_ping_s: float = 15.0
    _bot_tasks: set[asyncio.Task] = field(default_factory=set)

    def fail(self, mode: str, count: int = 1, *, operation: str | None = None, delay_s: float = 5.0) -> None:
        """The next `count` requests (of `operation` only, if given) answer with this fault."""
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, not {mode!r}")
        self.faults.append(Fault(mode, count, operation, delay_s))

    def add_webhook(self, webhook_id: str) -> None:
        self.webhook_ids.add(webhook_id)

    def revoke_user(self, user_id: str) -> None:
        """Delete a user: its key answers 401 from now on."""
        self.users.pop(user_id, None)

    def delete_conversation(self, conversation_id: str) -> None:
        self.conversations.pop(conversation_id, None)
        self.messages.pop(conversation_id, None)

    def rotate_signing_secret(self) -> None:
        """Every key issued so far stops working (as when the integration is reinstalled)."""
        self.signing_secret = secrets.token_hex(16)

    def calls(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if r.operation == operation]

    def user_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.get(conversation_id, []) if not self.users.get(m["userId"], {}).get("bot")]

    async def settled(self) -> None:
        """Wait until the bot has answered everything it was sent."""
        while self._bot_tasks:
            await asyncio.gather(*list(self._bot_tasks), return_exceptions=True)

    def reset(self) -> None:
        """Back to a fresh stand-in: no users, conversations, faults, scripts or records."""
        fresh = BotpressState()
        for name, value in vars(fresh).items():
            if name not in ("signing_secret", "_bot_tasks"):
                setattr(self, name, value)

    def _take_fault(self, operation: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.operation in (None, operation):
                fault.remaining -= 1
                return fault
        return None

    def _secret(self, webhook_id: str) -> str:
        return f"{self.signing_secret}:{webhook_id}"

    def _bot_user(self, webhook_id: str) -> str:
        user_id = f"user_bot_{webhook_id}"
        if user_id not in self.users:
            self.users[user_id] = {**_stamp({"id": user_id, "name": "bot"}), "webhook_id": webhook_id, "bot": True}
        return user_id


def make_app(state: BotpressState) -> web.Application:
    app = web.Application(middlewares=[_record_and_fail(state)])
    routes = web.RouteTableDef()

    @routes.post("/{webhook_id}/users", name="createUser")
    async def create_user(request: web.Request) -> web.Response:
        webhook_id = request.match_info["webhook_id"]
        if state.manual_auth:
            return _error(403, "createUser can't be called when the integration uses manual authentication", "Forbidden")
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        for name in ("id", "name", "pictureUrl", "profile"):
            if name in body and not isinstance(body[name], str):
                return _error(400, f"'{name}' must be a string")
        if len(body.get("profile", "")) > 1000:
            return _error(400, "'profile' must hold at most 1000 characters")
        user_id = body.get("id") or _new_id("user")
        if user_id in state.users:
            return _error(409, f"User {user_id} already exists")
        user = _stamp({"id": user_id, **{k: body[k] for k in ("name", "pictureUrl", "profile") if k in body}})
        state.users[user_id] = {**user, "webhook_id": webhook_id}
        key = jwt.encode({"id": user_id}, state._secret(webhook_id), algorithm="HS256")
        return _json({"user": user, "key": key}, status=201)

    @routes.get("/{webhook_id}/hello{slash:/?}", name="hello")
    async def hello(request: web.Request) -> web.Response:
        return _json({})

    @routes.post("/{webhook_id}/users/get-or-create", name="getOrCreateUser")
    async def get_or_create_user(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or any(
            k in body and not isinstance(body[k], str) for k in ("name", "pictureUrl", "profile")
        ):
            return _error(400, "body must be a JSON object; 'name', 'pictureUrl' and 'profile' must be strings")
        user = _authenticate(state, request, create=True)
        if isinstance(user, web.Response):
            return user
        user.update({k: body[k] for k in ("name", "pictureUrl", "profile") if k in body})
        return _json({"user": _public(user)})

    @routes.get("/{webhook_id}/users/me", name="getUser")
    async def get_user(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        return _json({"user": _public(user)})

    @routes.post("/{webhook_id}/conversations", name="createConversation")
    async def create_conversation(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        body = await _json_body(request)
        if not isinstance(body, dict) or ("id" in body and not isinstance(body["id"], str)):
            return _error(400, "body must be a JSON object; 'id' must be a string")
        conversation_id = body.get("id") or _new_id("conv")
        if conversation_id in state.conversations:
            return _error(409, f"Conversation {conversation_id} already exists")
        conversation = _stamp({"id": conversation_id})
        state.conversations[conversation_id] = {**conversation, "participants": {user["id"]}, "webhook_id": user["webhook_id"]}
        state.messages[conversation_id] = []
        return _json({"conversation": conversation}, status=201)

    @routes.post("/{webhook_id}/conversations/get-or-create", name="getOrCreateConversation")
    async def get_or_create_conversation(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            return _error(400, "'id' is required")
        if body["id"] not in state.conversations:
            conversation = _stamp({"id": body["id"]})
            state.conversations[body["id"]] = {**conversation, "participants": {user["id"]}, "webhook_id": user["webhook_id"]}
            state.messages[body["id"]] = []
            return _json({"conversation": conversation}, status=201)
        found = _conversation_of(state, request, body["id"], user=user)
        if isinstance(found, web.Response):
            return found
        return _json({"conversation": _public(found[1])})

    @routes.get("/{webhook_id}/conversations", name="listConversations")
    async def list_conversations(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        mine = [
            _public(c)
            for c in reversed(state.conversations.values())
            if c["webhook_id"] == user["webhook_id"] and user["id"] in c["participants"]
        ]
        return _paged(state, request, "conversations", mine)

    @routes.get("/{webhook_id}/messages/{id}", name="getMessage")
    async def get_message(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        for conversation_id, messages in state.messages.items():
            for message in messages:
                if message["id"] == request.match_info["id"]:
                    found = _conversation_of(state, request, conversation_id, user=user)
                    return found if isinstance(found, web.Response) else _json({"message": message})
        return _error(404, f"Message {request.match_info['id']} not found", "ResourceNotFound")

    @routes.get("/{webhook_id}/conversations/{id}", name="getConversation")
    async def get_conversation(request: web.Request) -> web.Response:
        found = _conversation_of(state, request, request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        _, conversation = found
        return _json({"conversation": _public(conversation)})

    @routes.post("/{webhook_id}/messages", name="createMessage")
    async def create_message(request: web.Request) -> web.Response:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
        body = await _json_body(request)
        problem = _message_problem(body)
        if problem:
            return _error(400, problem)
        found = _conversation_of(state, request, body["conversationId"], user=user)
        if isinstance(found, web.Response):
            return found
        _, conversation = found
        message = _stamp(
            {"id": _new_id("msg"), "payload": body["payload"], "userId": user["id"], "conversationId": conversation["id"]}
        )
        del message["updatedAt"]
        if body.get("metadata"):
            message["metadata"] = body["metadata"]
        state.messages[conversation["id"]].append(message)
        _spawn(state, _push(state, message, is_bot=False))
        if not state.bot_silent:
            _spawn(state, _bot_answers(state, conversation, message))
        return _json({"message": message}, status=201)

    @routes.get("/{webhook_id}/conversations/{id}/messages", name="listMessages")
    async def list_messages(request: web.Request) -> web.Response:
        found = _conversation_of(state, request, request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        _, conversation = found
        return _paged(state, request, "messages", list(reversed(state.messages.get(conversation["id"], []))))

    @routes.get("/{webhook_id}/conversations/{id}/listen", name="listenConversation")
    async def listen_conversation(request: web.Request) -> web.StreamResponse:
        found = _conversation_of(state, request, request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        _, conversation = found
        queue: asyncio.Queue = asyncio.Queue()
        listening = state.listeners.setdefault(conversation["id"], set())
        listening.add(queue)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await stream.prepare(request)
            while conversation["id"] in state.conversations:
                try:
                    signal = await asyncio.wait_for(queue.get(), state.listen_ping_s)
                except TimeoutError:
                    await stream.write(b": ping\n\n")
                    continue
                await stream.write(f"data: {json.dumps(signal, separators=(',', ':'))}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            listening.discard(queue)
        return stream

    @routes.post("/_control/fail")
    async def control_fail(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            state.fail(
                body["mode"], int(body.get("count", 1)), operation=body.get("operation"), delay_s=float(body.get("delay_s", 5.0))
            )
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    @routes.post("/_control/script")
    async def control_script(request: web.Request) -> web.Response:
        state.script.update(await request.json())
        return web.json_response({"ok": True})

    @routes.post("/_control/bot")
    async def control_bot(request: web.Request) -> web.Response:
        body = await request.json()
        state.reply_delay_s = float(body.get("delay_s", state.reply_delay_s))
        state.bot_silent = bool(body.get("silent", state.bot_silent))
        return web.json_response({"ok": True})

    @routes.post("/_control/push")
    async def control_push(request: web.Request) -> web.Response:
        body = await request.json()
        state.push_url, state.push_secret = body.get("url", ""), body.get("secret", "")
        return web.json_response({"ok": True})

    @routes.post("/_control/webhook")
    async def control_webhook(request: web.Request) -> web.Response:
        state.add_webhook((await request.json())["id"])
        return web.json_response({"ok": True})

    @routes.post("/_control/reset")
    async def control_reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    @routes.get("/_control/requests")
    async def control_requests(request: web.Request) -> web.Response:
        return web.json_response([{k: v for k, v in vars(r).items() if k != "body"} for r in state.requests])

    app.add_routes(routes)
    return app


@dataclass
class RunningBotpress:
    url: str
    """The stand-in's root: what `POSEIDON_BOTPRESS_URL` points at."""
    state: BotpressState

    def api_url(self, webhook_id: str = DEFAULT_WEBHOOK_ID) -> str:
        return f"{self.url}/{webhook_id}"


@asynccontextmanager
async def running_botpress(state: BotpressState | None = None, *, port: int = 0) -> AsyncIterator[RunningBotpress]:
    """Serves the stand-in on 127.0.0.1 (a free port by default) in the current event loop."""
    state = state or BotpressState()
    # handler_cancellation: a request the client gave up on (timeout) stops sleeping.
    runner = web.AppRunner(make_app(state), handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningBotpress(url=f"http://127.0.0.1:{runner.addresses[0][1]}", state=state)
    finally:
        for task in list(state._bot_tasks):
            task.cancel()
        await runner.cleanup()


def _record_and_fail(state: BotpressState):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path.startswith("/_control/"):
            return await handler(request)
        route = request.match_info.route
        operation = getattr(route, "name", None) or ""
        webhook_id = request.match_info.get("webhook_id", "")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        state.requests.append(
            Recorded(
                request.method, request.path, operation, webhook_id, dict(request.query), "x-user-key" in request.headers, body
            )
        )
        if not operation:
            return _error(404, f"No route for {request.method} {request.path}", "ResourceNotFound")
        if webhook_id not in state.webhook_ids:
            return _error(404, f"Webhook {webhook_id} not found", "ResourceNotFound")
        fault = state._take_fault(operation)
        if fault is None:
            return await handler(request)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
            return await handler(request)
        if fault.mode == "lost_response":
            await handler(request)
            return web.Response(status=502, text="502 Bad Gateway", content_type="text/html")
        if fault.mode == "503":
            return web.Response(
                status=503, text="upstream connect error or disconnect/reset before headers", content_type="text/plain"
            )
        if fault.mode == "429":
            return _error(
                429, "Too many requests, please slow down", "RateLimited", headers={"Retry-After": str(state.retry_after_s)}
            )
        if fault.mode == "500":
            return _error(500, "An internal error occurred", "Internal")
        return _error(int(fault.mode), "Invalid or expired user key" if fault.mode == "401" else "Forbidden")

    return middleware


def _authenticate(state: BotpressState, request: web.Request, *, create: bool = False) -> dict[str, Any] | web.Response:
    """The key's user. `create` (getOrCreateUser): a key signed with the encryption key makes its user."""
    key = request.headers.get("x-user-key")
    webhook_id = request.match_info["webhook_id"]
    if not key:
        return _error(401, "The x-user-key header is required", "Unauthorized")
    claims = None
    for secret in (state._secret(webhook_id), state.encryption_key):
        try:
            claims = jwt.decode(key, secret, algorithms=["HS256"]) if secret else None
        except jwt.PyJWTError:
            continue
        if claims is not None:
            break
    user_id = claims.get("id") if isinstance(claims, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return _error(401, "Invalid user key", "Unauthorized")
    user = state.users.get(user_id)
    if user is None and create and state.encryption_key:
        user = state.users[user_id] = {**_stamp({"id": user_id}), "webhook_id": webhook_id}
    if user is None or user["webhook_id"] != webhook_id:
        return _error(401, "Invalid user key", "Unauthorized")
    return user


def _paged(state: BotpressState, request: web.Request, name: str, newest_first: list[dict[str, Any]]) -> web.Response:
    token = request.query.get("nextToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        return _error(400, "nextToken is not a token this API gave", "InvalidQuery")
    page = newest_first[start : start + state.page_size]
    meta = {"nextToken": base64.urlsafe_b64encode(str(start + state.page_size).encode()).decode()}
    if start + state.page_size >= len(newest_first):
        meta = {}
    return _json({name: page, "meta": meta})


def _conversation_of(state: BotpressState, request: web.Request, conversation_id: str, *, user: dict | None = None):
    if user is None:
        user = _authenticate(state, request)
        if isinstance(user, web.Response):
            return user
    conversation = state.conversations.get(conversation_id)
    if conversation is None or conversation["webhook_id"] != user["webhook_id"]:
        return _error(404, f"Conversation {conversation_id} not found", "ResourceNotFound")
    if user["id"] not in conversation["participants"]:
        return _error(403, "You are not a participant in this conversation", "Forbidden")
    return user, conversation


def _message_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("conversationId"), str):
        return "'conversationId' is required"
    payload = body.get("payload")
    if not isinstance(payload, dict) or payload.get("type") not in PAYLOAD_TYPES:
        return f"'payload.type' must be one of {', '.join(PAYLOAD_TYPES)}"
    if payload["type"] == "text" and not (isinstance(payload.get("text"), str) and payload["text"]):
        return "'payload.text' must be a non-empty string"
    if "metadata" in body and not isinstance(body["metadata"], dict):
        return "'metadata' must be an object"
    return ""


async def _bot_answers(state: BotpressState, conversation: dict[str, Any], message: dict[str, Any]) -> None:
    await asyncio.sleep(state.reply_delay_s)
    payload = message["payload"]
    said = payload.get("text", "") if payload.get("type") == "text" else f"<{payload.get('type')}>"
    if isinstance(payload.get("value"), str) and payload["value"] in state.script:
        said = payload["value"]  # a chosen option: the bot matches its value, not the title shown
    bot = state._bot_user(conversation["webhook_id"])
    if bot not in conversation["participants"]:
        conversation["participants"].add(bot)
    for reply in state.script.get(said, [f"echo: {said}"]):
        if conversation["id"] not in state.conversations:
            return
        answer = _stamp(
            {
                "id": _new_id("msg"),
                "payload": {"type": "text", "text": reply} if isinstance(reply, str) else reply,
                "userId": bot,
                "conversationId": conversation["id"],
            }
        )
        del answer["updatedAt"]
        state.messages[conversation["id"]].append(answer)
        await _push(state, answer, is_bot=True)


async def _push(state: BotpressState, message: dict[str, Any], *, is_bot: bool) -> None:
    body = {"type": "message_created", "data": {**message, "isBot": is_bot}}
    for queue in state.listeners.get(message["conversationId"], ()):
        queue.put_nowait(body)
    if not state.push_url:
        return
    headers = {"x-bp-secret": state.push_secret} if state.push_secret else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.post(state.push_url, json=body, headers=headers) as answer:
                state.pushes.append((answer.status, body))
    except (aiohttp.ClientError, TimeoutError) as exc:
        state.pushes.append((type(exc).__name__, body))


def _spawn(state: BotpressState, coro) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    state._bot_tasks.add(task)
    task.add_done_callback(state._bot_tasks.discard)


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**record, "createdAt": now, "updatedAt": now}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("webhook_id", "participants", "bot")}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


def _error(status: int, message: str, error_type: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    body = {
        "id": f"err_{stamp}x{os.urandom(4).hex().upper()}",
        "code": status,
        "type": error_type or _ERROR_TYPES.get(status, "Internal"),
        "message": message,
    }
    return _json(body, status=status, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Botpress Chat API stand-in")
    parser.add_argument("--port", type=int, default=18082)
    parser.add_argument(
        "--webhook-id", action="append", default=[], help=f"accepted webhook id (repeatable; default {DEFAULT_WEBHOOK_ID})"
    )
    parser.add_argument("--push-url", default="", help="POST every message_created signal here")
    parser.add_argument("--push-secret", default="", help="sent as the x-bp-secret header of pushes")
    parser.add_argument("--reply-delay", type=float, default=0.02, help="seconds before the bot answers")
    args = parser.parse_args()
    state = BotpressState(
        webhook_ids=set(args.webhook_id or [DEFAULT_WEBHOOK_ID]),
        push_url=args.push_url,
        push_secret=args.push_secret,
        reply_delay_s=args.reply_delay,
    )

    async def serve() -> None:
        async with running_botpress(state, port=args.port) as running:
            print(
                f"Botpress Chat API stand-in on {running.url}/<webhook id> (webhooks: {', '.join(sorted(state.webhook_ids))})",
                flush=True,
            )
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
