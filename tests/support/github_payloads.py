"""GitHub webhook deliveries as GitHub sends them: payloads built from GitHub's own examples (merged pull
requests and multi-commit pushes, which the examples lack, made from their shapes), each checked against the
JSON Schemas of octokit/webhooks before it is sent, and signed with a source's secret like GitHub signs them.

The examples and schemas are a copy of the team's shared one (`../shared/github-webhooks`, MIT, see its
README and LICENSE), kept in tests/fixtures/github-webhooks so that a fresh clone tests on its own;
TOKENWISE_GITHUB_WEBHOOKS points elsewhere.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WEBHOOKS = Path(os.environ.get("TOKENWISE_GITHUB_WEBHOOKS") or FIXTURES / "github-webhooks")
EXAMPLES = WEBHOOKS / "examples"
SCHEMAS = WEBHOOKS / "schemas"
REPO = "acme/payments"


# -- GitHub's examples and schemas -----------------------------------------------------------------------
@cache
def _example(event: str, name: str) -> str:
    return (EXAMPLES / event / f"{name}.json").read_text()


def example(event: str, name: str = "payload") -> dict[str, Any]:
    """A fresh copy of one of GitHub's example payloads, e.g. ("pull_request", "closed.payload")."""
    loaded: dict[str, Any] = json.loads(_example(event, name))
    return loaded


@cache
def registry() -> Registry:  # type: ignore[type-arg]
    """Every schema under its path relative to schemas/ and under its $id (draft 7), so every $ref resolves
    offline."""
    resources = []
    for path in sorted(SCHEMAS.rglob("*.schema.json")):
        contents = json.loads(path.read_text())
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        resources.append((path.relative_to(SCHEMAS).as_posix(), resource))
        if "$id" in contents:
            resources.append((contents["$id"], resource))
    return Registry().with_resources(resources)


# Events Tokenwise does not use have no schema of their own here; their payloads are checked part by part
# against the common schemas (every key one of these, the ones GitHub always sends present).
PARTS = {
    "deployment": {
        "action": {"type": "string", "enum": ["created"]},
        "deployment": {"$ref": "common/deployment.schema.json"},
        "repository": {"$ref": "common/repository.schema.json"},
        "sender": {"$ref": "common/user.schema.json"},
        "installation": {"$ref": "common/installation-lite.schema.json"},
        "organization": {"$ref": "common/organization.schema.json"},
    },
}


def schema_of(event: str, payload: dict[str, Any]) -> Any:
    if event in PARTS:
        return {
            "type": "object",
            "required": ["action", event, "repository", "sender"],
            "properties": PARTS[event],
            "additionalProperties": False,
        }
    path = f"{event}/event.schema.json" if event in ("push", "ping") else f"{event}/{payload['action']}.schema.json"
    return registry().contents(path)


def validate(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload, if it is valid against GitHub's schema for its event and action (else ValidationError)."""
    Draft7Validator(schema_of(event, payload), registry=registry()).validate(payload)
    return payload


# -- signed deliveries ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    event: str
    body: bytes
    delivery_id: str
    secret: str

    @property
    def signature(self) -> str:
        return "sha256=" + hmac.new(self.secret.encode(), self.body, hashlib.sha256).hexdigest()

    def headers(self, signature: str | None = None) -> dict[str, str]:
        """The headers GitHub sends; `signature` replaces the right one (a forgery)."""
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/3f2a1b9",
            "X-GitHub-Event": self.event,
            "X-GitHub-Delivery": self.delivery_id,
            "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": self.signature if signature is None else signature,
        }


def delivery(event: str, payload: dict[str, Any], secret: str, delivery_id: str | None = None) -> Delivery:
    """A delivery of a schema-valid payload, signed with `secret` as GitHub signs it."""
    validate(event, payload)
    return Delivery(event, json.dumps(payload).encode(), delivery_id or str(uuid.uuid4()), secret)


# -- payloads built from the examples' shapes ---------------------------------------------------------------
def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha(label: str) -> str:
    """A stable 40-hex commit SHA named by `label`."""
    return hashlib.sha1(label.encode()).hexdigest()


