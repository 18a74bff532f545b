"""What `/healthz` says about each dependency, and the background re-check that keeps it current.

The database decides whether a process can serve: 503 while it is down, so a load balancer drains the
replica. Slack and the language model only degrade it: ingest, OTLP and GitHub webhooks still work, so the
answer stays 200 with `"status": "degraded"` and the dependency's state. Slack and the model are probed
off-request, every TOKENWISE_HEALTH_CHECK_SECONDS, so neither a load balancer's polling nor a Slack
request ever waits on them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

log = logging.getLogger("tokenwise")

UP = "up"
UNKNOWN = "unknown"


class Unavailable(Exception):
    """A dependency is down; the message is its state as `/healthz` shows it ("unreachable", "rejected")."""


@dataclass
class Dependency:
    """One thing this process talks to: its key in `/healthz`, how to probe it, and what to tell the
    operator (one line naming the setting to look at) when it goes down."""

    name: str
    probe: Callable[[], None]  # returns when up; raises Unavailable(state) when not
    warning: Callable[[str], str]  # state -> the one warning line
    state: str = UNKNOWN


@dataclass
class DependencyWatch:
    """Probes every dependency now (`check`) and then every `every_seconds` in a daemon thread."""

    dependencies: list[Dependency]
    every_seconds: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check(self) -> list[str]:
        """Probe each dependency once; the warning lines of those that just went down."""
        warnings = []
        for dependency in self.dependencies:
            try:
                dependency.probe()
                state = UP
            except Unavailable as error:
                state = str(error)
            except Exception as error:  # a probe that failed unexpectedly says nothing about the dependency
                log.debug("Probe of %s failed", dependency.name, exc_info=error)
                state = "unreachable"
            if state != dependency.state:
                if state != UP:
                    warnings.append(dependency.warning(state))
                elif dependency.state != UNKNOWN:
                    log.warning("%s is back: %s", dependency.name, UP)
            dependency.state = state
        return warnings

    def start(self) -> DependencyWatch:
        def run() -> None:
            while not self._stop.wait(self.every_seconds):
                for line in self.check():
                    log.warning(line)

        self._thread = threading.Thread(target=run, name="dependency-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def state(self, name: str) -> str | None:
        """The dependency's last known state; None when it is not watched (not configured)."""
        return next((d.state for d in self.dependencies if d.name == name), None)

    def states(self) -> dict[str, str]:
        return {dependency.name: dependency.state for dependency in self.dependencies}


def database_up(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def health(engine: Engine, watch: DependencyWatch | None) -> tuple[int, dict[str, str]]:
    """`/healthz`'s status code and body: 503 only when the database is down, 200 "degraded" while a
    watched dependency is, else 200 "ok"."""
    states = watch.states() if watch is not None else {}
    if not database_up(engine):
        return 503, {"status": "unavailable", "database": "down", **states}
    degraded = any(state not in (UP, UNKNOWN) for state in states.values())
    return 200, {"status": "degraded" if degraded else "ok", "database": UP, **states}
