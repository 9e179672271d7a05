"""The GitHub Issues connector: per-repo polling with look-back and ETags, normalization, writes.

Rules worth knowing (see also the tests):
- Identity: an item's id and key are both `owner/repo#number` (the repo spelled as configured).
  The immutable numeric issue id is kept in `fields["issue_id"]`; when a fetch answers with another
  number (the issue was transferred: GitHub redirects) or another numeric id than this connector
  last saw for that key (deleted and recreated), the item is gone: `NotFound`. The numeric-id check
  can only compare with what this process has read.
- Polling: per repo, `GET /repos/{o}/{r}/issues?state=all&sort=updated&direction=asc&since=...`
  following `Link: rel="next"`. The cursor is a JSON object `{"owner/repo": "<newest updated_at>"}`
  (a bare timestamp is accepted as the cursor of every repo); each page's cursor holds every repo's
  value, never moves backwards, and advances page by page. `since` is the cursor minus the look-back
  (second-granular, inclusiveness unconfirmed), so recent issues come again; the engine drops those
  it already processed by id + version (`dedupe_versions`), and one poll never yields the same
  (id, updated_at) twice. Pull requests (items with a `pull_request` key) are skipped.
- Page numbers over a list sorted by `updated` shift when an issue already read is updated during
  the scan (it moves to the end, and the issue after each later page boundary is skipped). When an
  issue comes back in the same scan with a newer `updated_at`, the repo is scanned once more from
  the newest `updated_at` of the page where it was first seen (minus the look-back), at most
  `MAX_SCAN_PASSES` times in all.
- Conditional requests: a repo's first page is remembered with its `ETag` (and the `since` it was
  for) when that page was the whole answer (fewer than `per_page` issues and no next link: only
  then does any change alter that one page); the next poll with the same `since` sends
  `If-None-Match`, and a 304 (free of primary rate limit) replays the remembered page: the cursor
  stays as is and the engine drops the issues by version. Yielding nothing instead would hide them
  from a second flow polling the same tracker from the same cursor, or from a pass after a dry run.
- Version: `updated_at` plus a short digest of the normalized fields and the comment count.
  `updated_at` is second-granular, so two edits in the same second would otherwise carry one
  version and the second would be dropped as already seen.
- Marker: an issue created by ticketbridge carries a hidden HTML comment at the end of its body,
  `<!-- ticketbridge: zendesk:123 -->`. It is stripped from the `body` field and written back by
  every body `Update`, so it survives edits made by the bridge.
- Status is the plain `state` field (`open|closed`, with `state_reason`); there are no workflow
  transitions, so a `Transition` is refused. GitHub has no internal comments: a non-public
  `AddComment` is refused unless the connector is built with `allow_internal_comments=True`
  (private repos whose readers may see internal notes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ...sync.model import (
    AddComment,
    Comment,
    Create,
    Item,
    Operation,
    PushResult,
    Transition,
    Update,
    split_comment_marker,
    with_comment_marker,
)
from ..base import Page
from ..errors import NotFound, Permanent
from ..http import RetryPolicy
from .client import JSON, MAX_PER_PAGE, GitHubClient, Listing

log = structlog.get_logger(__name__)

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ITEM_ID = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#([0-9]+)$")
_MARKER = re.compile(r"^[a-z][a-z0-9_]*:\S+$")
# The hidden body marker, and the blank line the connector writes before it.
_BODY_MARKER = re.compile(r"(?:\r?\n){0,2}<!--[ \t]*ticketbridge:[ \t]*([a-z][a-z0-9_]*:\S+?)[ \t]*-->")
_REPO_IN_URL = re.compile(r"/repos/([^/]+/[^/]+?)(?:/issues/\d+)?/?$")

WRITABLE = ("title", "body", "state", "state_reason", "labels", "assignees")
# Normalized but not written: milestone needs a number, the rest is GitHub's own bookkeeping.
READ_ONLY = ("milestone", "created_at", "closed_at", "user", "issue_id", "repo")
STATES = ("open", "closed")
MAX_SCAN_PASSES = 3


def parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.fromtimestamp(0, UTC)
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def github_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marker_comment(marker: str) -> str:
    if not _MARKER.match(marker) or "-->" in marker:
        raise ValueError(f"marker {marker!r} is not '<tracker>:<id>' without spaces")
    return f"<!-- ticketbridge: {marker} -->"


def split_body_marker(body: str | None) -> tuple[str, str | None]:
    """(body without any ticketbridge marker, the first marker found or None)."""
    if not body:
        return "", None
    match = _BODY_MARKER.search(body)
    if not match:
        return body, None
    return _BODY_MARKER.sub("", body), match.group(1)


def with_body_marker(body: str | None, marker: str | None) -> str:
    """`body` (any marker in it removed) with `marker` appended after a blank line."""
    text, _ = split_body_marker(body)
    if marker is None:
        return text
    return f"{text}\n\n{marker_comment(marker)}" if text else marker_comment(marker)


def _names(values: Any, key: str) -> tuple[str, ...]:
    """Label names / assignee logins (objects or plain strings) as a sorted tuple."""
    names = []
    for value in values or ():
        name = value.get(key) if isinstance(value, dict) else value
        if name is not None:
            names.append(str(name))
    return tuple(sorted(names))


def _string_list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple | list | set | frozenset):
        return sorted(str(v) for v in value)
    raise ValueError(f"{name} must be a list of strings, not {type(value).__name__}")


@dataclass
class _Known:
    """What the last read of one item told us, so writes and comment loads need no extra GET."""

    issue_id: int | None
    marker: str | None
    version: str
    comment_count: int | None


class GitHubConnector:
    """GitHub Issues of one or more repositories.

    `select` keys (a flow's selection for this side):
    - `repos`: a subset of the configured repos; only these are polled (the cursor keeps the
      others' positions). A repo not configured on the tracker is a configuration error.
    - `labels_any`: an issue takes part only with at least one of these labels.
    - `labels_none`: an issue with any of these labels does not take part.
    Labels narrow nothing on the server: an issue whose labels stop matching is still polled, so
    the engine (`selected` is its client-side test) pauses its pair and sees it come back in.
    An issue that does not take part is not created from; a linked one pauses its pair.
    """

    type = "github"
    transition_field: str | None = None  # state is a plain field on GitHub
    dedupe_versions = True  # the look-back re-delivers recent issues; the engine skips known id+version

    def __init__(self, name: str, base_url: str, token: str, *, repos: Sequence[str],
                 retry: RetryPolicy | None = None, lookback_seconds: float = 120, per_page: int = 100,
                 marker_scan_pages: int = 10, allow_internal_comments: bool = False) -> None:
        if isinstance(repos, str) or not repos:
            raise ValueError(f"tracker '{name}': repos must be a non-empty list of 'owner/repo'")
        for repo in repos:
            if not _REPO.match(repo):
                raise ValueError(f"tracker '{name}': repo {repo!r} is not 'owner/repo'")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.repos: tuple[str, ...] = tuple(dict.fromkeys(repos))
        self.lookback = timedelta(seconds=lookback_seconds)
        self.per_page = max(1, min(per_page, MAX_PER_PAGE))
        self.marker_scan_pages = max(1, marker_scan_pages)
        self.allow_internal_comments = allow_internal_comments
        self.client = GitHubClient(name, self.base_url, token, retry=retry)
        self._pages: dict[str, tuple[str | None, Listing]] = {}  # repo -> (since, its only page, with ETag)
        self._known: dict[str, _Known] = {}

    def __repr__(self) -> str:  # never show the token
        return f"GitHubConnector(name={self.name!r}, base_url={self.base_url!r}, repos={list(self.repos)!r})"

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    # -- ids ---------------------------------------------------------------------------------
    def _repo(self, repo: str) -> str:
        """The configured spelling of `repo` (GitHub names are case-insensitive), or `repo` itself."""
        folded = repo.casefold()
        return next((known for known in self.repos if known.casefold() == folded), repo)

    def _parse_id(self, item_id: str) -> tuple[str, int]:
        match = _ITEM_ID.match(item_id)
        if not match:
            raise Permanent(self.name, f"item id {item_id!r} is not 'owner/repo#number'")
        return self._repo(match.group(1)), int(match.group(2))

    # -- reads -------------------------------------------------------------------------------
    def check(self) -> None:
        """Authenticate (GET /rate_limit costs no quota) and make sure every repo's issues are readable."""
        limits = self.client.rate_limit()
        core = (limits.get("resources") or {}).get("core") or limits.get("rate") or {}
        for repo in self.repos:
            try:
                self.client.issues_page(repo, {"state": "all", "per_page": 1})
            except NotFound as error:
                reason = ("has issues disabled or was deleted" if error.status == 410 else
                          "was not found, or this token cannot see it (GitHub answers 404 for private repos)")
                raise Permanent(self.name, f"repository {repo!r} {reason}", status=error.status) from None
        log.info("github.check.ok", tracker=self.name, repos=len(self.repos), remaining=core.get("remaining"))

    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        state = self._decode_cursor(cursor)
        delivered: set[tuple[str, str]] = set()  # (issue id, updated_at) already yielded by this poll
        for repo in self._poll_repos(select):
            yield from self._poll_repo(repo, state, delivered)

    def _poll_repos(self, select: Mapping[str, Any]) -> tuple[str, ...]:
        wanted = select.get("repos")
        if wanted is None:
            return self.repos
        if isinstance(wanted, str):
            wanted = [wanted]
        chosen = [self._repo(str(repo)) for repo in wanted]
        unknown = [repo for repo in chosen if repo not in self.repos]
        if unknown:
            raise Permanent(self.name, f"select.repos names {unknown!r}, not among the tracker's repos "
                                       f"{list(self.repos)!r}")
        return tuple(repo for repo in self.repos if repo in chosen)

    def _poll_repo(self, repo: str, state: dict[str, str], delivered: set[tuple[str, str]]) -> Iterator[Page]:
        start = state.get(repo)
        since = github_time(parse_time(start) - self.lookback) if start else None
        for scan in range(1, MAX_SCAN_PASSES + 1):
            params: JSON = {"state": "all", "sort": "updated", "direction": "asc", "per_page": self.per_page}
            if since:
                params["since"] = since
            cached = self._pages.get(repo) if scan == 1 else None
            if cached is not None and cached[0] != since:
                cached = None
            listing = self.client.issues_page(repo, params, etag=cached[1].etag if cached else None)
            if listing.not_modified and cached is not None:
                # Nothing changed since that answer: replay it (free), as any HTTP cache would. The
                # engine drops what it already processed by version; another flow sharing this
                # connector, or a pass after a dry run, still sees the issues.
                log.info("github.poll.not_modified", tracker=self.name, repo=repo, items=len(cached[1].items))
                listing = cached[1]
            elif scan == 1:
                self._remember_page(repo, since, listing)
            restart: datetime | None = None
            scanned: dict[str, tuple[str, int]] = {}  # issue id -> (updated_at, page where this scan met it)
            page_newest: list[datetime | None] = []  # the cursor's time after each page of this scan
            next_urls: set[str] = set()
            while True:
                newest = parse_time(state[repo]) if repo in state else None
                items: list[Item] = []
                for raw in listing.items:
                    raw_id, updated = str(raw.get("id")), str(raw.get("updated_at") or "")
                    before = scanned.get(raw_id)
                    if before is not None and before[0] != updated:
                        # Updated during this scan: the pages after its old place shifted back by one.
                        met = page_newest[before[1]] if before[1] < len(page_newest) else newest
                        if met is not None:
                            restart = met if restart is None else min(restart, met)
                    scanned[raw_id] = (updated, before[1] if before else len(page_newest))
                    if updated and (newest is None or parse_time(updated) > newest):
                        newest, state[repo] = parse_time(updated), updated
                    if "pull_request" in raw or (raw_id, updated) in delivered:
                        continue
                    delivered.add((raw_id, updated))
                    items.append(self.normalize(raw, repo=repo))
                page_newest.append(newest)
                log.info("github.poll.page", tracker=self.name, repo=repo, items=len(items),
                         skipped=len(listing.items) - len(items), cursor=state.get(repo))
                yield Page(items=items, cursor=self._encode_cursor(state))
                if not listing.next_url:
                    break
                if listing.next_url in next_urls:  # a server repeating a link would loop forever
                    raise Permanent(self.name, f"GitHub repeated the page link {listing.next_url!r}")
                next_urls.add(listing.next_url)
                listing = self.client.list_page(listing.next_url)
            if restart is None:
                return
            if scan == MAX_SCAN_PASSES:
                # The look-back of the next poll is the last chance for an issue skipped by this scan.
                log.warning("github.poll.still_shifting", tracker=self.name, repo=repo, scans=scan)
                return
            since = github_time(restart - self.lookback)
            log.info("github.poll.rescan", tracker=self.name, repo=repo, since=since, scan=scan + 1)

    def _remember_page(self, repo: str, since: str | None, listing: Listing) -> None:
        """Keep a repo's first page for conditional requests when it was the whole answer: only then
        does any change alter that one page (a change past a full page would leave it as it was)."""
        if listing.etag and not listing.next_url and len(listing.items) < self.per_page:
            self._pages[repo] = (since, listing)
        else:
            self._pages.pop(repo, None)

    def _decode_cursor(self, cursor: str | None) -> dict[str, str]:
        if not cursor:
            return {}
        try:
            value = json.loads(cursor)
        except ValueError:
            value = None
        if isinstance(value, dict):
            state = {self._repo(str(repo)): str(stamp) for repo, stamp in value.items() if stamp}
        else:
            state = {repo: cursor for repo in self.repos}  # a bare timestamp: the cursor of every repo
        for stamp in state.values():
            try:
                parse_time(stamp)
            except ValueError:
                raise Permanent(self.name, f"stored cursor {cursor!r} is not a GitHub cursor") from None
        return state

    @staticmethod
    def _encode_cursor(state: Mapping[str, str]) -> str:
        return json.dumps(dict(state), sort_keys=True, separators=(",", ":"))

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        repos = select.get("repos")
        if repos is not None:
            wanted = {str(r).casefold() for r in ([repos] if isinstance(repos, str) else repos)}
            if str(item.fields.get("repo", "")).casefold() not in wanted:
                return False
        labels = set(item.fields.get("labels") or ())
        labels_any = select.get("labels_any")
        if labels_any is not None and not labels & set(labels_any):
            return False
        labels_none = select.get("labels_none")
        return not (labels_none is not None and labels & set(labels_none))

    def fetch(self, item_id: str) -> Item:
        repo, number = self._parse_id(item_id)
        raw = self.client.issue(repo, number)
        self._verify(item_id, repo, number, raw)
        item = self.normalize(raw, repo=repo)
        return replace(item, comments=self._comments(repo, number))

    def _verify(self, item_id: str, repo: str, number: int, raw: JSON) -> None:
        if "pull_request" in raw:
            raise NotFound(self.name, f"{item_id} is a pull request, not an issue")
        if raw.get("number") != number:
            # GitHub redirects a transferred issue to its new home, under another number.
            raise NotFound(self.name, f"{item_id} moved to {raw.get('html_url') or raw.get('number')} "
                                      "(transferred): it is no longer this item", status=301)
        known = self._known.get(item_id)
        if known is not None and known.issue_id is not None and raw.get("id") != known.issue_id:
            raise NotFound(self.name, f"{item_id} is now another issue (id {raw.get('id')}, was "
                                      f"{known.issue_id}): the original was deleted or transferred")
        actual = _repo_of(raw)
        if actual and actual.casefold() != repo.casefold():
            log.warning("github.repo_renamed", tracker=self.name, item=item_id, now=actual)

    def with_comments(self, item: Item) -> Item:
        if item.comments is not None:
            return item
        known = self._known.get(item.id)
        if known is not None and known.version == item.version and known.comment_count == 0:
            return replace(item, comments=())  # the issue said it has none: no request needed
        repo, number = self._parse_id(item.id)
        return replace(item, comments=self._comments(repo, number))

    def _comments(self, repo: str, number: int) -> tuple[Comment, ...]:
        comments: list[Comment] = []
        listing = self.client.comments_page(repo, number)
        seen_urls: set[str] = set()
        while True:
            comments.extend(self.normalize_comment(raw) for raw in listing.items)
            if not listing.next_url or listing.next_url in seen_urls:
                break
            seen_urls.add(listing.next_url)
            listing = self.client.comments_page(repo, number, listing.next_url)
        return tuple(comments)

    def find_by_marker(self, marker: str) -> Item | None:
        """The issue whose body carries `<!-- ticketbridge: <marker> -->`, scanning recent issues.

        GitHub's search API would find it in one request, but its index lags writes (the issue we
        look for was typically created moments before a crash) and it has its own tight rate limit
        (30/min). So each configured repo's issues are listed newest-created first, at most
        `marker_scan_pages` pages of `per_page` each: exact and immediately consistent, at the cost
        of not finding a marker on an issue older than that window (a create to recover is recent).
        Repos are scanned in configured order (the first is the default target of a Create); on the
        page where the marker shows up, the oldest issue carrying it wins.
        """
        if not _MARKER.match(marker):
            return None  # we could never have written such a marker
        for repo in self.repos:
            params: JSON = {"state": "all", "sort": "created", "direction": "desc", "per_page": self.per_page}
            listing = self.client.issues_page(repo, params)
            for page in range(1, self.marker_scan_pages + 1):
                matches = [raw for raw in listing.items if "pull_request" not in raw
                           and split_body_marker(raw.get("body"))[1] == marker]
                if matches:
                    oldest = min(matches, key=lambda raw: (parse_time(raw.get("created_at")), raw.get("number", 0)))
                    log.info("github.find_by_marker.found", tracker=self.name, marker=marker, repo=repo,
                             number=oldest.get("number"), pages=page)
                    return self.normalize(oldest, repo=repo)
                if not listing.next_url or page == self.marker_scan_pages:
                    break
                listing = self.client.list_page(listing.next_url)
        return None

    # -- normalization -------------------------------------------------------------------------
    def normalize(self, issue: JSON, *, repo: str | None = None) -> Item:
        repo = self._repo(repo or _repo_of(issue) or "")
        if not repo:
            raise Permanent(self.name, f"cannot tell the repository of issue {issue.get('id')!r}")
        number = int(issue["number"])
        item_id = f"{repo}#{number}"
        body, marker = split_body_marker(issue.get("body"))
        assignees = issue.get("assignees")
        if assignees is None and isinstance(issue.get("assignee"), dict):
            assignees = [issue["assignee"]]  # payloads older than `assignees`
        milestone = issue.get("milestone")
        user = issue.get("user")
        fields: dict[str, Any] = {
            "title": issue.get("title"),
            "body": body or None,
            "state": issue.get("state"),
            "state_reason": issue.get("state_reason"),
            "labels": _names(issue.get("labels"), "name"),
            "assignees": _names(assignees, "login"),
            "milestone": milestone.get("title") if isinstance(milestone, dict) else None,
            "created_at": issue.get("created_at"),
            "closed_at": issue.get("closed_at"),
            "user": user.get("login") if isinstance(user, dict) else None,
            "issue_id": issue.get("id"),
            "repo": repo,
        }
        updated = str(issue.get("updated_at") or issue.get("created_at") or "")
        count = issue.get("comments") if isinstance(issue.get("comments"), int) else None
        digest = hashlib.sha256(json.dumps([fields, marker, count], sort_keys=True, default=str).encode())
        version = f"{updated}/{digest.hexdigest()[:12]}"
        issue_id = issue.get("id")
        self._known[item_id] = _Known(issue_id if isinstance(issue_id, int) else None, marker, version, count)
        return Item(tracker=self.name, id=item_id, key=item_id, url=str(issue.get("html_url") or ""),
                    fields=fields, updated_at=parse_time(updated), version=version, marker=marker)

    @staticmethod
    def normalize_comment(raw: JSON) -> Comment:
        body, source = split_comment_marker(str(raw.get("body") or ""))
        user = raw.get("user")
        return Comment(id=str(raw["id"]), body=body, public=True,
                       author=str(user.get("login") or "") if isinstance(user, dict) else "",
                       created_at=parse_time(raw.get("created_at")), mirrored_from=source, author_role=None)

    # -- writes ------------------------------------------------------------------------------
    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        """Create (POST) and/or one PATCH with every Update's fields, then one POST per comment.

        The whole op list is checked before the first request, so a bad list half-applies nothing.
        """
        create, values, comments = self._plan(item_id, ops)
        created = False
        last: JSON | None = None
        if create is not None:
            repo, payload, marker = create
            log.info("github.push.create", tracker=self.name, repo=repo, marker=marker)
            last = self.client.create_issue(repo, payload)
            item_id = f"{repo}#{int(last['number'])}"
            created = True
            self.normalize(last, repo=repo)  # remembers id and marker for the writes below
            values = {k: v for k, v in values.items() if k in ("state", "state_reason")}
            if values.get("state") != "closed":
                values = {}  # an issue is born open; a reason alone changes nothing
        assert item_id is not None  # _plan refuses a missing id without a Create
        repo, number = self._parse_id(item_id)
        if values:
            payload = self._payload(values)
            if "body" in payload:
                payload["body"] = with_body_marker(payload["body"], self._marker_of(item_id, repo, number))
            log.info("github.push.update", tracker=self.name, item=item_id, fields=sorted(payload))
            last = self.client.update_issue(repo, number, payload)
        comment_ids: dict[str, str] = {}
        for op in comments:
            body = op.body if split_comment_marker(op.body)[1] == op.source_id else \
                with_comment_marker(op.body, op.source_id)
            posted = self.client.add_comment(repo, number, body)
            comment_ids[op.source_id] = str(posted["id"])
            log.info("github.push.comment", tracker=self.name, item=item_id, comment_id=posted.get("id"),
                     source=op.source_id)
        item = self.normalize(last, repo=repo) if last is not None else None
        return PushResult(item_id=item_id, item_key=item_id, created=created, comment_ids=comment_ids, item=item)

    def _plan(self, item_id: str | None, ops: Sequence[Operation]
              ) -> tuple[tuple[str, JSON, str] | None, dict[str, Any], list[AddComment]]:
        create: Create | None = None
        values: dict[str, Any] = {}
        comments: list[AddComment] = []
        for index, op in enumerate(ops):
            if isinstance(op, Create):
                if index != 0 or item_id is not None:
                    raise Permanent(self.name, "Create must be the first operation on a new item")
                create = op
            elif isinstance(op, Transition):
                raise Permanent(self.name, f"GitHub has no workflow transitions (state is a field): "
                                           f"cannot transition to {op.status!r}")
            elif isinstance(op, Update):
                values.update(self._writable(op.fields))
            elif isinstance(op, AddComment):
                if not op.public and not self.allow_internal_comments:
                    raise Permanent(self.name, f"GitHub has no internal comments: refusing to post the "
                                               f"internal note {op.source_id} where anyone who can read "
                                               "the repository sees it")
                comments.append(op)
        if create is None:
            if item_id is None:
                raise Permanent(self.name, "push without an item id must start with Create")
            self._parse_id(item_id)
            self._payload(values)  # refuse bad values before anything is sent
            return None, values, comments
        fields = dict(create.fields)
        target = self._repo(str(fields.pop("repo", None) or self.repos[0]))
        if target not in self.repos:
            raise Permanent(self.name, f"cannot create in repo {target!r}: not among the tracker's repos "
                                       f"{list(self.repos)!r}")
        merged = {**self._writable(fields), **values}
        payload = self._payload({k: v for k, v in merged.items() if k not in ("state", "state_reason")})
        if not payload.get("title"):
            raise Permanent(self.name, "cannot create an issue without a title")
        try:
            payload["body"] = with_body_marker(payload.get("body"), create.marker)
        except ValueError as error:
            raise Permanent(self.name, str(error)) from None
        self._payload({k: v for k, v in merged.items() if k in ("state", "state_reason")})
        return (target, payload, create.marker), merged, comments

    def _writable(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name in WRITABLE:
                out[name] = value
            elif name in READ_ONLY:
                log.warning("github.push.read_only_field", tracker=self.name, field=name)
            else:
                raise Permanent(self.name, f"GitHub issues have no writable field {name!r} "
                                           f"(writable: {', '.join(WRITABLE)})")
        return out

    def _payload(self, values: Mapping[str, Any]) -> JSON:
        """Item values -> the issue JSON GitHub takes (labels/assignees replace the whole set)."""
        payload: JSON = {}
        for name, value in values.items():
            try:
                if name in ("labels", "assignees"):
                    payload[name] = _string_list(name, value)
                elif name == "state":
                    state = str(value)
                    if state not in STATES:
                        raise ValueError(f"state must be one of {', '.join(STATES)}, not {value!r}")
                    payload[name] = state
                elif name == "body":
                    payload[name] = "" if value is None else str(value)
                else:
                    payload[name] = None if value is None else str(value)
            except ValueError as error:
                raise Permanent(self.name, str(error)) from None
        return payload

    def _marker_of(self, item_id: str, repo: str, number: int) -> str | None:
        known = self._known.get(item_id)
        if known is None:
            issue = self.client.issue(repo, number)
            self._verify(item_id, repo, number, issue)
            self.normalize(issue, repo=repo)
            known = self._known[item_id]
        return known.marker


def _repo_of(issue: JSON) -> str | None:
    """`owner/repo` from an issue's `repository_url` or `url`."""
    for key in ("repository_url", "url"):
        value = issue.get(key)
        if isinstance(value, str):
            match = _REPO_IN_URL.search(value)
            if match:
                return match.group(1)
    return None


__all__ = ["GitHubConnector", "marker_comment", "parse_time", "split_body_marker", "with_body_marker"]