def _with_repo(payload: dict[str, Any], repo: str) -> dict[str, Any]:
    owner, name = repo.split("/")
    payload["repository"]["full_name"] = repo
    payload["repository"]["name"] = name
    payload["repository"]["owner"]["login"] = owner
    payload["repository"]["html_url"] = f"https://github.com/{repo}"
    return payload


def _user(template: dict[str, Any], login: str) -> dict[str, Any]:
    user = copy.deepcopy(template)
    user["login"] = login
    user["html_url"] = f"https://github.com/{login}"
    return user


@dataclass
class PullRequest:
    """What a test says about a pull request; `payload(action)` makes GitHub's payload for it."""

    number: int
    author: str
    head_branch: str
    head_sha: str
    opened_at: datetime
    repo: str = REPO
    title: str = "Retry failed card captures"
    additions: int = 40
    deletions: int = 3

    def payload(
        self,
        action: str,
        *,
        merged_at: datetime | None = None,
        merged_by: str | None = None,
        merge_sha: str | None = None,
        closed_at: datetime | None = None,
    ) -> dict[str, Any]:
        """`opened`, `synchronize` or `closed` (a merge when `merged_at` is given); valid for its schema."""
        source = "closed.payload" if action == "closed" else f"{action}.payload"
        payload = _with_repo(example("pull_request", source), self.repo)
        pr = payload["pull_request"]
        payload["number"] = pr["number"] = self.number
        pr["html_url"] = f"https://github.com/{self.repo}/pull/{self.number}"
        pr["url"] = f"https://api.github.com/repos/{self.repo}/pulls/{self.number}"
        pr["title"] = self.title
        pr["body"] = "Captures are retried three times before the order fails."
        pr["user"] = _user(pr["user"], self.author)
        payload["sender"] = _user(payload["sender"], merged_by or self.author)
        pr["head"]["ref"] = self.head_branch
        pr["head"]["label"] = f"{self.repo.split('/')[0]}:{self.head_branch}"
        pr["head"]["sha"] = self.head_sha
        pr["created_at"] = stamp(self.opened_at)
        pr["additions"], pr["deletions"] = self.additions, self.deletions
        pr["merge_commit_sha"] = merge_sha or sha(f"test-merge-{self.number}")
        if action == "closed":
            pr["state"] = "closed"
            pr["closed_at"] = stamp(closed_at or merged_at or self.opened_at)
            pr["merged"] = merged_at is not None
            pr["merged_at"] = stamp(merged_at) if merged_at else None
            pr["merged_by"] = _user(pr["user"], merged_by or self.author) if merged_at else None
        else:
            pr["state"] = "open"
            pr["closed_at"] = pr["merged_at"] = pr["merged_by"] = None
            pr["merged"] = False
        pr["updated_at"] = pr["closed_at"] or pr["created_at"]
        return payload


@dataclass
class Commit:
    """One commit of a push; `trailers` are the lines after the subject (Co-authored-by: ...)."""

    label: str
    email: str
    username: str | None
    at: datetime
    subject: str = "Retry captures on timeouts"
    trailers: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return sha(self.label)

    @property
    def message(self) -> str:
        return "\n\n".join([self.subject, "\n".join(self.trailers)]) if self.trailers else self.subject


def push(branch: str, commits: list[Commit], repo: str = REPO) -> dict[str, Any]:
    """A push of `commits` (oldest first) to `branch`, shaped as GitHub's push example with a new branch."""
    payload = _with_repo(example("push", "with-new-branch.payload"), repo)
    template = payload["commits"][0]
    shaped = []
    for commit in commits:
        one = copy.deepcopy(template)
        one["id"] = one["tree_id"] = commit.sha
        one["message"] = commit.message
        one["timestamp"] = stamp(commit.at)
        one["url"] = f"https://github.com/{repo}/commit/{commit.sha}"
        one["author"] = {"name": commit.username or "Someone", "email": commit.email}
        if commit.username:
            one["author"]["username"] = commit.username
        one["committer"] = dict(one["author"])
        shaped.append(one)
    payload["ref"] = f"refs/heads/{branch}"
    payload["created"] = False
    payload["before"] = sha(f"before-{branch}")
    payload["after"] = shaped[-1]["id"] if shaped else payload["before"]
    payload["commits"] = shaped
    payload["head_commit"] = copy.deepcopy(shaped[-1]) if shaped else None
    payload["compare"] = f"https://github.com/{repo}/compare/{payload['before'][:12]}...{payload['after'][:12]}"
    return payload


