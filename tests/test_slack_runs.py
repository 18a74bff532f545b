"""storage/runs.py: the review queue and annotations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from storage.models import Annotation
from storage.runs import (
    AnnotationError,
    NotYourRun,
    RunNotFound,
    annotate_run,
    clean_link,
    count_unreviewed,
    own_run,
    shared_wins,
    unreviewed_runs,
)
from tests.support.slack_harness import ADA, GRACE, person, run


def test_annotating_someone_elses_run_is_refused(session: Session) -> None:
    ada, grace = person(session, ADA), person(session, GRACE)
    graces = run(session, grace, "Grace's")
    with pytest.raises(NotYourRun, match="only review your own runs"):
        annotate_run(session, graces.id or 0, ada.id or 0, "useful")
    assert session.exec(select(Annotation)).all() == []


def test_a_missing_run_is_reported_as_such(session: Session) -> None:
    ada = person(session, ADA)
    with pytest.raises(RunNotFound):
        annotate_run(session, 12345, ada.id or 0, "useful")


def test_annotations_are_stored_and_editable_as_one_row(session: Session) -> None:
    ada = person(session, ADA)
    mine = run(session, ada, "Mine")
    first = annotate_run(session, mine.id or 0, ada.id or 0, "useful", "note", "https://e.com/1", True)
    later = datetime.now(UTC) + timedelta(minutes=1)
    annotate_run(session, mine.id or 0, ada.id or 0, "not_useful", keep_details=True, now=later)
    session.commit()
    (stored,) = session.exec(select(Annotation)).all()
    assert stored.id == first.id
    assert (stored.verdict, stored.note, stored.link, stored.share_as_win) == (
        "not_useful",
        "note",
        "https://e.com/1",
        True,
    )
    assert stored.updated_at > stored.created_at
    annotate_run(session, mine.id or 0, ada.id or 0, "partly", note=None, link=None, share_as_win=False)
    session.commit()
    (stored,) = session.exec(select(Annotation)).all()
    assert (stored.verdict, stored.note, stored.link, stored.share_as_win) == ("partly", None, None, False)


def test_bad_verdicts_links_and_long_notes_are_refused_with_a_sentence(session: Session) -> None:
    ada = person(session, ADA)
    mine = run(session, ada, "Mine")
    with pytest.raises(AnnotationError, match="Unknown verdict"):
        annotate_run(session, mine.id or 0, ada.id or 0, "great")
    with pytest.raises(AnnotationError, match="https://"):
        annotate_run(session, mine.id or 0, ada.id or 0, "useful", link="ftp://x")
    with pytest.raises(AnnotationError, match="2000"):
        annotate_run(session, mine.id or 0, ada.id or 0, "useful", note="x" * 2001)
    assert session.exec(select(Annotation)).all() == []


def test_the_queue_holds_only_the_persons_unreviewed_runs_newest_first(session: Session) -> None:
    ada, grace = person(session, ADA), person(session, GRACE)
    old = run(session, ada, "Old", ago=timedelta(days=3))
    new = run(session, ada, "New", ago=timedelta(minutes=1))
    reviewed = run(session, ada, "Reviewed")
    run(session, grace, "Grace's")
    annotate_run(session, reviewed.id or 0, ada.id or 0, "useful")
    assert [r.id for r in unreviewed_runs(session, ada.id or 0)] == [new.id, old.id]
    assert count_unreviewed(session, ada.id or 0) == 2
    since = datetime.now(UTC) - timedelta(days=1)
    assert count_unreviewed(session, ada.id or 0, since, datetime.now(UTC)) == 1
    view = own_run(session, new.id or 0, ada.id or 0)
    assert (view.tokens, str(view.cost_usd), view.outcomes) == (1000, "0.1", 0)


def test_a_colleagues_annotation_does_not_review_the_owners_run(session: Session) -> None:
    ada, grace = person(session, ADA), person(session, GRACE)
    mine = run(session, ada, "Mine")
    session.add(Annotation(run_id=mine.id or 0, person_id=grace.id or 0, verdict="useful"))
    session.flush()
    assert [r.id for r in unreviewed_runs(session, ada.id or 0)] == [mine.id]


def test_shared_wins_are_own_runs_marked_as_wins(session: Session) -> None:
    ada = person(session, ADA)
    won, plain = run(session, ada, "Won"), run(session, ada, "Plain")
    annotate_run(session, won.id or 0, ada.id or 0, "useful", "Shipped", share_as_win=True)
    annotate_run(session, plain.id or 0, ada.id or 0, "useful")
    assert [(w.label, w.note) for w in shared_wins(session, ada.id or 0)] == [("Won", "Shipped")]


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=300))
def test_any_link_text_is_accepted_as_http_or_refused_with_a_sentence(text: str) -> None:
    try:
        cleaned = clean_link(text)
    except AnnotationError as error:
        assert str(error).endswith(".")
        return
    assert cleaned is None or cleaned.startswith(("http://", "https://"))
