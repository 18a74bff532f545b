"""Reports: metrics for a scope and period, with the privacy rule applied, as plain values.

The CLI, Slack and the digest all render these; none of them computes a number of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlmodel import Session

from bot.periods import Period, PeriodError, complete_weeks, require_whole_weeks, zone
from storage.identities import UnattributedTotals, unattributed_totals
from storage.metrics import Contribution, Metrics, Scope, Slice, breakdown, compute_windows
from storage.models import Team
from storage.people import nested_memberships, team_zones
from storage.runs import count_unreviewed
from storage.vendors import DecisionTotals, decision_totals

METRIC_KEYS = (
    "runs",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "cost_unknown_records",
    "reviewed_share",
    "useful_runs",
    "useful_rate",
    "outcome_value",
    "merged_prs",
    "cost_per_merged_pr",
    "cost_per_useful_run",
    "cost_per_outcome",
    "verified_spend_share",
)
# Figures made of the run owners' own verdicts: a person's private feedback loop, never a group's figure,
# since anyone could raise them with their own clicks (docs/metrics.md "What a person could do alone").
SELF_REPORTED = ("reviewed_share", "useful_runs", "useful_rate", "cost_per_useful_run")
MONEY = Decimal("0.000001")
SHARE = Decimal("0.0001")


@dataclass(frozen=True)
class Disclosure:
    """The disclosure rules a group's figures must pass (docs/metrics.md, "Disclosure control")."""

    min_group_size: int = 5
    active_min_tokens: int = 1000
    active_min_cost_usd: Decimal = Decimal("0.01")
    dominance_share: Decimal = Decimal("0.85")
    timezone: str = "UTC"  # the organisation's: a team without its own zone cuts its weeks in it
    min_cost_coverage: Decimal = Decimal("0.5")  # not a privacy rule: below it, shares of spend mean little

    @classmethod
    def of(cls, settings: Any) -> Disclosure:
        return cls(
            settings.min_group_size,
            settings.active_min_tokens,
            settings.active_min_cost_usd,
            settings.dominance_share,
            settings.timezone,
            settings.min_cost_coverage,
        )

    def active(self, part: Contribution) -> bool:
        """Real activity: tokens or known cost above the floor, never a record's mere existence."""
        return part.total_tokens >= self.active_min_tokens or part.cost_usd >= self.active_min_cost_usd


Rules = Disclosure | int  # an int is a minimum group size with the other rules at their defaults


def rules_of(rules: Rules) -> Disclosure:
    return rules if isinstance(rules, Disclosure) else Disclosure(min_group_size=rules)


# The shown figures each of a group's sums reveals. Token figures go together (the total and three parts
# give the fourth), and so do the money figures (cost per useful run times useful runs gives the cost).
TOKEN_FIGURES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens")
COST_FIGURES = (
    "cost_usd",
    "cost_per_useful_run",
    "cost_per_outcome",
    "cost_per_merged_pr",
    "verified_spend_share",
    "verified_cost_usd",
)
DOMINATED = {
    "tokens": TOKEN_FIGURES,
    "cost_usd": COST_FIGURES,
    "verified_cost_usd": ("verified_spend_share", "verified_cost_usd"),
}


@dataclass
class Figures:
    """Metrics for one window, or the reason they are withheld; `hidden` names single figures withheld
    (dominance rule) with their reason, while the rest of the window is shown."""

    period: Period
    metrics: Metrics | None
    withheld: str | None = None
    hidden: dict[str, str] = field(default_factory=dict)
    withheld_weeks: list[date] = field(default_factory=list)  # weeks of a range left out of its sums

    @property
    def shown(self) -> bool:
        return self.metrics is not None

    def value(self, key: str) -> Any:
        """A metric as JSON shows it: None when withheld, whole or alone."""
        if self.metrics is None or key in self.hidden:
            return None
        return metric_values(self.metrics)[key]


