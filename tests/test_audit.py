"""`make audit` is a gate only when it really audited: a local OSV stand-in plays the advisory service.

It answers every query (nothing found: exit 0), reports one advisory (exit 1, listed), or fails (exit 2
with one line saying so; pip-audit alone used to exit 0 having audited nothing on a mirror without
advisories).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pip-audit walks the whole environment

ROOT = Path(__file__).resolve().parent.parent


class OsvStandIn(BaseHTTPRequestHandler):
    """POST /v1/query as OSV answers it: `{}` (no advisory), `{"vulns": [...]}`, or an error status."""

    mode = "clean"

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "down":
            self.send_response(503)
            self.end_headers()
            return
        body: dict[str, object] = {}
        if self.mode == "advisory" and query["package"]["name"] == "uvicorn":
            body = {
                "vulns": [
                    {
                        "id": "GHSA-tokw-test-0001",
                        "summary": "a made-up advisory",
                        "details": "made up for the test",
                        "affected": [
                            {
                                "package": {"name": "uvicorn", "ecosystem": "PyPI"},
                                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
                            }
                        ],
                        "aliases": [],
                        "published": "2026-11-01T00:00:00Z",
                    }
                ]
            }
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def osv() -> Iterator[tuple[str, type[OsvStandIn]]]:
    handler = type("Handler", (OsvStandIn,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query", handler
    server.shutdown()


def make_audit(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "audit", f"AUDIT_ARGS=-s osv --osv-url {url} --timeout 10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_an_audit_that_found_nothing_exits_0(osv: tuple[str, type[OsvStandIn]]) -> None:
    url, handler = osv
    handler.mode = "clean"
    result = make_audit(url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No known vulnerabilities found" in result.stdout


def test_a_known_vulnerability_fails_the_audit_and_is_listed(osv: tuple[str, type[OsvStandIn]]) -> None:
    url, handler = osv
    handler.mode = "advisory"
    result = make_audit(url)
    assert result.returncode != 0
    assert "GHSA-tokw-test-0001" in result.stdout and "uvicorn" in result.stdout


def test_an_advisory_service_that_does_not_answer_fails_with_one_line(osv: tuple[str, type[OsvStandIn]]) -> None:
    url, handler = osv
    handler.mode = "down"
    result = make_audit(url)
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make audit: failed, some package could not be audited"), lines
    assert "Traceback" not in result.stdout
