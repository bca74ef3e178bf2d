"""ask_bot: hand one contact message to the tenant's Botpress bot and collect its
answer. Ensures the contact's Botpress user and conversation (created once, then
reused from the store; recreated when Botpress no longer accepts them), sends the
text once even across retries and redeliveries, and hears the bot's replies on
the conversation's listen stream, opened before the text is sent (the turn ends
`botpress_turn_quiet_s` after the bot's last message) — or, when the stream is
refused or breaks, or listening is off, polls for them; both within a bounded
wait. Every call but the stream goes through SpokeContext.call (a refused stream
costs one request, then polling goes through the breaker as before)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from infra.spoke import Outcome, PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeError
from spokes.botpress import translate
from spokes.botpress.client import BotpressChat, StaleMapping
from spokes.botpress.mapping_store import ContactMapping, MappingStore, SentRecord
from spokes.botpress.translate import BotReply, ChatMessage

log = structlog.get_logger(__name__)

OPERATION = "ask_bot"
LISTEN_OPEN_S = 5.0
"""How long the listen stream may take to open (its response headers) before the ask polls instead."""


@dataclass(frozen=True)
class PollPolicy:
    """How the bot's answer is awaited: polls back off from `first_s` to `max_s`; once
    replies appear, one more poll after `settle_s` collects any that follow."""

    first_s: float = 0.1
    max_s: float = 1.0
    factor: float = 1.5
    settle_s: float = 0.25
    max_pages: int = 10
    """Pages (newest first) read per poll while looking back for our message."""


async def ask_bot(
    ctx: SpokeContext,
    store: MappingStore,
    *,
    tenant_id: str,
    channel: str,
    contact_id: str,
    text: str,
    wait_s: float = 10.0,
    webhook_id: str = translate.DEFAULT_WEBHOOK_ID,
    message_id: str = "",
    poll: PollPolicy = PollPolicy(),
) -> tuple[Outcome, list[str]]:
    """As `ask_bot_replies`, with the replies' texts only."""
    outcome, replies = await ask_bot_replies(
        ctx, store, tenant_id=tenant_id, channel=channel, contact_id=contact_id, text=text, wait_s=wait_s,
        webhook_id=webhook_id, message_id=message_id, poll=poll,
    )  # fmt: skip
    return outcome, [reply.text for reply in replies]


async def ask_bot_replies(
    ctx: SpokeContext,
    store: MappingStore,
    *,
    tenant_id: str,
    channel: str,
    contact_id: str,
    text: str,
    choice: str = "",
    wait_s: float = 10.0,
    webhook_id: str = translate.DEFAULT_WEBHOOK_ID,
    message_id: str = "",
    poll: PollPolicy = PollPolicy(),
) -> tuple[Outcome, list[BotReply]]:
    """Ask the bot behind `webhook_id` (the tenant's Chat integration) and return the
    outcome with its replies, oldest first ([] if the bot said nothing within `wait_s`): each
    with its text and, for choices, cards and media, its channel-neutral rich content
    (translate.reply_content; what stays text says why in `degraded`, and the outcome's
    `data["degraded"]` sums it up). `choice`: the value of the option the contact picked
    (a quick reply, a button), sent with `text` (its title) as Botpress expects it.
    With `message_id` (our message's id) a repeated call does not ask twice; it reads
    the replies again, with the same Botpress ids (`data["reply_ids"]`, comma-separated,
    in the order of the texts): derive outbound message ids from them so the Message
    hub refuses a second recording.

    Raises RetryableError (Botpress unavailable or rate limiting, after the shared
    retries; BreakerOpen while the breaker is open), ReauthorizationRequired (the
    tenant's Chat integration refuses us) and PermanentError (the request itself is
    wrong; StaleMapping if Botpress drops the conversation while we wait for replies)."""
    if not text.strip():
        raise PermanentError("nothing to ask the bot: the message has no text", code="empty_text")
    chat = BotpressChat(ctx.http, translate.api_url(ctx.settings.botpress_url, webhook_id))
    asking = _Asking(ctx, store, chat, tenant_id, channel, contact_id, webhook_id)

    mapping = await asking.mapping()
    record = await store.sent(tenant_id, message_id) if message_id else None
    if record and record.botpress_message_id and record.conversation_id == mapping.conversation_id:
        # Asked before (a retry, a redelivery): what the bot said is in the conversation already.
        sent = ChatMessage(record.botpress_message_id, record.botpress_created_at, mapping.user_id, mapping.conversation_id, {})
        asking.how = "already_sent"
        replies = await asking.replies(mapping, sent, _deadline(wait_s), poll)
    else:
        asking.choice = choice
        mapping, sent, replies = await asking.ask(mapping, text, message_id, record is not None, wait_s, poll)
    said = [reply for reply in map(translate.bot_reply, replies) if reply is not None]
    detail = f"bot answered with {len(said)} message(s)" if said else f"bot sent no reply within {wait_s:g}s"
    data = {
        "conversation_id": mapping.conversation_id,
        "replies": str(len(said)),
        "reply_ids": ",".join(reply.id for reply in said),
        "mapping": asking.how,
        "heard_by": asking.heard_by,
        "webhook_id": webhook_id,
    }
    degraded = [f"reply {i + 1}: {reply.degraded}" for i, reply in enumerate(said) if reply.degraded]
    if degraded:
        data["degraded"] = "; ".join(degraded)[:500]
    return Outcome(operation=OPERATION, succeeded=True, detail=detail, external_id=sent.id, data=data), said


