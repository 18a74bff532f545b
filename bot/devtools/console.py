"""`tokenwise console`: the real app, a loopback Slack, and Block Kit rendered in the terminal.

The console starts the same FastAPI app `tokenwise serve` runs, on a free loopback port, with the
Slack stand-in as Slack. What you type becomes a correctly signed slash command, button click, modal
submission or App Home event sent over HTTP; what the app sends back to "Slack" is drawn with rich.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
import uvicorn
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table

from bot.app import create_app
from bot.config import Settings
from bot.devtools.slack_requests import SignedRequest, SlackRequests, modal_values
from bot.devtools.slack_standin import Call, SlackStandIn
from bot.services import Services
from handlers.slack.app import EVENTS_PATH
from handlers.slack.people import SlackPeople
from handlers.slack.terminal import mrkdwn_to_rich

OUTPUTS = ("response_url", "views.open", "views.publish", "views.update", "chat.postMessage", "chat.postEphemeral")
CONSOLE_TOKEN = "xoxb-console"
WAIT_SECONDS = 30.0


class LocalServer:
    """uvicorn serving an ASGI app on a free 127.0.0.1 port, in a thread.

    The socket is bound and listening before the thread starts, so requests can be sent at once:
    the kernel queues them until uvicorn accepts.
    """

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def slack_user_id_for(email: str) -> str:
    """A stable, Slack-looking user id for someone who has none yet."""
    return "U" + hashlib.sha256(email.encode()).hexdigest()[:10].upper()


@dataclass
class Exchange:
    """One request to the app and what it caused: the HTTP answer and the calls that reached Slack."""

    status: int
    ack: Any
    outputs: list[Call] = field(default_factory=list)


@contextmanager
def console_app(settings: Settings, engine: Any, user: dict[str, Any]) -> Iterator[ConsoleSlack]:
    """The app on a loopback port with a fresh stand-in as Slack, `user` its only human user."""
    secret = secrets.token_hex(16)
    with SlackStandIn(token=CONSOLE_TOKEN, users=[user]) as slack:
        config = settings.model_copy(
            update={
                "slack_bot_token": CONSOLE_TOKEN,
                "slack_signing_secret": secret,
                "slack_api_url": slack.url,
                "slack_client_id": None,
                "slack_client_secret": None,
            }
        )
        services = Services(settings=config, engine=engine, people=SlackPeople(config.slack_user_cache_seconds))
        with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            yield ConsoleSlack(slack, SlackRequests(secret, team_id=slack.team_id), http, user["id"])


@dataclass
class ConsoleSlack:
    """Sends what a Slack user does to the app and collects what the app sends back."""

    slack: SlackStandIn
    requests: SlackRequests
    http: httpx.Client
    user_id: str

    def send(self, request: SignedRequest, expect_output: bool = True) -> Exchange:
        since = len(self.slack.calls())
        response = self.http.post(EVENTS_PATH, content=request.body, headers=request.headers)
        try:
            ack: Any = response.json() if response.content else None
        except ValueError:
            ack = response.text
        exchange = Exchange(response.status_code, ack)
        if response.status_code == 200 and expect_output and not _has_content(ack):
            self.slack.wait_for_new(OUTPUTS, since, WAIT_SECONDS)
            exchange.outputs = [c for c in self.slack.calls()[since:] if c.method in OUTPUTS]
        return exchange

    def command(self, text: str) -> Exchange:
        return self.send(self.requests.slash_command(text, self.user_id, self.slack.response_url()))

    def click(self, button: dict[str, Any]) -> Exchange:
        request = self.requests.block_actions(
            self.user_id,
            button["action_id"],
            button.get("value", ""),
            response_url=None if button.get("home_view_id") else self.slack.response_url(),
            home_view_id=button.get("home_view_id"),
            label=button["text"]["text"],
        )
        return self.send(request)

    def submit(self, view: dict[str, Any], answers: dict[str, Any]) -> Exchange:
        request = self.requests.view_submission(self.user_id, view, modal_values(view, answers))
        return self.send(request, expect_output=True)

    def home(self) -> Exchange:
        return self.send(self.requests.app_home_opened(self.user_id))


def _has_content(ack: Any) -> bool:
    return isinstance(ack, dict) and bool(ack.get("text") or ack.get("blocks") or ack.get("response_action"))


# -- rendering -------------------------------------------------------------------------------------
class BlockRenderer:
    """Draws blocks; numbers every button so the user can press it by typing its number."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.buttons: list[dict[str, Any]] = []

    def button_label(self, element: dict[str, Any]) -> str:
        self.buttons.append(element)
        style = {"primary": "green", "danger": "red"}.get(element.get("style", ""), "blue")
        return f"[{style}][{len(self.buttons)}] {rich_escape(element['text']['text'])}[/{style}]"

    def text_of(self, obj: dict[str, Any] | None) -> str:
        if not obj:
            return ""
        if obj.get("type") == "mrkdwn":
            return mrkdwn_to_rich(obj.get("text", ""))
        return rich_escape(obj.get("text", ""))

    def render(self, blocks: list[dict[str, Any]], home_view_id: str | None = None) -> None:
        for block in blocks:
            kind = block.get("type")
            if kind == "header":
                self.console.print(f"[bold underline]{self.text_of(block['text'])}[/bold underline]")
            elif kind == "section":
                text = self.text_of(block.get("text"))
                if text.strip():
                    accessory = block.get("accessory")
                    if accessory and accessory.get("type") == "button":
                        accessory = {**accessory, "home_view_id": home_view_id}
                        text += "  " + self.button_label(accessory)
                    self.console.print(text)
                if block.get("fields"):
                    grid = Table.grid(padding=(0, 3))
                    grid.add_column()
                    grid.add_column()
                    cells = [self.text_of(f) for f in block["fields"]]
                    for i in range(0, len(cells), 2):
                        grid.add_row(*cells[i : i + 2], *([""] if i + 1 >= len(cells) else []))
                    self.console.print(grid)
            elif kind == "context":
                self.console.print("[dim]" + "  ".join(self.text_of(e) for e in block.get("elements", [])) + "[/dim]")
            elif kind == "divider":
                self.console.print(Rule(style="dim"))
            elif kind == "actions":
                labels = [
                    self.button_label({**e, "home_view_id": home_view_id})
                    for e in block.get("elements", [])
                    if e.get("type") == "button"
                ]
                self.console.print("  ".join(labels))
            elif kind == "input":
                optional = " (optional)" if block.get("optional") else ""
                self.console.print(f"[bold]{self.text_of(block.get('label'))}[/bold]{optional}")

    def message(self, body: dict[str, Any], title: str = "Tokenwise") -> None:
        self.console.print(Rule(title, style="magenta"))
        if body.get("blocks"):
            self.render(body["blocks"])
        elif body.get("text"):
            self.console.print(rich_escape(str(body["text"])))