@dataclass
class Report:
    scope: Scope
    period: Period
    totals: Figures
    previous: Figures
    periods: list[Figures] = field(default_factory=list)
    unattributed: UnattributedTotals | None = None  # the organisation's: usage naming no known person
    by: str | None = None  # the breakdown: day, week (`periods`), project or branch (`slices`)
    slices: list[Slice] = field(default_factory=list)


def withheld_reason(active: int, min_group_size: int) -> str:
    return (
        f"Withheld: fewer than {min_group_size} people were active in this group and period, "
        "so its figures could point at individuals."
    )


def nested_reason(min_group_size: int) -> str:
    return (
        f"Withheld: another team lies inside this one but for fewer than {min_group_size} active people, "
        "so the difference between the two could point at individuals."
    )


def zone_reason() -> str:
    return (
        "Withheld: a team inside this group cuts its weeks in another time zone, so the two could be "
        "compared over a slice of days that may hold one person."
    )


def self_reported_reason() -> str:
    return (
        "Not shown for a group: made of the run owners' own verdicts, which anyone could raise with their own "
        "clicks (each person sees theirs in /tokenwise me)."
    )


def dominance_reason(share: Decimal) -> str:
    return (
        f"Withheld: one person made more than {float(share) * 100:.0f}% of this figure in this period, "
        "so it would show their own number."
    )


@dataclass(frozen=True)
class Neighbours:
    """What a group is compared with: the teams that could nest in it and their time zones."""

    members: dict[int, dict[int, datetime | None]] = field(default_factory=dict)  # team -> person -> since
    zones: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, session: Session, scope: Scope, default_tz: str) -> Neighbours:
        if not scope.is_group:
            return cls()
        members = nested_memberships(session, scope.id)
        zones = {team: tz or default_tz for team, tz in team_zones(session, members).items()}
        return cls(members, zones)


def figures_for(session: Session, scope: Scope, periods: Sequence[Period], rules: Rules) -> list[Figures]:
    """Metrics for each of several windows that do not overlap, read together (one statement per table),
    with the disclosure rules applied to each window on its own."""
    rules = rules_of(rules)
    found = compute_windows(session, scope, [(period.start, period.end) for period in periods])
    neighbours = Neighbours.of(session, scope, rules.timezone)
    return [
        _disclosure(scope, period, metrics, rules, neighbours) for period, metrics in zip(periods, found, strict=True)
    ]


# Figures that divide by cost or by a part of it: over a sliver of priced usage they would mislead.
COST_BASED = ("verified_spend_share", "cost_per_merged_pr", "cost_per_useful_run", "cost_per_outcome")
NOT_ENOUGH_PRICED = "Not enough priced usage"


def coverage_note(metrics: Metrics) -> str | None:
    """ "cost known for 2 of 17 records" when some cost is unknown; None when all of it is known."""
    if not metrics.cost_unknown_records:
        return None
    return f"cost known for {metrics.cost_known_records:,} of {metrics.usage_records:,} records"


def coverage_hidden(metrics: Metrics, rules: Disclosure) -> dict[str, str]:
    """The cost-based figures, when the records of known cost are fewer than the rule's share of all."""
    coverage = metrics.cost_coverage
    if coverage is None or coverage >= rules.min_cost_coverage:
        return {}
    reason = (
        f"{NOT_ENOUGH_PRICED}: {coverage_note(metrics)}; shares of spend and costs per outcome need at least "
        f"{rules.min_cost_coverage:.0%} (TOKENWISE_MIN_COST_COVERAGE)."
    )
    return dict.fromkeys(COST_BASED, reason)


def is_coverage_reason(reason: str) -> bool:
    return reason.startswith(NOT_ENOUGH_PRICED)


def shown_or_why(item: Figures, key: str, show: Callable[[Any], str]) -> str:
    """A figure as `show` writes it, or why it is not shown: "withheld" (the disclosure rules) or "not
    enough priced usage" (the coverage rule)."""
    reason = item.hidden.get(key)
    if reason is None:
        return str(show(item.value(key)))
    return "not enough priced usage" if is_coverage_reason(reason) else "withheld"


