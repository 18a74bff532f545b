"""Request bodies read with a size limit, shared by the Slack and ingest routes."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    """The body (or its declared length) passed the route's limit; nothing more was read."""


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it (or its declared length) passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    received = bytearray()
    async for chunk in request.stream():
        received.extend(chunk)
        if len(received) > limit:
            raise BodyTooLarge
    return bytes(received)
