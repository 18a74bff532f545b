"""Requests shaped and signed the way Slack sends them, for the console and the tests.

Shapes follow real captures (see ../shared/samples/): slash commands are form-encoded with
`is_enterprise_install` as the *string* "false"; interactivity is form-encoded `payload=<JSON>`;
events are JSON envelopes. Signatures are Slack's v0 HMAC-SHA256 over "v0:<timestamp>:<body>".
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class SignedRequest:
    body: str
    headers: dict[str, str]


@dataclass
class SlackRequests:
    """Builds and signs requests from one workspace, as one app (`api_app_id`)."""

    signing_secret: str
    team_id: str = "T111"
    team_domain: str = "tokenwise-test"
    api_app_id: str = "A111"
    channel_id: str = "C111"
    channel_name: str = "test-channel"
    extra: dict[str, Any] = field(default_factory=dict)

    def sign(self, body: str, content_type: str, timestamp: int | None = None) -> SignedRequest:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(self.signing_secret).generate_signature(timestamp=ts, body=body)
        return SignedRequest(
            body,
            {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature or ""},
        )

    def slash_command(
        self,
        text: str,
        user_id: str,
        response_url: str,
        *,
        command: str = "/tokenwise",
        user_name: str = "someone",
        timestamp: int | None = None,
    ) -> SignedRequest:
        fields = {
            "token": "verification_token",
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": self.channel_id,
            "channel_name": self.channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}",
        }
        return self.sign(urlencode(fields), FORM, timestamp)

    def interactive(self, payload: dict[str, Any], timestamp: int | None = None) -> SignedRequest:
        return self.sign(urlencode({"payload": json.dumps(payload)}), FORM, timestamp)

    def block_actions(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        response_url: str | None = None,
        home_view_id: str | None = None,
        label: str = "Button",
        timestamp: int | None = None,
    ) -> SignedRequest:
        """A button click in an ephemeral message (with response_url) or in the Home tab."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": self.team_id},
            "api_app_id": self.api_app_id,
            "token": "verification_token",
            "trigger_id": f"{int(time.time())}.222.{uuid.uuid4().hex}",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "is_enterprise_install": False,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": f"run:{value}",
                    "text": {"type": "plain_text", "text": label, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if home_view_id:
            payload["container"] = {"type": "view", "view_id": home_view_id}
            payload["view"] = {"id": home_view_id, "type": "home", "blocks": [], "private_metadata": ""}
        else:
            payload["container"] = {
                "type": "message",
                "message_ts": "111.222",
                "channel_id": self.channel_id,
                "is_ephemeral": True,
            }
            payload["channel"] = {"id": self.channel_id, "name": self.channel_name}
            payload["response_url"] = response_url or ""
        return self.interactive(payload, timestamp)

    def view_submission(
        self,
        user_id: str,
        view: dict[str, Any],
        values: dict[str, dict[str, Any]],
        *,
        timestamp: int | None = None,
    ) -> SignedRequest:
        """Submitting a modal: `view` as opened (views.open), `values` as Slack's state.values."""
        submitted = {
            **view,
            "id": view.get("id", "V111"),
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "state": {"values": values},
            "hash": f"{int(time.time())}.abc",
            "app_id": self.api_app_id,
            "bot_id": "B111",
        }
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": self.team_id},
            "api_app_id": self.api_app_id,
            "token": "verification_token",
            "trigger_id": f"{int(time.time())}.333.{uuid.uuid4().hex}",
            "view": submitted,
            "response_urls": [],
            "is_enterprise_install": False,
        }
        return self.interactive(payload, timestamp)

    def event(self, event: dict[str, Any], timestamp: int | None = None) -> SignedRequest:
        envelope = {
            "token": "verification_token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": "UBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return self.sign(json.dumps(envelope), JSON, timestamp)

    def app_home_opened(self, user_id: str, tab: str = "home", timestamp: int | None = None) -> SignedRequest:
        event = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D111",
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        }
        return self.event(event, timestamp)


def modal_values(view: dict[str, Any], answers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Slack's state.values for a modal from simple answers keyed by block_id.

    A radio or checkbox answer is an option value (or a list of them); a text answer is a string.
    """
    values: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        block_id, action_id, kind = block["block_id"], element["action_id"], element["type"]
        answer = answers.get(block_id)
        if kind == "radio_buttons":
            chosen = next((o for o in element["options"] if o["value"] == answer), None)
            values[block_id] = {action_id: {"type": kind, "selected_option": chosen}}
        elif kind == "checkboxes":
            wanted = answer if isinstance(answer, list) else ([answer] if answer else [])
            chosen_options = [o for o in element["options"] if o["value"] in wanted]
            values[block_id] = {action_id: {"type": kind, "selected_options": chosen_options}}
        else:
            values[block_id] = {action_id: {"type": kind, "value": answer if answer not in ("", None) else None}}
    return values
