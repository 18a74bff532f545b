"""A Slack Web API stand-in: a real HTTP server on 127.0.0.1 for tests and the console.

It implements the Web API methods Tokenwise calls (see `METHODS`), the `response_url` webhooks Bolt's
`respond()` posts to, and the two-step file upload (`files.getUploadURLExternal`, a POST of the bytes to
the URL it returns, `files.completeUploadExternal`). Every request is recorded. Like Slack it checks the
bot token and each method's required arguments, answering `{"ok": false, "error": ...}` as Slack does;
on demand it answers 429 with `Retry-After`, a 5xx, a Slack-level error, or hangs (for timeout tests).

    with SlackStandIn(token="xoxb-test") as slack:
        client = WebClient(token="xoxb-test", base_url=slack.url)   # slack.url ends with '/'
        client.chat_postMessage(channel="C111", text="hi")
        slack.calls("chat.postMessage")[0].args["text"]             # "hi"
        slack.fail_next("chat.postMessage", status=429, retry_after=0, times=2)
        url = slack.response_url()                                  # for a slash command's response_url
        slack.wait_for("response_url")                              # waits on an event, no sleeps
        slack.add_user("U123", email="ada@example.com", name="Ada", tz="Europe/Berlin")

Seeded data (users, user groups, channels) lives in `slack.users`, `slack.usergroups`, `slack.channels`:
plain dicts in Slack's own shapes that tests may change freely.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")
RESPONSE_URL = "response_url"
HANGING = 0  # the status of a recorded call that has not been answered yet (hang_next)
UPLOAD = "upload"

# Method name -> groups of required arguments; each group is satisfied by any one of its names.
# The error code is what Slack answers when that group is missing.
REQUIRED: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "auth.test": [],
    "chat.postMessage": [(("channel",), "channel_not_found"), (("text", "blocks", "attachments"), "no_text")],
    "chat.postEphemeral": [
        (("channel",), "channel_not_found"),
        (("user",), "user_not_found"),
        (("text", "blocks", "attachments"), "no_text"),
    ],
    "chat.update": [(("channel",), "channel_not_found"), (("ts",), "message_not_found")],
    "views.publish": [(("user_id",), "invalid_arguments"), (("view",), "invalid_arguments")],
    "views.open": [(("trigger_id", "interactivity_pointer"), "invalid_arguments"), (("view",), "invalid_arguments")],
    "views.update": [(("view",), "invalid_arguments"), (("view_id", "external_id"), "invalid_arguments")],
    "users.info": [(("user",), "user_not_found")],
    "users.lookupByEmail": [(("email",), "users_not_found")],
    "usergroups.list": [],
    "usergroups.users.list": [(("usergroup",), "no_such_subteam")],
    "conversations.info": [(("channel",), "channel_not_found")],
    "conversations.history": [(("channel",), "channel_not_found")],
    "files.getUploadURLExternal": [(("filename",), "invalid_arguments"), (("length",), "invalid_arguments")],
    "files.completeUploadExternal": [(("files",), "invalid_arguments")],
}
METHODS = (*REQUIRED, "oauth.v2.access")


@dataclass
class Call:
    """One request the stand-in received."""

    method: str  # a Web API method, "response_url" or "upload"
    args: dict[str, Any]  # query, form and JSON arguments merged; blocks/view/... decoded from JSON
    token: str | None
    path: str
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    error: str | None
    hang: bool
    times: int


class SlackStandIn:
    """A loopback Slack. Use as a context manager, or call `start()` and `close()`."""

    def __init__(
        self,
        token: str = "xoxb-test",
        *,
        team_id: str = "T111",
        team_name: str = "Tokenwise Test",
        enterprise_id: str | None = None,
        bot_user_id: str = "UBOT",
        strict_channels: bool = False,
        users: Iterable[dict[str, Any]] | None = None,
        hang_seconds: float = 30.0,
        port: int = 0,
    ) -> None:
        self.port = port  # 0: any free port; a fixed one lets a test start Slack where a process already looks
        self.tokens: set[str] = {token}
        self.token = token
        self.team_id = team_id
        self.team_name = team_name
        self.enterprise_id = enterprise_id
        self.bot_user_id = bot_user_id
        self.strict_channels = strict_channels
        self.hang_seconds = hang_seconds
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.oauth_clients: dict[str, str] = {}
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for user in users if users is not None else DEFAULT_USERS:
            self.add_user(**user)
        self.add_channel("C111", "test-channel")
        self.add_channel("C222", "platform-team")

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> SlackStandIn:
        if self._server is None:
            self._server = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()  # let hanging requests finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("The Slack stand-in is not running; call start() or use it in a with block.")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The Web API base URL, for WebClient(base_url=...) and SLACK_API_URL; ends with '/'."""
        return f"{self.origin}/api/"

    def response_url(self, name: str | None = None) -> str:
        """A fresh URL to put in a request's `response_url`; posts to it are recorded as "response_url"."""
        return f"{self.origin}/response/{name or uuid.uuid4().hex[:12]}"

    # -- directory --------------------------------------------------------------------------------
    def add_user(
        self,
        id: str,
        email: str | None = None,
        name: str | None = None,
        tz: str = "UTC",
        *,
        is_bot: bool = False,
        deleted: bool = False,
    ) -> dict[str, Any]:
        """Add (or replace) a user in the shape users.info returns."""
        name = name or (email.split("@")[0] if email else id)
        offset = int(datetime.now(ZoneInfo(tz)).utcoffset().total_seconds())  # type: ignore[union-attr]
        user = {
            "id": id,
            "team_id": self.team_id,
            "name": name.lower().replace(" ", "."),
            "real_name": name,
            "deleted": deleted,
            "is_bot": is_bot,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": offset,
            "profile": {"real_name": name, "display_name": name, **({"email": email} if email else {})},
        }
        self.users[id] = user
        return user

    def add_usergroup(self, id: str, handle: str, name: str | None = None, users: Iterable[str] = ()) -> dict[str, Any]:
        group = {"id": id, "team_id": self.team_id, "handle": handle, "name": name or handle, "users": list(users)}
        self.usergroups[id] = group
        return group

    def add_channel(self, id: str, name: str, *, is_private: bool = False) -> dict[str, Any]:
        channel = {"id": id, "name": name, "is_channel": True, "is_private": is_private, "is_member": True}
        self.channels[id] = channel
        return channel

    def accept_token(self, token: str) -> None:
        """Accept one more bot token (another workspace, or a rotated token)."""
        self.tokens.add(token)

    def revoke_token(self, token: str) -> None:
        self.tokens.discard(token)

    # -- faults -----------------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """The next `times` calls of `method` fail: 429 (with Retry-After), a 5xx, or, with status=200
        and `error`, a Slack-level `{"ok": false, "error": error}`."""
        self._add_fault(method, _Fault(status, retry_after if status == 429 else None, error, False, times))

    def hang_next(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` get no answer until `release()`, `close()` or hang_seconds."""
        self._release.clear()
        self._add_fault(method, _Fault(200, None, None, True, times))

    def release(self) -> None:
        """Let hanging requests answer (with a normal response)."""
        self._release.set()

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._changed:
            self._faults.setdefault(method, []).append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._changed:
            queue = self._faults.get(method) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    # -- recorded calls ---------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded calls, oldest first; only those of `method` when given."""
        with self._changed:
            return [c for c in self._calls if method is None or c.method == method]

    def responses(self) -> list[dict[str, Any]]:
        """The bodies posted to response URLs, oldest first."""
        return [c.args for c in self.calls(RESPONSE_URL)]

    def reset(self) -> None:
        """Forget recorded calls and pending faults (directory data stays)."""
        with self._changed:
            self._calls.clear()
            self._faults.clear()

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Block until at least `count` calls of `method` arrived; the calls. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls if c.method == method]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({c.method for c in self._calls})
                    raise TimeoutError(f"{len(found)} of {count} {method} call(s) within {timeout}s; saw {seen}")
                self._changed.wait(left)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `predicate()` (checked whenever a call is recorded) is true. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Condition not met within {timeout}s")
                self._changed.wait(left)

    def wait_for_new(self, methods: Iterable[str], since: int, timeout: float = 10.0) -> list[Call]:
        """Block until a call of one of `methods` arrives after the first `since` calls; the new ones."""
        wanted = set(methods)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls[since:] if c.method in wanted]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"No {sorted(wanted)} call within {timeout}s")
                self._changed.wait(left)

    def _record(self, call: Call) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # -- the methods ------------------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _known_channel(self, channel: str) -> bool:
        return not self.strict_channels or channel in self.channels or channel in self.users

    def dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Answer one Web API call as Slack would (ok or error), without the HTTP part."""
        if method == "oauth.v2.access":
            return self._oauth_v2_access(args)
        if method not in REQUIRED:
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token not in self.tokens:
            return {"ok": False, "error": "invalid_auth"}
        for names, error in REQUIRED[method]:
            if not any(args.get(name) not in (None, "", [], {}) for name in names):
                return {"ok": False, "error": error, "missing": list(names)}
        handler: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, "_" + method.replace(".", "_"))
        return handler(args)

    def _auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_name.lower().replace(' ', '-')}.slack.com/",
            "team": self.team_name,
            "user": "tokenwise",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B" + self.bot_user_id,
            "enterprise_id": self.enterprise_id,
            "is_enterprise_install": False,
        }

    def _message(self, args: dict[str, Any], ts: str) -> dict[str, Any]:
        keep = ("text", "blocks", "attachments", "thread_ts", "metadata")
        return {"type": "message", "ts": ts, "user": self.bot_user_id, **{k: args[k] for k in keep if k in args}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        if not self._known_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        ts = self._next_ts()
        message = self._message(args, ts)
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self._known_channel(str(args["channel"])):
            return {"ok": False, "error": "channel_not_found"}
        if args["user"] not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args["channel"]), str(args["ts"]))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key] = self._message(args, key[1])
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text", "")}

    def _view(self, view: Any, view_id: str | None = None) -> dict[str, Any] | None:
        if not isinstance(view, dict) or view.get("type") not in {"modal", "home"}:
            return None
        return {**view, "id": view_id or "V" + uuid.uuid4().hex[:10].upper(), "team_id": self.team_id}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args["user_id"])
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        view = self._view(args["view"], self.home_views.get(user, {}).get("id"))
        if view is None or view["type"] != "home":
            return {"ok": False, "error": "invalid_arguments"}
        self.home_views[user] = view
        self.views[view["id"]] = view
        return {"ok": True, "view": view}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._view(args["view"])
        if view is None or view["type"] != "modal":
            return {"ok": False, "error": "invalid_arguments"}
        self.views[view["id"]] = view
        return {"ok": True, "view": view}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id") or next(
            (v["id"] for v in self.views.values() if v.get("external_id") == args.get("external_id")), None
        )
        if view_id not in self.views:
            return {"ok": False, "error": "not_found"}
        view = self._view(args["view"], view_id)
        if view is None:
            return {"ok": False, "error": "invalid_arguments"}
        self.views[view["id"]] = view
        return {"ok": True, "view": view}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args["user"]))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args["email"]).strip().lower()
        for user in self.users.values():
            if str(user["profile"].get("email", "")).lower() == email:
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include_users = str(args.get("include_users", "")).lower() in {"1", "true"}
        groups = []
        for group in self.usergroups.values():
            shown = {k: v for k, v in group.items() if k != "users" or include_users}
            shown["user_count"] = len(group["users"])
            groups.append(shown)
        return {"ok": True, "usergroups": groups}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(args["usergroup"]))
        return {"ok": True, "users": list(group["users"])} if group else {"ok": False, "error": "no_such_subteam"}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(str(args["channel"]))
        return {"ok": True, "channel": channel} if channel else {"ok": False, "error": "channel_not_found"}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first, paged by `limit` and `cursor`; `metadata` only with include_all_metadata, as Slack does."""
        channel = str(args["channel"])
        if not self._known_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        with_metadata = str(args.get("include_all_metadata", "")).lower() in {"1", "true"}
        found = sorted(
            (m for (c, _ts), m in self.messages.items() if c == channel), key=lambda m: float(m["ts"]), reverse=True
        )
        start = int(args.get("cursor") or 0)
        limit = max(1, min(int(args.get("limit") or 100), 999))
        page = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in found[start:]][:limit]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(args["length"])
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        self.uploads[file_id] = {"id": file_id, "filename": args["filename"], "length": length, "content": None}
        return {"ok": True, "upload_url": f"{self.origin}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args["files"]
        if not isinstance(files, list) or not all(isinstance(f, dict) and "id" in f for f in files):
            return {"ok": False, "error": "invalid_arguments"}
        done = []
        for item in files:
            upload = self.uploads.get(str(item["id"]))
            if upload is None or upload["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            upload.update(
                title=item.get("title") or upload["filename"],
                channel_id=args.get("channel_id"),
                initial_comment=args.get("initial_comment"),
                completed=True,
            )
            done.append({"id": upload["id"], "title": upload["title"]})
        return {"ok": True, "files": done}

    def upload(self, file_id: str, content: bytes) -> tuple[int, str]:
        upload = self.uploads.get(file_id)
        if upload is None:
            return 404, "Not Found"
        upload["content"] = content
        return 200, f"OK - {len(content)}"

    def _oauth_v2_access(self, args: dict[str, Any]) -> dict[str, Any]:
        """The OAuth token exchange (code or refresh_token), for install-flow and rotation tests."""
        client_id, secret = args.get("client_id"), args.get("client_secret")
        if not client_id or self.oauth_clients.get(str(client_id)) != secret:
            return {"ok": False, "error": "invalid_client_id"}
        if args.get("grant_type") == "refresh_token":
            if not args.get("refresh_token"):
                return {"ok": False, "error": "invalid_refresh_token"}
        elif not args.get("code"):
            return {"ok": False, "error": "invalid_code"}
        bot_token = f"xoxe.xoxb-{uuid.uuid4().hex[:16]}"
        self.accept_token(bot_token)
        body: dict[str, Any] = {
            "ok": True,
            "app_id": "A111",
            "authed_user": {"id": next(iter(self.users), "U111")},
            "scope": "commands,chat:write,users:read,users:read.email",
            "token_type": "bot",
            "access_token": bot_token,
            "bot_user_id": self.bot_user_id,
            "refresh_token": f"xoxe-1-{uuid.uuid4().hex[:16]}",
            "expires_in": 43200,
            "team": {"id": self.team_id, "name": self.team_name},
            "enterprise": {"id": self.enterprise_id} if self.enterprise_id else None,
            "is_enterprise_install": False,
        }
        return body

    # -- the HTTP part ----------------------------------------------------------------------------
    def _serve(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        segments = [s for s in parts.path.split("/") if s]
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if len(segments) == 2 and segments[0] == "upload":
            self._serve_upload(request, segments[1], raw, parts.path)
            return
        args = _arguments(parts.query, request.headers.get("Content-Type", ""), raw)
        if len(segments) == 2 and segments[0] == "response":
            method = RESPONSE_URL
        elif len(segments) == 2 and segments[0] == "api":
            method = segments[1]
        else:
            request.answer(404, {"ok": False, "error": "not_found"})
            return
        token = _bearer(request.headers.get("Authorization")) or args.pop("token", None)
        if method == "oauth.v2.access":
            basic = _basic(request.headers.get("Authorization"))
            if basic:
                args.setdefault("client_id", basic[0])
                args.setdefault("client_secret", basic[1])
            token = None
        fault = self._take_fault(method)
        pending: Call | None = None
        if fault and fault.hang:
            pending = Call(method, args, token, parts.path, HANGING)  # visible at once, answered on release
            self._record(pending)
            self._release.wait(self.hang_seconds)
            fault = None
        if fault and fault.status != 200:
            body = {"ok": False, "error": "ratelimited" if fault.status == 429 else "fatal_error"}
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self._record(Call(method, args, token, parts.path, fault.status, body))
            request.answer(fault.status, body, headers)
            return
        if fault and fault.error:
            body = {"ok": False, "error": fault.error}
        elif method == RESPONSE_URL:
            body = {"ok": True}
        else:
            with self._changed:  # one state change at a time, like a serial Slack
                body = self.dispatch(method, args, token)
        if pending is not None:
            with self._changed:
                pending.status, pending.response = 200, body
                self._changed.notify_all()
        else:
            self._record(Call(method, args, token, parts.path, 200, body))
        if method == RESPONSE_URL:
            request.answer_text(200 if body.get("ok") else 404, "ok" if body.get("ok") else str(body["error"]))
        else:
            request.answer(200, body)

    def _serve_upload(self, request: _Handler, file_id: str, raw: bytes, path: str) -> None:
        fault = self._take_fault(UPLOAD)
        if fault and fault.status != 200:
            self._record(Call(UPLOAD, {"file_id": file_id, "length": len(raw)}, None, path, fault.status))
            request.answer_text(fault.status, "error")
            return
        with self._changed:
            status, text = self.upload(file_id, raw)
        self._record(Call(UPLOAD, {"file_id": file_id, "length": len(raw)}, None, path, status))
        request.answer_text(status, text)


DEFAULT_USERS: list[dict[str, Any]] = [
    {"id": "W111", "email": "ada@example.com", "name": "Ada Lovelace", "tz": "Europe/London"},
    {"id": "U111", "email": "grace@example.com", "name": "Grace Hopper", "tz": "America/New_York"},
    {"id": "U222", "email": "alan@example.com", "name": "Alan Turing", "tz": "Europe/Berlin"},
]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that gave up (timeout tests) is expected


class _Handler(BaseHTTPRequestHandler):
    standin: SlackStandIn
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.standin._serve(self)

    def do_GET(self) -> None:
        self.standin._serve(self)

    def answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8", headers or {})

    def answer_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", {})

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: calls are recorded instead
        pass


def _handler_for(standin: SlackStandIn) -> type[_Handler]:
    return type("SlackStandInHandler", (_Handler,), {"standin": standin})


def _arguments(query: str, content_type: str, raw: bytes) -> dict[str, Any]:
    """Query, form or JSON arguments, merged; JSON-valued form fields (blocks, view, ...) decoded."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if raw and "application/json" in content_type:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict):
            args.update(body)
    elif raw and "multipart/form-data" not in content_type:
        args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for name in JSON_ARGS:
        if isinstance(args.get(name), str):
            with contextlib.suppress(ValueError):
                args[name] = json.loads(args[name])
    return args


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _basic(header: str | None) -> tuple[str, str] | None:
    if header and header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password
    return None


def iter_blocks_text(blocks: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Every piece of text in a list of blocks, for assertions like "no name appears"."""
    for block in blocks:
        yield from _texts(block)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in {"text", "value", "alt_text", "placeholder", "initial_value"} and isinstance(item, str):
                yield item
            else:
                yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