class _Asking:
    """One ask_bot call's steps; `how` tells what happened to the mapping (for the outcome)."""

    def __init__(self, ctx: SpokeContext, store: MappingStore, chat: BotpressChat, tenant_id, channel, contact_id, webhook_id):
        self.ctx, self.store, self.chat = ctx, store, chat
        self.tenant_id, self.channel, self.contact_id, self.webhook_id = tenant_id, channel, contact_id, webhook_id
        self.how = "reused"
        self.heard_by = "polling"
        self.choice = ""

    async def mapping(self) -> ContactMapping:
        stored = await self.store.get(self.tenant_id, self.channel, self.contact_id)
        if stored and stored.webhook_id == self.webhook_id and stored.user_key:
            return stored
        # None, another bot's user (the tenant changed bots), or a key that no longer opens.
        return await self._recreate(stored, keep_user=False)

    async def ask(
        self, mapping: ContactMapping, text: str, message_id: str, maybe_sent: bool, wait_s: float, poll: PollPolicy
    ) -> tuple[ContactMapping, ChatMessage, list[ChatMessage]]:
        """Send the text and hear the replies for `wait_s` from then: on the listen stream
        if it opens (before sending, so no reply is missed) and stays up, else by
        polling. A message that may have been sent already (`maybe_sent`: an earlier
        try was interrupted) is not listened for: the bot may have answered it before
        any stream opened, and only the conversation's history has that answer."""
        async with AsyncExitStack() as stack:
            stream = None if maybe_sent else await self._listening(stack, mapping)
            sent_on, sent = await self.send(mapping, text, message_id, maybe_sent=maybe_sent)
            deadline = _deadline(wait_s)
            if stream is not None and sent_on.conversation_id == mapping.conversation_id:
                try:
                    replies = await self._heard(stream, sent_on, sent, deadline)
                except SpokeError as exc:
                    log.info("Botpress listen stream lost; polling for the replies", tenant_id=self.tenant_id, code=exc.code)
                else:
                    self.heard_by = "listening"
                    return sent_on, sent, replies
        return sent_on, sent, await self.replies(sent_on, sent, deadline, poll)

    async def _listening(self, stack: AsyncExitStack, mapping: ContactMapping) -> AsyncIterator[ChatMessage] | None:
        if not self.ctx.settings.botpress_listen:
            return None
        try:
            # Bounded: a server or proxy that holds the response headers back would
            # otherwise hold the ask before our message is even sent.
            async with asyncio.timeout(LISTEN_OPEN_S):
                return await stack.enter_async_context(self.chat.listen(mapping.user_key, mapping.conversation_id))
        except (SpokeError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, SpokeError) else "timeout"
            log.info("Botpress did not open the listen stream; polling for the replies", tenant_id=self.tenant_id, code=code)
            return None

    async def _heard(
        self, stream: AsyncIterator[ChatMessage], mapping: ContactMapping, sent: ChatMessage, deadline: float
    ) -> list[ChatMessage]:
        return await heard_until_quiet(stream, mapping.user_id, sent, deadline, self.ctx.settings.botpress_turn_quiet_s)

    async def send(
        self, mapping: ContactMapping, text: str, message_id: str, *, maybe_sent: bool
    ) -> tuple[ContactMapping, ChatMessage]:
        for fresh in (False, True):
            if message_id:
                await self.store.begin_send(self.tenant_id, message_id, mapping.conversation_id)
            try:
                sent = await self.ctx.call(
                    self.tenant_id, "create_message", self._sender(mapping, text, message_id, maybe_sent, fresh)
                )
            except StaleMapping as exc:
                if fresh:  # pragma: no cover - _sender turns it into ReauthorizationRequired
                    raise
                log.info("Botpress no longer accepts the stored mapping; recreating", tenant_id=self.tenant_id, code=exc.code)
                mapping = await self._recreate(mapping, keep_user=exc.scope == "conversation")
                maybe_sent = False  # a new conversation holds nothing of ours
                continue
            if message_id:
                record = SentRecord(mapping.conversation_id, sent.id, sent.created_at)
                await self.store.record_sent(self.tenant_id, message_id, record)
            return mapping, sent
        raise AssertionError("unreachable")  # pragma: no cover

    async def replies(self, mapping: ContactMapping, sent: ChatMessage, deadline: float, poll: PollPolicy) -> list[ChatMessage]:
        """The replies to `sent`, polled: until a poll `settle_s` after the first replies finds no more, or the deadline."""
        loop = asyncio.get_running_loop()
        delay, previous = poll.first_s, 0
        while True:
            listed = await self.ctx.call(self.tenant_id, "list_messages", lambda: self._since(mapping, sent, poll.max_pages))
            replies = translate.bot_replies(listed, user_id=mapping.user_id, sent=sent)
            if replies and len(replies) == previous:
                return replies
            remaining = deadline - loop.time()
            if remaining <= 0:
                return replies
            await asyncio.sleep(min(poll.settle_s if replies else delay, remaining))
            if not replies:
                delay = min(delay * poll.factor, poll.max_s)
            previous = len(replies)

    async def _recreate(self, stale: ContactMapping | None, *, keep_user: bool) -> ContactMapping:
        conversation_id = None
        if keep_user and stale is not None:
            # Keeping the user keeps what the bot remembers about the contact.
            user_id, key = stale.user_id, stale.user_key
            try:
                conversation_id = await self.ctx.call(
                    self.tenant_id, "create_conversation", lambda: self.chat.create_conversation(key)
                )
            except StaleMapping:
                conversation_id = None
        if conversation_id is None:
            user_id, key = await self.ctx.call(self.tenant_id, "create_user", self.chat.create_user)
            conversation_id = await self.ctx.call(
                self.tenant_id, "create_conversation", _refused_if_stale(lambda: self.chat.create_conversation(key))
            )
        self.how = "created" if stale is None else "recreated"
        fresh = ContactMapping(self.tenant_id, self.channel, self.contact_id, self.webhook_id, user_id, conversation_id, key)
        return await self.store.save(fresh, replacing=stale)

    def _sender(self, mapping: ContactMapping, text: str, message_id: str, maybe_sent: bool, fresh: bool):
        attempts = 0

        async def send() -> ChatMessage:
            nonlocal attempts
            attempts += 1
            if message_id and (maybe_sent or attempts > 1):
                # An earlier try may have reached Botpress and lost its answer: look before sending again.
                listed, _ = await self.chat.list_messages(mapping.user_key, mapping.conversation_id)
                found = translate.find_sent(listed, user_id=mapping.user_id, message_id=message_id)
                if found:
                    return found
            return await self.chat.create_message(
                mapping.user_key, mapping.conversation_id, text, message_id=message_id, choice=self.choice
            )

        return _refused_if_stale(send) if fresh else send

    async def _since(self, mapping: ContactMapping, sent: ChatMessage, max_pages: int) -> list[ChatMessage]:
        """The conversation's messages back to (and including) `sent`, oldest first."""
        newest_first: list[ChatMessage] = []
        token = None
        for _ in range(max_pages):
            page, token = await self.chat.list_messages(mapping.user_key, mapping.conversation_id, next_token=token)
            newest_first.extend(page)
            if not token or any(m.id == sent.id or m.created_at < sent.created_at for m in page):
                break
        return newest_first[::-1]