def _disclosure(scope: Scope, period: Period, metrics: Metrics, rules: Disclosure, around: Neighbours) -> Figures:
    if not scope.is_group:
        return Figures(period, metrics, hidden=coverage_hidden(metrics, rules))
    active = {person for person, part in metrics.contributions.items() if rules.active(part)}
    metrics.active_people = len(active)
    if len(active) < rules.min_group_size:
        return Figures(period, None, withheld_reason(len(active), rules.min_group_size))
    hidden = _dominated(metrics, rules)
    hidden.update(dict.fromkeys(SELF_REPORTED, self_reported_reason()))
    for inside in _subtractable(scope, active, period, rules, around):
        if inside is None:
            return Figures(period, None, zone_reason())
        leftover = active - inside
        if 0 < len(leftover) < rules.min_group_size:
            return Figures(period, None, nested_reason(rules.min_group_size))
        rest = [part for person, part in metrics.contributions.items() if person not in inside]
        for key, reason in _dominated_parts(rest, rules).items():
            hidden.setdefault(key, reason)
    for key, reason in coverage_hidden(metrics, rules).items():
        hidden.setdefault(key, reason)
    return Figures(period, metrics, hidden=hidden)


def _subtractable(
    scope: Scope, active: set[int], period: Period, rules: Disclosure, around: Neighbours
) -> Iterator[set[int] | None]:
    """The sets of people a reader could subtract from the group with other figures shown for the same
    window: each team inside it that is shown, and unions of such teams that do not overlap (all of them
    when there are few, else the largest first). None: a team inside it cuts its weeks in another time
    zone, so the two windows differ by a slice and cannot be compared safely."""

    def whole_window(members: dict[int, datetime | None]) -> set[int]:
        return {person for person, since in members.items() if since is None or since <= period.start}

    own = None if scope.kind == "org" else whole_window(around.members.get(scope.id or 0, {}))
    teams: list[set[int]] = []
    for team_id, members in around.members.items():
        theirs = whole_window(members)
        if team_id == scope.id or (own is not None and not theirs <= own):
            continue  # the group itself, or a team that is not inside it
        if len(theirs & active) < rules.min_group_size:
            continue  # withheld itself: nothing to subtract
        if around.zones.get(team_id, rules.timezone) != period.tz:
            yield None
            return
        teams.append(theirs)
    teams.sort(key=len, reverse=True)
    yield from teams
    if len(teams) <= MAX_TEAMS_COMBINED:
        yield from _disjoint_unions(teams)
    else:
        chosen: set[int] = set()
        for team in teams:
            if chosen.isdisjoint(team):
                chosen |= team
        yield chosen
    if len(teams) > 1:
        yield set().union(*teams)


MAX_TEAMS_COMBINED = 10  # up to this many teams inside a group, every union of disjoint ones is checked


def _disjoint_unions(teams: list[set[int]]) -> Iterator[set[int]]:
    """Every union of two or more pairwise disjoint teams."""

    def grow(start: int, union: set[int], count: int) -> Iterator[set[int]]:
        for index in range(start, len(teams)):
            if union.isdisjoint(teams[index]):
                bigger = union | teams[index]
                if count >= 1:
                    yield bigger
                yield from grow(index + 1, bigger, count + 1)

    yield from grow(0, set(), 0)


def _dominated(metrics: Metrics, rules: Disclosure) -> dict[str, str]:
    """Figures of which one person made more than the dominance share: withheld alone."""
    return _dominated_parts(list(metrics.contributions.values()), rules)


def _dominated_parts(parts: Sequence[Contribution], rules: Disclosure) -> dict[str, str]:
    sums: dict[str, list[Decimal]] = {
        "tokens": [Decimal(p.total_tokens) for p in parts],
        "input_tokens": [Decimal(p.input_tokens) for p in parts],
        "output_tokens": [Decimal(p.output_tokens) for p in parts],
        "cache_read_tokens": [Decimal(p.cache_read_tokens) for p in parts],
        "cache_write_tokens": [Decimal(p.cache_write_tokens) for p in parts],
        "cost_usd": [p.cost_usd for p in parts],
        "verified_cost_usd": [p.verified_cost_usd for p in parts],
    }
    hidden: dict[str, str] = {}
    reason = dominance_reason(rules.dominance_share)
    for name, values in sums.items():
        total = sum(values, Decimal(0))
        if total > 0 and max(values) > rules.dominance_share * total:
            for key in DOMINATED.get(name, TOKEN_FIGURES):
                hidden[key] = reason
    return hidden