def workflow_run(
    head_sha: str,
    head_branch: str,
    completed_at: datetime,
    *,
    run_id: int = 289782451,
    pr_numbers: tuple[int, ...] = (),
    conclusion: str = "success",
    repo: str = REPO,
) -> dict[str, Any]:
    """A workflow run that completed, from GitHub's example with pull requests."""
    payload = _with_repo(example("workflow_run", "completed.with-pull-requests.payload"), repo)
    run = payload["workflow_run"]
    run["id"], run["head_sha"], run["head_branch"], run["conclusion"] = run_id, head_sha, head_branch, conclusion
    run["updated_at"] = stamp(completed_at)
    template = run["pull_requests"][0]
    run["pull_requests"] = []
    for number in pr_numbers:
        pr = copy.deepcopy(template)
        pr["number"], pr["head"]["ref"], pr["head"]["sha"] = number, head_branch, head_sha
        run["pull_requests"].append(pr)
    return payload


def workflow_requested(head_sha: str, head_branch: str, repo: str = REPO) -> dict[str, Any]:
    payload = _with_repo(example("workflow_run", "requested.payload"), repo)
    payload["workflow_run"]["head_sha"], payload["workflow_run"]["head_branch"] = head_sha, head_branch
    return payload


def check_suite(
    head_sha: str,
    head_branch: str,
    completed_at: datetime,
    *,
    suite_id: int = 118578147,
    pr_numbers: tuple[int, ...] = (),
    conclusion: str = "success",
    repo: str = REPO,
) -> dict[str, Any]:
    payload = _with_repo(example("check_suite", "completed.payload"), repo)
    suite = payload["check_suite"]
    suite["id"], suite["head_sha"], suite["head_branch"], suite["conclusion"] = (
        suite_id,
        head_sha,
        head_branch,
        conclusion,
    )
    suite["updated_at"] = stamp(completed_at)
    template = suite["pull_requests"][0]
    suite["pull_requests"] = []
    for number in pr_numbers:
        pr = copy.deepcopy(template)
        pr["number"], pr["head"]["ref"], pr["head"]["sha"] = number, head_branch, head_sha
        suite["pull_requests"].append(pr)
    return payload


def deployment_status(
    deploy_sha: str,
    at: datetime,
    *,
    environment: str = "production",
    state: str = "success",
    deployment_id: int = 145988746,
    status_id: int = 209916254,
    repo: str = REPO,
) -> dict[str, Any]:
    payload = _with_repo(example("deployment_status", "payload"), repo)
    deployment, status = payload["deployment"], payload["deployment_status"]
    deployment["id"], deployment["sha"], deployment["environment"] = deployment_id, deploy_sha, environment
    status["id"], status["state"], status["environment"] = status_id, state, environment
    status["created_at"] = status["updated_at"] = stamp(at)
    return payload


def deployment(deploy_sha: str, environment: str = "production", repo: str = REPO) -> dict[str, Any]:
    """A `deployment` event (created), which Tokenwise does not use: the deployment of GitHub's example."""
    shaped = _with_repo(example("deployment_status", "payload"), repo)
    payload = {key: shaped[key] for key in ("deployment", "repository", "sender")}
    payload["action"] = "created"
    payload["deployment"]["sha"], payload["deployment"]["environment"] = deploy_sha, environment
    return payload


def ping() -> dict[str, Any]:
    return example("ping", "payload")
