"""The Botpress stand-in against the vendor's own published client library,
@botpress/chat (pinned in tests/standins/node/package.json, installed by `make
setup`): connect (createUser, and getOrCreateUser with an encryption key), get or
create a conversation, send a message carrying a chosen value, hear the bot on
the listen stream, list messages and conversations. Where the library and the
stand-in disagree, the stand-in is wrong. Fails (never skips) when setup did not
install the library."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.harness import ROOT
from tests.standins.botpress import DEFAULT_WEBHOOK_ID, BotpressState, running_botpress

NODE_DIR = ROOT / "tests" / "standins" / "node"
SCRIPT = NODE_DIR / "chat_client.mjs"
ENCRYPTION_KEY = "stand-in-encryption-key-of-32-bytes-or-more"


def _node() -> str:
    node = shutil.which("node")
    library = NODE_DIR / "node_modules" / "@botpress" / "chat" / "package.json"
    if node is None or not library.exists():
        pytest.fail(
            "the @botpress/chat library is not installed: run `make setup` "
            f"(needs Node.js 20 and npm; installs {NODE_DIR.relative_to(ROOT)}/node_modules)"
        )
    return node


async def test_the_official_chat_client_works_against_the_stand_in():
    node = _node()
    state = BotpressState(encryption_key=ENCRYPTION_KEY)
    state.script["PIZZA"] = [
        {"type": "choice", "text": "Which size?", "options": [{"label": "Small", "value": "S"}, {"label": "Large", "value": "L"}]}
    ]
    async with running_botpress(state) as botpress:
        process = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), botpress.api_url(DEFAULT_WEBHOOK_ID), ENCRYPTION_KEY,
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"@botpress/chat failed against the stand-in:\n{err.decode()[-3000:]}"
    got = json.loads(out.decode().strip().splitlines()[-1])

    assert got["getOrCreateUser"] == "customer-42"
    assert got["getOrCreateConversation"] == "conv-named"
    assert got["sent"] == {"type": "text", "text": "Pizza", "value": "PIZZA"}
    # The bot matched the chosen value, and the library parsed its signal off the listen stream.
    assert got["heard"]["type"] == "choice" and [o["value"] for o in got["heard"]["options"]] == ["S", "L"]
    assert got["listed"] == ["choice", "text"]  # newest first
    assert got["getMessage"] is True
    assert got["getUser"] == got["userId"]
    assert sorted(got["conversations"]) == sorted(
        [c for c in state.conversations if got["userId"] in state.conversations[c]["participants"]]
    )
    assert "conv-named" in got["conversations"]
    operations = {r.operation for r in state.requests}
    assert {"hello", "createUser", "getOrCreateUser", "createConversation", "getOrCreateConversation", "listenConversation",
            "createMessage", "listMessages", "getMessage", "listConversations", "getUser"} <= operations  # fmt: skip