def _deadline(wait_s: float) -> float:
    return asyncio.get_running_loop().time() + wait_s


async def heard_until_quiet(
    stream: AsyncIterator[ChatMessage], user_id: str, sent: ChatMessage, deadline: float, quiet_s: float
) -> list[ChatMessage]:
    """The replies to `sent` (ours: `user_id`) as a listen stream announces them: until
    the bot has been quiet for `quiet_s` after its last one, or the loop time `deadline`.
    Raises RetryableError if the stream ends first."""
    loop = asyncio.get_running_loop()
    heard: list[ChatMessage] = []
    replies: list[ChatMessage] = []
    signals = aiter(stream)
    while (remaining := deadline - loop.time()) > 0:
        try:
            heard.append(await asyncio.wait_for(anext(signals), min(quiet_s, remaining) if replies else remaining))
        except TimeoutError:
            break
        except StopAsyncIteration:
            raise RetryableError("the listen stream ended", code="stream_ended") from None
        replies = translate.bot_replies(heard, user_id=user_id, sent=sent)
    return replies


def _refused_if_stale(fn):
    """For calls with a user or conversation Botpress has just made: if it rejects
    them at once, the tenant's Chat integration is the problem, not our mapping."""

    async def call():
        try:
            return await fn()
        except StaleMapping as exc:
            raise ReauthorizationRequired(
                f"Botpress rejects what it just created: {exc.reason}", code="fresh_mapping_rejected"
            ) from exc

    return call
