"""A merged pull request linked to a run shows under the run in `/tokenwise runs`, and only the run's owner can
remove a wrong link, in one click (a signed block action); it then stays removed through re-deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, select

from storage.github import LinkRules, PullRequestSeen, record_pull_request, settle_one
from storage.identities import link_identity
from storage.metrics import Scope, compute
from storage.models import OutcomeLink, Source, UsageRecord
from tests.support.slack_harness import ADA, GRACE, Harness, person, run
from tests.test_slack_app import buttons, texts

RULES = LinkRules(window_days=14)
REPO, BRANCH = "acme/api", "feat/refunds"


def _merged_pr_on_adas_run(harness: Harness) -> tuple[int, int]:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        person(session, GRACE)
        made = run(session, ada, "Refunds", cost="2.00", ago=timedelta(hours=3))
        made.branch = BRANCH
        session.add(made)
        link_identity(session, "github", "ada-gh", ada.id or 0)
        github = Source(name="github", kind="github")
        session.add(github)
        session.flush()
        merged = datetime.now(UTC) - timedelta(hours=1)
        record_pull_request(
            session,
            github.id or 0,
            PullRequestSeen(REPO, 7, f"https://github.com/{REPO}/pull/7", "ada-gh", "grace-gh", BRANCH, "a" * 40,
                            "b" * 40, merged - timedelta(hours=1), merged, merged, 40, 3),
        )  # fmt: skip
        settle_one(session, REPO, 7, RULES)
        session.commit()
        return ada.id or 0, made.id or 0


def verified_share(harness: Harness, person_id: int) -> object:
    now = datetime.now(UTC)
    with Session(harness.engine) as session:
        return compute(session, Scope.person(person_id), now - timedelta(days=1), now).verified_spend_share


def test_the_owner_sees_the_link_and_removes_it_for_good_and_nobody_else_can(harness: Harness) -> None:
    ada_id, run_id = _merged_pr_on_adas_run(harness)
    assert verified_share(harness, ada_id) == 1  # the merge, by a colleague, verifies the run's spend

    _, url = harness.command("runs")
    (answer,) = harness.respond_to(url)
    assert "Linked to merged" in texts(answer) and "acme/api#7" in texts(answer)
    (unlink,) = [b for b in buttons(answer) if b["action_id"] == "run_unlink"]

    _, url = harness.click("run_unlink", unlink["value"], user_id=GRACE)  # someone else's run: refused
    (refused,) = harness.respond_to(url)
    assert "this one is not yours" in texts(refused)
    assert verified_share(harness, ada_id) == 1

    _, url = harness.click("run_unlink", unlink["value"])
    (done,) = harness.respond_to(url)
    assert "no longer counts for your run" in texts(done) and "Linked to merged" not in texts(done)
    assert verified_share(harness, ada_id) == 0

    with Session(harness.engine) as session:  # GitHub re-delivers the merge: the link stays removed
        settle_one(session, REPO, 7, RULES)
        session.commit()
        (link,) = session.exec(select(OutcomeLink).where(OutcomeLink.run_id == run_id)).all()
    assert link.removed_at is not None
    assert verified_share(harness, ada_id) == 0


def test_a_run_its_owner_sent_after_the_merge_shows_the_link_and_says_it_verifies_nothing(harness: Harness) -> None:
    ada_id, _ = _merged_pr_on_adas_run(harness)
    with Session(harness.engine) as session:  # her own token's run on the branch, sent once the merge is known
        mine = Source(name="ada-personal", kind="api", person_id=ada_id)
        session.add(mine)
        session.flush()
        late = run(session, person(session, ADA), "Afterthought", cost="9.00", ago=timedelta(hours=4))
        late.branch, late.source_id = BRANCH, mine.id or 0
        for record in session.exec(select(UsageRecord).where(UsageRecord.run_id == late.id)):
            record.source_id = mine.id or 0
        session.commit()
        settle_one(session, REPO, 7, RULES)
        session.commit()
    assert verified_share(harness, ada_id) == Decimal("2.00") / Decimal("11.00")  # the 9.00 verifies nothing

    _, url = harness.command("runs")
    (answer,) = harness.respond_to(url)
    shown = texts(answer)
    assert shown.count("Linked to merged") == 2
    assert "you sent this run after the merge was known, so it is shown but verifies nothing" in shown


def test_source_status_lists_the_github_logins_linked_to_nobody(tmp_path: object) -> None:
    """A pull request whose author is no known person is kept and listed, with how to link the login."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from storage.db import make_engine, session_scope, upgrade

    url = f"sqlite:///{Path(str(tmp_path)) / 'status.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        github = Source(name="github", kind="github")
        session.add(github)
        session.flush()
        seen = PullRequestSeen(REPO, 9, f"https://github.com/{REPO}/pull/9", "stranger-gh")
        record_pull_request(session, github.id or 0, seen)
    engine.dispose()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "source", "status"],
        env=os.environ | {"DATABASE_URL": url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "GitHub logins linked to nobody: stranger-gh (1 pull request)" in result.stdout
