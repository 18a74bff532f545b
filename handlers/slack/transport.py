"""Slack's HTTP endpoints: POST /slack/events (commands, interactivity, events), and in OAuth mode
GET /slack/install and GET /slack/oauth_redirect.

Bolt's FastAPI adapter runs the app's synchronous dispatch on the event loop; ours runs the same
adapter code in a worker thread, so a slow authorize (a database read, a token rotation) never stalls
the other requests this process serves, such as the ingest API. Bodies over SLACK_MAX_BYTES (Slack's
own payloads are far smaller) are refused with 413 before any signature work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from slack_bolt import App
from slack_bolt.adapter.fastapi import SlackRequestHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from handlers.http.bodies import BodyTooLarge, bounded_body
from handlers.slack.app import EVENTS_PATH, INSTALL_PATH, REDIRECT_PATH

SLACK_MAX_BYTES = 1024 * 1024  # a full modal submission is tens of KB


class ThreadedSlackRequestHandler(SlackRequestHandler):
    """SlackRequestHandler whose Bolt work happens off the event loop."""

    async def handle(self, req: Request, addition_context_properties: dict[str, Any] | None = None) -> Response:
        try:
            body = await bounded_body(req, SLACK_MAX_BYTES)
        except BodyTooLarge:
            return Response(status_code=413, content="Request body too large")
        timestamp = req.headers.get("x-slack-request-timestamp")
        if req.method == "POST" and timestamp is not None and not timestamp.strip().isdigit():
            # slack_sdk's verifier would raise on int("...") and answer 500; a forged header is a 401
            return Response(status_code=401, content='{"error":"invalid request"}', media_type="application/json")
        bolt_request = to_bolt_request(req, body, addition_context_properties)
        flow = self.app.oauth_flow
        if req.method == "GET" and flow is not None and req.url.path == flow.install_path:
            bolt_response = await run_in_threadpool(flow.handle_installation, bolt_request)
        elif req.method == "GET" and flow is not None and req.url.path == flow.redirect_uri_path:
            bolt_response = await run_in_threadpool(flow.handle_callback, bolt_request)
        elif req.method == "POST":
            bolt_response = await run_in_threadpool(self.app.dispatch, bolt_request)
        else:
            return Response(status_code=404, content="Not found")
        return to_starlette_response(bolt_response)


def slack_router(bolt: App) -> APIRouter:
    handler = ThreadedSlackRequestHandler(bolt)
    router = APIRouter(tags=["slack"])

    @router.post(EVENTS_PATH, summary="Slack commands, interactivity and events (signed by Slack)")
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    if bolt.oauth_flow is not None:

        @router.get(INSTALL_PATH, summary="Start installing Tokenwise in a workspace")
        async def slack_install(request: Request) -> Response:
            return await handler.handle(request)

        @router.get(REDIRECT_PATH, summary="Slack's OAuth redirect")
        async def slack_oauth_redirect(request: Request) -> Response:
            return await handler.handle(request)

    return router
