"""manifest.yml: valid against Slack's published schema, and in step with what the code registers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from handlers.slack import actions, blocks, views
from handlers.slack import home as events
from handlers.slack import slash as commands
from handlers.slack.app import BOT_SCOPES, EVENTS_PATH
from tests.support.samples import MANIFEST_SCHEMA
from tests.support.slack_harness import Harness

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = MANIFEST_SCHEMA


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


def test_the_manifest_validates_against_slacks_manifest_schema(manifest: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft7Validator)


def test_a_broken_manifest_fails_the_schema(manifest: dict[str, Any]) -> None:
    broken = {**manifest, "display_information": {"description": "no name"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()), cls=jsonschema.Draft7Validator)


def test_every_registered_command_is_declared_with_a_usage_hint(manifest: dict[str, Any]) -> None:
    declared = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(commands.COMMANDS) == set(declared)
    assert "me" in declared["/tokenwise"]["usage_hint"]


def test_every_registered_event_is_subscribed(manifest: dict[str, Any]) -> None:
    assert set(events.EVENTS) <= set(manifest["settings"]["event_subscriptions"]["bot_events"])


def test_interactivity_is_on_because_the_code_handles_buttons_and_modals(manifest: dict[str, Any]) -> None:
    assert actions.ACTIONS and views.VIEWS
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_the_scopes_are_exactly_what_the_app_asks_for(manifest: dict[str, Any]) -> None:
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(BOT_SCOPES)


def test_every_request_url_points_at_the_one_events_endpoint(manifest: dict[str, Any]) -> None:
    urls = [
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
        *(c["url"] for c in manifest["features"]["slash_commands"]),
    ]
    assert all(url.endswith(EVENTS_PATH) for url in urls)
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_every_declared_command_action_view_and_event_has_a_listener(harness: Harness) -> None:
    """Bolt answers 404 to a request no listener matches: each id must get something else."""

    def status(response: httpx.Response) -> int:
        return response.status_code

    for command in commands.COMMANDS:
        assert (
            status(
                harness.post(
                    harness.signer.slash_command("help", "W111", harness.slack.response_url(), command=command)
                )
            )
            == 200
        )
    for action_id in actions.ACTIONS:
        assert status(harness.click(action_id, "1")[0]) == 200, action_id
    for callback_id in views.VIEWS:
        view = {"callback_id": callback_id, "private_metadata": "{}", "blocks": []}
        assert status(harness.submit(view, {})) == 200, callback_id
    for event in events.EVENTS:
        assert event == "app_home_opened"
        assert status(harness.home_opened()) == 200
    unknown = harness.signer.block_actions("W111", "no_such_action", "1", response_url=harness.slack.response_url())
    assert status(harness.post(unknown)) == 404
    assert blocks.ACTION_REVIEW in actions.ACTIONS
