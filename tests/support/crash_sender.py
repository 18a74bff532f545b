"""`python -m tests.support.crash_sender STAGE NOW`: what `tokenwise digest send-due --now NOW` does, but the
process dies hard (no cleanup, no commit) at STAGE ("claim" or "post"), through the checkpoint hook that
`send_due` takes; to prove that a restart posts each digest exactly once."""

from __future__ import annotations

import os
import sys
from datetime import datetime

from bot.app import build_services
from bot.config import Settings
from bot.jobs import digest_slack_for
from handlers.slack.digest_posts import send_due, summary_line

DIED = 75


def main(stage: str, now: str) -> None:
    def die_at(reached: str) -> None:
        if reached == stage:
            os._exit(DIED)

    services = build_services(Settings())  # type: ignore[call-arg]  # read from the environment
    for result in send_due(
        services.engine, services.settings, digest_slack_for(services), datetime.fromisoformat(now), checkpoint=die_at
    ):
        print(summary_line(result))


if __name__ == "__main__":
    main(*sys.argv[1:3])
