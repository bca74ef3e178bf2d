"""The naive relay the end-to-end figure is compared with: one process, no Kafka,
nothing kept but memory. It verifies the webhook's signature, answers 200, asks
the bot (Botpress Chat API stand-in: a user and conversation per sender, kept in
memory; the reply heard on the listen stream until the bot's turn is quiet, as
our spoke hears it) and calls the Send API stand-in with each reply — through the
same HTTP clients the spokes use. What the platform adds to this (durable intake,
exactly-once, the routing decision, the charge, the CRM, sagas that compensate,
read models, audit) is what the ratio prices.

`python -m bench.relay --port P` serves it with the platform's settings from the
environment (POSEIDON_FACEBOOK_GRAPH_URL, _APP_SECRET, _PAGE_TOKEN,
POSEIDON_BOTPRESS_URL, POSEIDON_BOTPRESS_TURN_QUIET_S)."""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx
from aiohttp import web

from poseidon import bootstrap
from spokes.botpress import translate
from spokes.botpress.actions import heard_until_quiet
from spokes.botpress.client import BotpressChat
from spokes.facebook.client import FacebookClient
from spokes.facebook.webhook import SIGNATURE_HEADER, verify_signature

ANSWER_WAIT_S = 10.0
CONCURRENCY = 32
"""Messages relayed at once, as many as a spoke process handles at once (infra.spoke.CONCURRENCY):
each holds a listen stream (an HTTP connection) while it waits, so an unbounded relay
would starve its own sends of connections."""


class Relay:
    def __init__(self) -> None:
        self.settings = bootstrap.settings()
        self.http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=2 * CONCURRENCY))
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.chat = BotpressChat(self.http, translate.api_url(self.settings.botpress_url, translate.DEFAULT_WEBHOOK_ID))
        self.facebook = FacebookClient(self.http, self.settings)
        self.contacts: dict[str, tuple[str, str, str]] = {}
        self.senders: dict[str, asyncio.Lock] = {}
        """One message per sender at a time: replies are told apart by time within a conversation."""
        self.tasks: set[asyncio.Task] = set()
        self.failures = 0

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(request.headers.get(SIGNATURE_HEADER), self.settings.facebook_app_secret, body):
            return web.Response(status=403, text="bad signature")
        for entry in json.loads(body).get("entry", []):
            for event in entry.get("messaging", []):
                text = (event.get("message") or {}).get("text")
                if text:
                    task = asyncio.create_task(self.relay(event["sender"]["id"], text))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        return web.Response(text="EVENT_RECEIVED")

    async def relay(self, psid: str, text: str) -> None:
        async with self.senders.setdefault(psid, asyncio.Lock()), self.slots:
            await self._relay(psid, text)

    async def _relay(self, psid: str, text: str) -> None:
        try:
            key, user_id, conversation = await self.conversation_of(psid)
            deadline = asyncio.get_running_loop().time() + ANSWER_WAIT_S
            async with self.chat.listen(key, conversation) as stream:
                sent = await self.chat.create_message(key, conversation, text)
                replies = await heard_until_quiet(stream, user_id, sent, deadline, self.settings.botpress_turn_quiet_s)
            for said in translate.spoken_replies(replies):
                await self.facebook.send_text(self.settings.facebook_page_token, psid, said[1])
        except Exception:  # a baseline: count it, the bench reports unanswered messages
            self.failures += 1

    async def conversation_of(self, psid: str) -> tuple[str, str, str]:
        """(user key, user id, conversation id) of the sender, made on its first message
        (the sender's lock is held: made once)."""
        if psid not in self.contacts:
            user_id, key = await self.chat.create_user()
            self.contacts[psid] = (key, user_id, await self.chat.create_conversation(key))
        return self.contacts[psid]

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "failures": self.failures})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    relay = Relay()
    app = web.Application()
    app.add_routes([web.post("/webhooks/facebook", relay.webhook), web.get("/healthz", relay.health)])
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