BY_RUN = ("project", "branch")  # breakdowns by what a run says about itself, for a person only


def build_report(session: Session, scope: Scope, period: Period, rules: Rules, by: str | None = None) -> Report:
    """A scope's figures for a period against the one before. A group's periods are whole weeks in its
    time zone, each judged by the rules on its own; a range's totals add up the weeks that pass."""
    if not scope.is_group:
        previous, totals = figures_for(session, scope, [period.previous(), period], rules)
        if by in BY_RUN:
            slices = breakdown(session, scope.id or 0, period.start, period.end, by)  # type: ignore[arg-type]
            return Report(scope, period, totals, previous, by=by, slices=slices)
        periods = figures_for(session, scope, list(period.split(by)), rules) if by else []
        return Report(scope=scope, period=period, totals=totals, previous=previous, periods=periods, by=by)
    if by in BY_RUN:
        raise PeriodError(f"Figures per {by} are a person's own (`--person`): a team's could single someone out.")
    require_whole_weeks(period)
    if by not in (None, "week"):
        raise PeriodError("Team and organisation figures come in whole weeks; use --by week.")
    earlier = period.previous()
    weeks = figures_for(session, scope, [*earlier.split("week"), *period.split("week")], rules)
    split = len(weeks) // 2
    previous = _weeks_shown(earlier, weeks[:split], rules_of(rules))
    totals = _weeks_shown(period, weeks[split:], rules_of(rules))
    loose = unattributed_totals(session, period.start, period.end) if scope.kind == "org" else None
    return Report(scope, period, totals, previous, weeks[split:] if by else [], loose, by=by)


def _weeks_shown(period: Period, weeks: Sequence[Figures], rules: Disclosure) -> Figures:
    """A range of weeks: the sums of the weeks that pass the rules, the others left out and named.

    Safe because every figure shown for any range is then a sum of weeks that each pass on their own, and
    so is the difference of any two: a union of windows passing the rules passes them too (its active
    people include each week's; one person's share of a sum is at most their largest weekly share)."""
    if len(weeks) == 1:
        return replace(weeks[0], period=period)
    shown = [week for week in weeks if week.metrics is not None]
    left_out = [week.period.since for week in weeks if week.metrics is None]
    if not shown:
        return Figures(period, None, weeks[0].withheld, withheld_weeks=left_out)
    total = Metrics()
    for week in shown:
        _add(total, week.metrics)  # type: ignore[arg-type]
    total.active_people = sum(1 for part in total.contributions.values() if rules.active(part))
    hidden = _dominated(total, rules)
    for week in shown:  # a figure hidden in one week stays hidden in every sum it is part of
        for key, reason in week.hidden.items():
            if not is_coverage_reason(reason):  # coverage is judged on the sums themselves, below
                hidden.setdefault(key, reason)
    for key, reason in coverage_hidden(total, rules).items():
        hidden.setdefault(key, reason)
    return Figures(period, total, hidden=hidden, withheld_weeks=left_out)


def _add(total: Metrics, week: Metrics) -> None:
    for name in (
        "runs", "reviewed_runs", "useful_runs", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "cost_usd", "cost_unknown_records", "usage_records", "cost_known_tokens",
        "priced_cost_usd", "billed_cost_usd", "verified_cost_usd", "outcome_value", "token_unknown_records",
    ):  # fmt: skip
        setattr(total, name, getattr(total, name) + getattr(week, name))
    for kind, count in week.outcomes_by_kind.items():
        total.outcomes_by_kind[kind] = total.outcomes_by_kind.get(kind, 0) + count
    for kind, count in week.self_reported_by_kind.items():
        total.self_reported_by_kind[kind] = total.self_reported_by_kind.get(kind, 0) + count
    for person, part in week.contributions.items():
        before = total.contributions.get(person, Contribution())
        total.contributions[person] = Contribution(
            *(getattr(before, f.name) + getattr(part, f.name) for f in fields(Contribution))
        )