HELP = """Type a /tokenwise command (the "/tokenwise" is optional), e.g. `me`, `me last week`, `runs`, `team`.
Press a button by typing its number. `home` opens the App Home tab.
`quit` (or end of input) leaves; inside a modal, `quit` closes the modal without saving."""


QUIT_WORDS = {"quit", "exit", ":q"}
CLOSED = object()  # what a modal input gets when the person closes the modal


class ConsoleLoop:
    """The read-render loop over any line source (a terminal, or a pipe: one command a line)."""

    def __init__(self, slack: ConsoleSlack, console: Console, read_line: Callable[[str], str | None]) -> None:
        self.slack = slack
        self.console = console
        self.read_line = read_line
        self.renderer = BlockRenderer(console)

    def run(self) -> None:
        self.console.print(Panel(HELP, title="Tokenwise console", border_style="magenta"))
        while True:
            line = self.read_line("tokenwise> ")
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            if line in QUIT_WORDS:
                return
            self.handle(line)

    def handle(self, line: str) -> None:
        try:
            if line == "home":
                self.show(self.slack.home())
            elif line.isdigit():
                self.press(int(line))
            else:
                text = line[len("/tokenwise") :].strip() if line.startswith("/tokenwise") else line
                self.show(self.slack.command(text))
        except TimeoutError:
            self.console.print("[red]The app did not answer within 30 seconds.[/red]")
        except httpx.HTTPError as error:
            self.console.print(f"[red]Could not reach the app: {rich_escape(str(error))}[/red]")

    def press(self, number: int) -> None:
        if not 1 <= number <= len(self.renderer.buttons):
            self.console.print(f"[yellow]There is no button {number}.[/yellow]")
            return
        self.show(self.slack.click(self.renderer.buttons[number - 1]))

    def show(self, exchange: Exchange) -> None:
        if _has_content(exchange.ack) or any(c.method != "views.open" for c in exchange.outputs):
            self.renderer.buttons = []  # a new message: its buttons replace the old ones (a modal keeps them)
        if exchange.status != 200:
            self.console.print(f"[red]The app answered HTTP {exchange.status}.[/red]")
            return
        if _has_content(exchange.ack):
            self.renderer.message(exchange.ack)
        for call in exchange.outputs:
            if call.method == "views.publish":
                view_id = call.response.get("view", {}).get("id")
                self.console.print(Rule("App Home", style="magenta"))
                self.renderer.render(call.args["view"].get("blocks", []), home_view_id=view_id)
            elif call.method == "views.open":
                self.fill_modal(call.response.get("view") or call.args["view"])
            else:
                self.renderer.message(call.args, "Tokenwise (only visible to you)")

    def fill_modal(self, view: dict[str, Any]) -> None:
        """Ask for each input; like Slack, the modal stays open until it validates (or input ends), and only
        the inputs the app refused are asked again: what was typed in the others is kept."""
        answers: dict[str, Any] = {}
        refused: set[str] | None = None  # None: ask every input
        for _attempt in range(3):
            asked = self.ask_modal(view, refused, answers)
            if asked is None:
                self.console.print("[yellow]Modal closed without saving.[/yellow]")
                return
            answers |= asked
            exchange = self.slack.submit(view, answers)
            if isinstance(exchange.ack, dict) and exchange.ack.get("response_action") == "errors":
                errors = exchange.ack.get("errors", {})
                for block_id, error in errors.items():
                    self.console.print(f"[red]{rich_escape(block_id)}: {rich_escape(error)}[/red]")
                refused = set(errors)
                continue
            self.show(Exchange(exchange.status, None, exchange.outputs))
            return
        self.console.print("[yellow]Modal closed without saving.[/yellow]")

    def ask_modal(
        self, view: dict[str, Any], only: set[str] | None = None, kept: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The answers to the modal's inputs (`only` those blocks, when given); None when the person closes
        it (`quit`, or end of input)."""
        self.console.print(Rule(self.renderer.text_of(view.get("title")), style="magenta"))
        answers: dict[str, Any] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                if only is None:
                    self.renderer.render([block])
                continue
            if only is not None and block["block_id"] not in only:
                if kept and block["block_id"] in kept:
                    label = self.renderer.text_of(block.get("label"))
                    value = kept[block["block_id"]]
                    shown = ", ".join(value) if isinstance(value, list) else value
                    self.console.print(f"[dim]{rich_escape(label)}: {rich_escape(str(shown or '(empty)'))}[/dim]")
                continue
            answer = self.ask_input(block)
            if answer is CLOSED:
                return None
            answers[block["block_id"]] = answer
        return answers

    def ask_input(self, block: dict[str, Any]) -> Any:
        """One input's answer, asked until it is one the input can hold; CLOSED on `quit` or end of input."""
        element = block["element"]
        label = self.renderer.text_of(block.get("label"))
        choices = element["type"] in {"radio_buttons", "checkboxes"}
        if choices:
            for i, option in enumerate(element["options"], 1):
                self.console.print(f"  {i}. {self.renderer.text_of(option['text'])}")
        optional = ", or empty" if block.get("optional") else ""
        while True:
            line = self.read_line(f"{label} (number{optional}): " if choices else f"{label}: ")
            if line is None or line.strip() in QUIT_WORDS:
                return CLOSED
            answer = line.strip()
            if not choices:
                return answer
            options = element["options"]
            if answer == "" and block.get("optional"):
                return [] if element["type"] == "checkboxes" else None
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                picked = options[int(answer) - 1]["value"]
                return [picked] if element["type"] == "checkboxes" else picked
            self.console.print(f"[yellow]Type a number from 1 to {len(options)}{optional} (`quit` closes it).[/yellow]")


def line_reader(stream: TextIO, console: Console, interactive: bool) -> Callable[[str], str | None]:
    """Prompts on a terminal; with piped input, echoes each line read so transcripts make sense."""

    def read(prompt: str) -> str | None:
        if interactive:
            try:
                return console.input(f"[bold magenta]{rich_escape(prompt)}[/bold magenta]")
            except EOFError:
                return None
        line = stream.readline()
        if not line:
            return None
        console.print(f"[bold magenta]{rich_escape(prompt)}[/bold magenta]{rich_escape(line.rstrip())}")
        return line

    return read
