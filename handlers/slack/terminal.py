"""Block Kit for a terminal: the same content Slack shows, with Slack's markup turned into rich's.

`*bold*`, `_italic_`, `` `code` `` and quotes become terminal styles, `<url|label>` becomes "label (url)",
emoji codes (`:lock:`) become the character they name (or nothing), and Slack's escapes are undone. The
CLI (`tokenwise summary`, `digest preview`) and `tokenwise console` print through here, so no terminal
ever shows `*People active*`.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape as rich_escape

_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)_(?![\w_])")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_EMOJI = re.compile(r":([a-z][a-z0-9_+-]*):")
EMOJI = {
    "lock": "🔒", "warning": "⚠", "trophy": "🏆", "mag": "🔍", "wave": "👋", "link": "🔗",
    "no_entry": "⛔", "white_check_mark": "✅", "tada": "🎉", "bulb": "💡", "chart_with_upwards_trend": "📈",
}  # fmt: skip


def _link(match: re.Match[str]) -> str:
    url, label = match.group(1), match.group(2)
    return f"{label} ({url})" if label and label != url else url


def mrkdwn_to_rich(text: str) -> str:
    """Slack mrkdwn as rich markup: bold, italic, code, code blocks, quotes, links and emoji codes."""
    text = _LINK.sub(_link, text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), ""), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = rich_escape(text)
    parts = text.split("```")
    for i, part in enumerate(parts):
        if i % 2 == 1:
            parts[i] = f"[cyan]{part.strip()}[/cyan]"
            continue
        part = _CODE.sub(r"[cyan]\1[/cyan]", part)
        part = _BOLD.sub(r"[bold]\1[/bold]", part)
        part = _ITALIC.sub(r"[italic]\1[/italic]", part)
        part = re.sub(r"(?m)^&gt; |^> ", "│ ", part)
        parts[i] = part
    return "\n".join(p for p in parts if p)


def terminal_lines(blocks: list[dict[str, Any]]) -> list[str]:
    """The text of blocks as rich markup, one line per line of text (for `Console.print`)."""
    lines: list[str] = []
    for block in blocks:
        texts = [block["text"]] if isinstance(block.get("text"), dict) else []
        texts += [item for item in block.get("fields", []) + block.get("elements", []) if isinstance(item, dict)]
        for item in texts:
            text = str(item.get("text", ""))
            shown = mrkdwn_to_rich(text) if item.get("type") == "mrkdwn" else rich_escape(text)
            lines.extend(line.rstrip() for line in shown.strip().splitlines())
    return [line for line in lines if line.strip()]