@dataclass
class PersonalView:
    """A person's own numbers for a period, as `/tokenwise me` and the App Home show them."""

    report: Report
    unreviewed: int  # their runs in the period that await their verdict
    projects: list[Slice] = field(default_factory=list)  # their usage per project, costliest first
    # The agent edits they accepted and rejected, as the tool counts them (Claude Code Analytics): a
    # self-reported quality signal, never a headline; None when no source reports any.
    edits: DecisionTotals | None = None


def personal_view(
    session: Session,
    person_id: int,
    name: str,
    period: Period,
    projects: bool = False,
    rules: Disclosure | None = None,
) -> PersonalView:
    """One person's report and how many of their runs await review: what both personal views show; with
    `projects`, their usage per project too (`/tokenwise me`)."""
    report = build_report(session, Scope.person(person_id, name), period, rules or Disclosure())
    unreviewed = count_unreviewed(session, person_id, period.start, period.end)
    slices = breakdown(session, person_id, period.start, period.end, "project") if projects else []
    last_moment = period.end - timedelta(microseconds=1)
    edits = decision_totals(session, person_id, period.start.astimezone(UTC).date(), last_moment.astimezone(UTC).date())
    return PersonalView(report, unreviewed, slices, edits if edits.accepted or edits.rejected else None)


def group_zone(session: Session, scope: Scope, default_tz: str) -> str:
    """The time zone a group's weeks are cut in: the team's own (`tokenwise team set-timezone`), else the
    organisation's (TOKENWISE_TIMEZONE). The same for every caller, so no two answers differ by a slice."""
    if scope.kind == "team" and scope.id is not None:
        team = session.get(Team, scope.id)
        if team is not None and team.timezone:
            return team.timezone
    return default_tz


def group_weeks(session: Session, scope: Scope, default_tz: str, count: int = 1, now: datetime | None = None) -> Period:
    """The last `count` whole weeks that have ended, in the group's time zone: its default window."""
    tz = group_zone(session, scope, default_tz)
    today = (now or datetime.now(UTC)).astimezone(zone(tz)).date()
    return complete_weeks(today, count, tz)


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(MONEY, rounding=ROUND_HALF_EVEN))


def _share(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(SHARE, rounding=ROUND_HALF_EVEN))


def metric_values(metrics: Metrics | None, hidden: Collection[str] = ()) -> dict[str, Any]:
    """The documented metric keys with JSON-ready values; all None when withheld, and each hidden one."""
    if metrics is None:
        return dict.fromkeys(METRIC_KEYS)
    values = {
        "runs": metrics.runs,
        "input_tokens": metrics.input_tokens,
        "output_tokens": metrics.output_tokens,
        "cache_read_tokens": metrics.cache_read_tokens,
        "cache_write_tokens": metrics.cache_write_tokens,
        "cost_usd": _money(metrics.cost_usd),
        "cost_unknown_records": metrics.cost_unknown_records,
        "reviewed_share": _share(metrics.reviewed_share),
        "useful_runs": float(metrics.useful_runs),
        "useful_rate": _share(metrics.useful_rate),
        "outcome_value": float(metrics.outcome_value),
        "merged_prs": metrics.merged_prs,
        "cost_per_merged_pr": _money(metrics.cost_per_merged_pr),
        "cost_per_useful_run": _money(metrics.cost_per_useful_run),
        "cost_per_outcome": _money(metrics.cost_per_outcome),
        "verified_spend_share": _share(metrics.verified_spend_share),
    }
    return {key: None if key in hidden else value for key, value in values.items()}


