"""Where the public payload samples and Slack's manifest schema live.

They are copies of the team's shared fixtures (`../shared/samples`, `../shared/schemas`; sources in
tests/fixtures/samples/README.md), kept in the repository so that a fresh clone tests on its own.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLES = FIXTURES / "samples"
SCHEMAS = FIXTURES / "schemas"
MANIFEST_SCHEMA = SCHEMAS / "slack-manifest.schema.1.0.0.json"
