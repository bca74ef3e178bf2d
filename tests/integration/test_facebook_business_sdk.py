"""The Facebook stand-in against Facebook's own published client library
(`facebook-business`, the Business SDK for Python, pinned in pyproject.toml): the
calls the platform makes — the Login code exchange, the user's pages with their
tokens, subscribing the app to a page's webhook fields, the Send API (text, quick
replies, a template, a sender action) and the Handover Protocol (take, pass, the
thread's owner) — and Graph's errors as the SDK raises them. If the SDK cannot
talk to the stand-in, the stand-in is not speaking Graph."""

from __future__ import annotations

import asyncio

import pytest
from facebook_business.adobjects.page import Page
from facebook_business.adobjects.user import User
from facebook_business.api import FacebookAdsApi, FacebookSession
from facebook_business.exceptions import FacebookRequestError

from tests.standins.facebook import APP_ID, PAGE_INBOX_APP_ID, running_facebook

pytestmark = pytest.mark.integration

PAGE, PSID, REDIRECT = "104857600991", "2400000000000991", "https://app.example/connect/facebook"


def api_for(url: str, token: str, secret: str) -> FacebookAdsApi:
    """The SDK pointed at the stand-in: its Graph URL is a class attribute of its session."""
    session = FacebookSession(APP_ID, secret, token)
    session.GRAPH = url.rstrip("/")
    return FacebookAdsApi(session)


async def test_the_business_sdk_connects_a_page_sends_and_hands_over_through_the_stand_in():
    async with running_facebook() as fb:
        secret = fb.state.app_secret
        fb.state.add_user("1000001", {PAGE: "Acme"})
        code = fb.state.authorize("1000001", REDIRECT)

        def connect_and_send() -> dict:
            anonymous = api_for(fb.url, "", secret)
            exchange = {"client_id": APP_ID, "client_secret": secret, "redirect_uri": REDIRECT, "code": code}
            user_token = anonymous.call("GET", ("oauth", "access_token"), params=exchange).json()["access_token"]
            as_user = api_for(fb.url, user_token, secret)
            [page] = User(fbid="me", api=as_user).get_accounts(fields=["id", "name", "access_token", "tasks"])
            as_page = api_for(fb.url, page["access_token"], secret)
            subscribed = Page(PAGE, api=as_page).create_subscribed_app(
                params={"subscribed_fields": ["messages", "messaging_postbacks", "messaging_handovers"]}
            )
            recipient = {"id": PSID}
            text = Page(PAGE, api=as_page).create_message(
                params={"recipient": recipient, "messaging_type": "RESPONSE", "message": {"text": "Hi from the SDK"}}
            )
            choice = {
                "text": "Pick one",
                "quick_replies": [{"content_type": "text", "title": "Red", "payload": "RED"}],
            }
            Page(PAGE, api=as_page).create_message(
                params={"recipient": recipient, "messaging_type": "RESPONSE", "message": choice}
            )
            Page(PAGE, api=as_page).create_message(params={"recipient": recipient, "sender_action": "typing_on"})
            passed = Page(PAGE, api=as_page).create_pass_thread_control(
                params={"recipient": recipient, "target_app_id": PAGE_INBOX_APP_ID, "metadata": "to the inbox"}
            )
            owner_then = Page(PAGE, api=as_page).get_thread_owner(params={"recipient": PSID})
            taken = Page(PAGE, api=as_page).create_take_thread_control(params={"recipient": recipient})
            owner_now = Page(PAGE, api=as_page).get_thread_owner(params={"recipient": PSID})
            return {
                "page": dict(page), "subscribed": dict(subscribed), "text": dict(text), "passed": dict(passed),
                "owner_then": [dict(o) for o in owner_then], "taken": dict(taken), "owner_now": [dict(o) for o in owner_now],
            }  # fmt: skip

        got = await asyncio.to_thread(connect_and_send)

        assert got["page"]["id"] == PAGE and got["page"]["access_token"]
        # (The SDK keeps no `success` of a {"success": true} answer: what each call did is read off the stand-in.)
        assert fb.state.subscriptions[PAGE] == ["messages", "messaging_postbacks", "messaging_handovers"]
        assert got["text"]["recipient_id"] == PSID and got["text"]["message_id"]
        sent = fb.state.sent_to(PSID)
        assert [m.message.get("text") for m in sent] == ["Hi from the SDK", "Pick one"]
        assert sent[1].message["quick_replies"][0]["payload"] == "RED"
        assert got["owner_then"][0]["thread_owner"]["app_id"] == PAGE_INBOX_APP_ID
        assert got["owner_now"][0]["thread_owner"]["app_id"] == APP_ID
        assert [h[0] for h in fb.state.handovers] == ["pass_thread_control", "take_thread_control"]


async def test_graph_errors_reach_the_sdk_as_facebook_request_errors_with_graphs_codes():
    async with running_facebook() as fb:
        fb.state.add_page(PAGE, "acme-page-token")

        def failures() -> list[tuple[int, int | None]]:
            found = []
            as_page = api_for(fb.url, "acme-page-token", fb.state.app_secret)
            calls = [
                # No such person: (#100) with Messenger's subcode.
                lambda: Page(PAGE, api=as_page).create_message(
                    params={"recipient": {"id": "not-a-psid"}, "messaging_type": "RESPONSE", "message": {"text": "x"}}
                ),
                # Too many quick replies: (#100).
                lambda: Page(PAGE, api=as_page).create_message(
                    params={
                        "recipient": {"id": PSID},
                        "messaging_type": "RESPONSE",
                        "message": {
                            "text": "x",
                            "quick_replies": [{"content_type": "text", "title": f"o{i}", "payload": f"P{i}"} for i in range(14)],
                        },
                    }
                ),  # fmt: skip
                # Passing a thread the app does not hold is refused once the inbox has it.
                lambda: [
                    Page(PAGE, api=as_page).create_pass_thread_control(
                        params={"recipient": {"id": PSID}, "target_app_id": PAGE_INBOX_APP_ID}
                    )
                    for _ in range(2)
                ],
            ]
            for call in calls:
                try:
                    call()
                    found.append((0, None))
                except FacebookRequestError as error:
                    found.append((error.api_error_code(), error.api_error_subcode()))
            return found

        assert await asyncio.to_thread(failures) == [(100, 2018001), (100, None), (100, 2018300)]
        as_stranger = api_for(fb.url, "", fb.state.app_secret)
        with pytest.raises(FacebookRequestError) as raised:
            await asyncio.to_thread(
                lambda: Page(PAGE, api=as_stranger).create_message(params={"recipient": {"id": PSID}, "message": {"text": "x"}})
            )
        assert raised.value.http_status() == 400 and raised.value.api_error_code() == 2500