def cost_coverage_json(metrics: Metrics | None, hidden: Collection[str] = ()) -> dict[str, Any] | None:
    """Records of known cost / records, and the same by tokens; None when withheld (the counts would
    reveal what the rules hold back), and the token share None when token figures are withheld (one
    person's unpriced tokens could be read off it)."""
    if metrics is None:
        return None
    tokens_hidden = any(key in hidden for key in (*TOKEN_FIGURES, "cost_usd"))
    return {
        "records": _share(metrics.cost_coverage),
        "tokens": None if tokens_hidden else _share(metrics.cost_coverage_tokens),
        "known_records": metrics.cost_known_records,
        "total_records": metrics.usage_records,
    }


def figures_json(item: Figures, personal: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"start": item.period.since.isoformat(), "end": item.period.until.isoformat()}
    body.update(metric_values(item.metrics, item.hidden))
    if personal:  # a group's split would be a sum of its own, needing its own disclosure check
        body["cost_source"] = cost_sources(item.metrics)
    body["outcomes_by_kind"] = dict(item.metrics.outcomes_by_kind) if item.metrics else None
    body["self_reported_by_kind"] = dict(item.metrics.self_reported_by_kind) if item.metrics else None
    body["active_people"] = item.metrics.active_people if item.metrics else None
    body["cost_coverage"] = cost_coverage_json(item.metrics, item.hidden)
    body["withheld"] = item.withheld
    body["withheld_figures"] = {key: reason for key, reason in item.hidden.items() if key in METRIC_KEYS}
    body["withheld_weeks"] = [week.isoformat() for week in item.withheld_weeks]
    return body


def cost_sources(metrics: Metrics | None) -> dict[str, float | None] | None:
    """Known cost split by who put the figure on it: the source itself, Tokenwise from token counts, or the
    vendor's bill for the person."""
    if metrics is None:
        return None
    return {
        "reported_usd": _money(metrics.cost_usd - metrics.priced_cost_usd - metrics.billed_cost_usd),
        "priced_usd": _money(metrics.priced_cost_usd),
        "billed_usd": _money(metrics.billed_cost_usd),
    }


def spend_label(metrics: Metrics) -> str:
    """What a group's known spend is: "estimated" unless every dollar of it is the vendor's own bill."""
    if metrics.cost_usd and metrics.billed_cost_usd >= metrics.cost_usd:
        return "billed"
    return "estimated"


def slice_json(item: Slice) -> dict[str, Any]:
    return {
        "key": item.key,
        "runs": item.runs,
        "input_tokens": item.input_tokens,
        "output_tokens": item.output_tokens,
        "cache_read_tokens": item.cache_read_tokens,
        "cache_write_tokens": item.cache_write_tokens,
        "cost_usd": _money(item.cost_usd),
        "cost_unknown_records": item.cost_unknown_records,
    }


def change(current: Figures, previous: Figures) -> dict[str, float | None]:
    """Relative change of each metric against the previous window (None where undefined)."""
    now, before = metric_values(current.metrics, current.hidden), metric_values(previous.metrics, previous.hidden)
    result: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        a, b = now[key], before[key]
        result[key] = None if a is None or b is None or b == 0 else round((a - b) / abs(b), 4)
    return result


def report_json(report: Report) -> dict[str, Any]:
    personal = not report.scope.is_group
    periods = [{"key": item.period.since.isoformat(), **figures_json(item, personal)} for item in report.periods]
    return {
        "scope": report.scope.label(),
        "since": report.period.since.isoformat(),
        "until": report.period.until.isoformat(),
        "tz": report.period.tz,
        "totals": figures_json(report.totals, personal),
        "previous": figures_json(report.previous, personal),
        "change": change(report.totals, report.previous),
        "periods": periods,
        "by": report.by,
        "rows": [slice_json(item) for item in report.slices] if report.by in BY_RUN else periods,
        "unattributed": None
        if report.unattributed is None
        else {
            "records": report.unattributed.records,
            "tokens": report.unattributed.tokens,
            "cost_usd": _money(report.unattributed.cost_usd),
        },
    }
