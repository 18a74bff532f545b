"""The Slack Web API stand-in, driven by slack_sdk's real clients over loopback HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot.devtools.slack_standin import METHODS, SlackStandIn

TOKEN = "xoxb-test"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN) as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.url, timeout=5)


def test_the_base_url_ends_with_a_slash_and_points_at_loopback(slack: SlackStandIn) -> None:
    assert slack.url.startswith("http://127.0.0.1:")
    assert slack.url.endswith("/api/")


def test_auth_test_answers_with_the_workspace_and_bot(client: WebClient, slack: SlackStandIn) -> None:
    response = client.auth_test()
    assert response["team_id"] == "T111"
    assert response["user_id"] == slack.bot_user_id
    assert [c.method for c in slack.calls()] == ["auth.test"]


def test_a_wrong_token_is_refused_with_invalid_auth(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as error:
        WebClient(token="xoxb-wrong", base_url=slack.url).auth_test()
    assert error.value.response["error"] == "invalid_auth"


def test_a_missing_token_is_refused_with_not_authed(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as error:
        WebClient(base_url=slack.url).chat_postMessage(channel="C111", text="hi")
    assert error.value.response["error"] == "not_authed"
    assert slack.calls("chat.postMessage")[0].token is None


def test_a_message_without_text_or_blocks_is_refused_with_no_text(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.api_call("chat.postMessage", json={"channel": "C111"})
    assert error.value.response["error"] == "no_text"


def test_posted_messages_are_recorded_with_decoded_blocks_and_can_be_updated(
    client: WebClient, slack: SlackStandIn
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}]
    posted = client.chat_postMessage(channel="C111", text="hello", blocks=blocks)
    assert slack.calls("chat.postMessage")[0].args["blocks"] == blocks
    client.chat_update(channel="C111", ts=posted["ts"], text="edited")
    assert slack.messages[("C111", posted["ts"])]["text"] == "edited"


def test_updating_an_unknown_message_fails_like_slack(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.chat_update(channel="C111", ts="1.2", text="x")
    assert error.value.response["error"] == "message_not_found"


def test_strict_channels_refuse_posts_to_unknown_channels() -> None:
    with SlackStandIn(token=TOKEN, strict_channels=True) as slack:
        client = WebClient(token=TOKEN, base_url=slack.url)
        with pytest.raises(SlackApiError) as error:
            client.chat_postMessage(channel="C999", text="hi")
        assert error.value.response["error"] == "channel_not_found"
        assert client.chat_postMessage(channel="C111", text="hi")["ok"]


def test_ephemeral_messages_need_a_known_user(client: WebClient) -> None:
    assert client.chat_postEphemeral(channel="C111", user="W111", text="psst")["ok"]
    with pytest.raises(SlackApiError) as error:
        client.chat_postEphemeral(channel="C111", user="U404", text="psst")
    assert error.value.response["error"] == "user_not_in_channel"


def test_users_info_and_lookup_by_email_use_the_configurable_directory(client: WebClient, slack: SlackStandIn) -> None:
    slack.add_user("U777", email="Edsger@Example.com", name="Edsger Dijkstra", tz="Europe/Amsterdam")
    info = client.users_info(user="U777")["user"]
    assert info["profile"]["email"] == "Edsger@Example.com"
    assert info["tz"] == "Europe/Amsterdam"
    assert client.users_lookupByEmail(email="edsger@example.com")["user"]["id"] == "U777"
    with pytest.raises(SlackApiError) as error:
        client.users_lookupByEmail(email="nobody@example.com")
    assert error.value.response["error"] == "users_not_found"
    with pytest.raises(SlackApiError) as error:
        client.users_info(user="U404")
    assert error.value.response["error"] == "user_not_found"


def test_usergroups_list_their_members(client: WebClient, slack: SlackStandIn) -> None:
    slack.add_usergroup("S1", "platform", "Platform", ["W111", "U111"])
    groups = client.usergroups_list(include_users=True)["usergroups"]
    assert groups == [
        {"id": "S1", "team_id": "T111", "handle": "platform", "name": "Platform", "users": ["W111", "U111"],
         "user_count": 2}
    ]  # fmt: skip
    assert "users" not in client.usergroups_list()["usergroups"][0]
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["W111", "U111"]
    with pytest.raises(SlackApiError):
        client.usergroups_users_list(usergroup="S404")


def test_conversations_info_knows_the_seeded_channels(client: WebClient) -> None:
    assert client.conversations_info(channel="C111")["channel"]["name"] == "test-channel"
    with pytest.raises(SlackApiError) as error:
        client.conversations_info(channel="C404")
    assert error.value.response["error"] == "channel_not_found"


def test_views_publish_keeps_one_home_per_user_and_modals_open_and_update(
    client: WebClient, slack: SlackStandIn
) -> None:
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
    first = client.views_publish(user_id="W111", view=home)["view"]["id"]
    second = client.views_publish(user_id="W111", view=home)["view"]["id"]
    assert first == second
    assert slack.home_views["W111"]["blocks"] == home["blocks"]
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Note"}, "blocks": []}
    opened = client.views_open(trigger_id="1.2.3", view=modal)["view"]
    updated = client.views_update(view_id=opened["id"], view={**modal, "blocks": home["blocks"]})["view"]
    assert updated["id"] == opened["id"]
    assert slack.views[opened["id"]]["blocks"] == home["blocks"]


def test_views_open_without_a_trigger_is_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.api_call("views.open", json={"view": {"type": "modal", "blocks": []}})
    assert error.value.response["error"] == "invalid_arguments"


def test_files_upload_v2_goes_through_the_upload_url_and_completes(client: WebClient, slack: SlackStandIn) -> None:
    response = client.files_upload_v2(channel="C111", content="a,b\n1,2\n", filename="digest.csv", title="Digest")
    assert response["file"]["title"] == "Digest"
    assert [c.method for c in slack.calls()] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    (upload,) = slack.uploads.values()
    assert upload["content"] == b"a,b\n1,2\n"
    assert upload["channel_id"] == "C111"


def test_completing_an_upload_that_never_sent_bytes_fails(client: WebClient) -> None:
    file_id = client.files_getUploadURLExternal(filename="x.csv", length=3)["file_id"]
    with pytest.raises(SlackApiError) as error:
        client.files_completeUploadExternal(files=[{"id": file_id}])
    assert error.value.response["error"] == "file_not_found"


def test_response_url_posts_are_recorded(slack: SlackStandIn) -> None:
    url = slack.response_url("abc")
    response = WebhookClient(url).send(text="done", response_type="ephemeral")
    assert response.status_code == 200
    assert response.body == "ok"
    assert slack.responses() == [{"text": "done", "response_type": "ephemeral"}]
    assert slack.calls("response_url")[0].path == "/response/abc"


def test_a_429_carries_retry_after_and_slack_sdk_retries_it(slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=2)
    client = WebClient(token=TOKEN, base_url=slack.url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert client.chat_postMessage(channel="C111", text="hi")["ok"]
    statuses = [c.status for c in slack.calls("chat.postMessage")]
    assert statuses == [429, 429, 200]


def test_a_429_without_retries_surfaces_as_ratelimited(client: WebClient, slack: SlackStandIn) -> None:
    slack.fail_next("auth.test", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as error:
        client.auth_test()
    assert error.value.response.status_code == 429
    assert error.value.response.headers["Retry-After"] == "7"
    assert client.auth_test()["ok"]


def test_a_5xx_on_demand_is_retried_by_the_server_error_handler(slack: SlackStandIn) -> None:
    slack.fail_next("users.info", status=503)
    client = WebClient(token=TOKEN, base_url=slack.url, retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])
    assert client.users_info(user="W111")["user"]["id"] == "W111"
    assert [c.status for c in slack.calls("users.info")] == [503, 200]


def test_a_slack_level_error_on_demand(client: WebClient, slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel="C111", text="hi")
    assert error.value.response["error"] == "not_in_channel"


def test_a_hanging_call_times_out_the_client_and_then_answers_after_release(slack: SlackStandIn) -> None:
    slack.hang_next("auth.test")
    client = WebClient(token=TOKEN, base_url=slack.url, timeout=1)
    with pytest.raises(TimeoutError):
        client.auth_test()
    slack.release()
    assert WebClient(token=TOKEN, base_url=slack.url, timeout=5).auth_test()["ok"]


def test_wait_for_returns_once_calls_arrive_from_another_thread(client: WebClient, slack: SlackStandIn) -> None:
    thread = threading.Thread(target=lambda: client.chat_postMessage(channel="C111", text="later"))
    thread.start()
    calls = slack.wait_for("chat.postMessage", timeout=5)
    thread.join()
    assert calls[0].args["text"] == "later"


def test_wait_for_times_out_with_what_it_saw(slack: SlackStandIn) -> None:
    with pytest.raises(TimeoutError, match=r"0 of 1 views\.publish"):
        slack.wait_for("views.publish", timeout=0.05)


def test_an_unknown_method_answers_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.api_call("chat.scheduleMessage", json={"channel": "C1", "text": "x", "post_at": 1})
    assert error.value.response["error"] == "unknown_method"


def test_oauth_token_exchange_issues_rotating_tokens_that_the_api_accepts(slack: SlackStandIn) -> None:
    slack.oauth_clients["111.222"] = "secret"
    client = WebClient(base_url=slack.url)
    installed = client.oauth_v2_access(client_id="111.222", client_secret="secret", code="abc")
    assert installed["refresh_token"].startswith("xoxe-1-")
    assert WebClient(token=installed["access_token"], base_url=slack.url).auth_test()["ok"]
    refreshed = client.oauth_v2_access(
        client_id="111.222", client_secret="secret", grant_type="refresh_token", refresh_token="xoxe-1-x"
    )
    assert refreshed["access_token"] != installed["access_token"]
    with pytest.raises(SlackApiError):
        client.oauth_v2_access(client_id="111.222", client_secret="wrong", code="abc")


def test_every_listed_method_is_implemented() -> None:
    expected = {
        "auth.test",
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "views.publish",
        "views.open",
        "views.update",
        "users.info",
        "users.lookupByEmail",
        "usergroups.list",
        "usergroups.users.list",
        "conversations.info",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    }
    assert expected <= set(METHODS)
    standin = SlackStandIn()
    for method in expected:
        assert hasattr(standin, "_" + method.replace(".", "_"))
