"""Claude Code session logs written as Claude Code writes them, with the true totals known.

What the real logs do, and the generator does too:
- compact JSON, one object per line (ccusage 20 reads nothing else);
- a message streamed as one line per content block: the copies share `message.id` and `requestId`, their
  `output_tokens` grow and only the last copy carries the final usage;
- tool results between the copies, user lines, lines without usage, Claude Code's `<synthetic>` lines;
- sub-agents (`isSidechain: true`) with calls of their own, and replays of their parent's message (same
  `message.id`, another `requestId`): not a call, never counted (ccusage #913);
- session folders nested (`projects/{project}/{sessionId}/{file}.jsonl`) and flat
  (`projects/{project}/{sessionId}.jsonl`); a resumed session copying earlier messages into a new file;
- sessions that cross midnight UTC (a streamed message may even cross it: it counts on its last copy's
  day), `costUSD` on some lines, and files whose last line was cut off mid-write.

`truth` is what an exact importer must find: tokens per UTC day and per project (the checkout folder),
counting each API call once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# ccusage, the tool these logs are checked against: the version and where `make bench` installs it (npm, into
# a folder outside the repository); tests/test_ingest_claude_code.py finds it there too.
CCUSAGE_VERSION = "20.0.24"
CCUSAGE_HOME = Path(os.environ.get("TOKENWISE_CCUSAGE_HOME", "/tmp/tokenwise-bench/ccusage"))
CCUSAGE_PLACES = (str(CCUSAGE_HOME / "node_modules" / ".bin" / "ccusage"),)


def find_ccusage() -> str | None:
    """ccusage CCUSAGE_VERSION where it is installed: TOKENWISE_CCUSAGE, CCUSAGE_PLACES, or on the PATH."""
    candidates = [os.environ.get("TOKENWISE_CCUSAGE", ""), *CCUSAGE_PLACES, shutil.which("ccusage") or ""]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
            if version.stdout.strip().endswith(CCUSAGE_VERSION):
                return candidate
    return None


MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")
BRANCHES = ("main", "feature/search", "fix/login-timeout")
Tokens = tuple[int, int, int, int]  # input, output, cache read, cache write
_FILLER = 'def handler(event):\n    """Never stored."""\n    return {"status": 200, "body": event["path"]}\n\n'


@dataclass
class Truth:
    per_day: dict[str, Tokens] = field(default_factory=dict)
    per_project: dict[str, Tokens] = field(default_factory=dict)
    calls: int = 0
    sessions: int = 0
    files: int = 0
    truncated_files: int = 0

    def add(self, day: str, project: str, tokens: Tokens) -> None:
        for table, key in ((self.per_day, day), (self.per_project, project)):
            before = table.get(key, (0, 0, 0, 0))
            table[key] = (before[0] + tokens[0], before[1] + tokens[1], before[2] + tokens[2], before[3] + tokens[3])
        self.calls += 1


def compact(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"))


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_claude_logs(
    root: Path, seed: int = 1, sessions: int = 12, start: datetime | None = None, text_bytes: int = 0
) -> Truth:
    """Logs of `sessions` sessions under root/projects; the truth they hold. `text_bytes` gives each prompt,
    answer and tool result text of about that size (real sizes, for benchmarks); the default keeps them tiny."""
    rng = random.Random(seed)
    filler = (_FILLER * (1 + 2 * text_bytes // len(_FILLER)))[: 2 * text_bytes]
    truth = Truth(sessions=sessions)
    start = start or datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    history: list[str] = []  # main-thread message lines a resumed session copies
    for number in range(sessions):
        project = f"repo{number % 3}"
        session_id = str(uuid.UUID(int=rng.getrandbits(128)))
        cwd = f"/home/dev{number % 2}/src/{project}"
        branch = rng.choice(BRANCHES)
        # every third session starts minutes before midnight and runs across it
        moment = (
            start + timedelta(days=number % 3, hours=2, minutes=50 + rng.randrange(8))
            if number % 3 == 0
            else (start + timedelta(days=number % 4, hours=rng.randrange(0, 20), minutes=rng.randrange(60)))
        )
        lines: list[str] = []
        if history and rng.random() < 0.3:
            lines += rng.sample(history, min(3, len(history)))  # a resumed session: earlier calls, not again

        def base(
            kind: str,
            when: datetime,
            sidechain: bool = False,
            cwd: str = cwd,
            session_id: str = session_id,
            branch: str = branch,
        ) -> dict[str, Any]:
            return {
                "parentUuid": None, "isSidechain": sidechain, "userType": "external", "cwd": cwd,
                "sessionId": session_id, "version": "2.0.14", "gitBranch": branch, "type": kind,
                "uuid": str(uuid.UUID(int=rng.getrandbits(128))), "timestamp": _stamp(when),
            }  # fmt: skip

        for turn in range(rng.randrange(3, 9)):
            moment += timedelta(seconds=rng.randrange(20, 200))
            prompt = "never stored" + filler[: text_bytes // 2 + turn * 97 % (text_bytes + 1)]
            lines.append(compact({**base("user", moment), "message": {"role": "user", "content": prompt}}))
            sidechain = rng.random() < 0.2
            model = rng.choice(MODELS)
            message_id = f"msg_{seed}_{number}_{turn}"
            request_id = f"req_{seed}_{number}_{turn}"
            final = (rng.randrange(1, 5000), rng.randrange(50, 4000), rng.randrange(0, 90000), rng.randrange(0, 9000))
            copies = rng.randrange(1, 5)
            last: str = ""
            for copy in range(copies):  # output grows copy by copy; the last is the call's usage
                moment += timedelta(seconds=rng.randrange(1, 40))
                output = final[1] if copy == copies - 1 else rng.randrange(1, final[1])
                block = {"type": "tool_use", "id": f"toolu_{turn}_{copy}", "name": "Read", "input": {"path": "x"}}
                if copy == 0:
                    block = {"type": "text", "text": "never stored" + filler[: text_bytes // 2]}
                usage = {
                    "input_tokens": final[0], "cache_creation_input_tokens": final[3],
                    "cache_read_input_tokens": final[2], "output_tokens": output, "service_tier": "standard",
                }  # fmt: skip
                line = {
                    **base("assistant", moment, sidechain),
                    "requestId": request_id,
                    "message": {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                "content": [block], "usage": usage},
                }  # fmt: skip
                if rng.random() < 0.1:
                    line["costUSD"] = round(rng.random() / 10, 6)
                last = compact(line)
                lines.append(last)
                if block["type"] == "tool_use":
                    output_text = filler[: text_bytes // 2 + copy * 131 % (text_bytes + 1)]
                    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"]}]}
                    if text_bytes:
                        result["content"][0]["content"] = output_text
                    lines.append(compact({**base("user", moment), "message": result}))
            truth.add(moment.date().isoformat(), project, final)
            if not sidechain:
                history.append(last)
                if rng.random() < 0.25:  # a sub-agent replays its parent's message: not a call of its own
                    replay = json.loads(last)
                    replay["isSidechain"], replay["requestId"] = True, f"{request_id}_replay"
                    lines.append(compact(replay))
            if rng.random() < 0.1:
                synthetic = {**base("assistant", moment), "message": {
                    "id": f"syn_{number}_{turn}", "model": "<synthetic>", "role": "assistant",
                    "usage": {"input_tokens": 0, "output_tokens": 0}}}  # fmt: skip
                lines.append(compact(synthetic))
        body = "\n".join(lines) + "\n"
        if rng.random() < 0.25:
            body += '{"type":"assistant","sessionId":"' + session_id + '","message":{"usage":{"input_tok'
            truth.truncated_files += 1
        folder = root / "projects" / f"-home-dev{number % 2}-src-{project}"
        nested = folder / session_id / f"{rng.getrandbits(32):08x}.jsonl"
        path = nested if number % 2 else folder / f"{session_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        truth.files += 1
    return truth
