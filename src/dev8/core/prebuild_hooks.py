"""Push webhooks of GitHub, GitLab and Bitbucket (Cloud and Data Center), as prebuild
triggers: each provider's proof that the hook is the user's, and what was pushed (pure:
parsing and checking, no I/O).

The proofs, as each provider documents them: GitHub and Bitbucket sign the body with the
hook's secret (``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>``; Bitbucket ``X-Hub-Signature``),
GitLab sends the secret itself (``X-Gitlab-Token``). Compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

PROVIDERS = ("github", "gitlab", "bitbucket")


class HookRefused(ValueError):
    """Not a push dev8 acts on, or not readable: the sentence says which."""


@dataclass(frozen=True)
class Push:
    """What a push webhook says: the repository's clone URLs, the branch, the commit it is
    at now, and the repository's default branch when the provider says it."""
    urls: tuple[str, ...]
    branch: str
    commit: str
    default_branch: str | None


def proven(provider: str, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """Whether the request carries ``secret``'s proof, the way ``provider`` sends it."""
    if provider == "gitlab":
        return hmac.compare_digest(headers.get("x-gitlab-token", "").encode(), secret.encode())
    header = "x-hub-signature-256" if provider == "github" else "x-hub-signature"
    scheme, _, given = headers.get(header, "").partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return scheme == "sha256" and hmac.compare_digest(given.strip().lower().encode(), expected.encode())


def is_ping(provider: str, headers: Mapping[str, str]) -> bool:
    """A provider checking that the hook answers (GitHub's ``ping``, Bitbucket's
    ``diagnostics:ping``), not a push."""
    return (provider == "github" and headers.get("x-github-event") == "ping") or \
        (provider == "bitbucket" and headers.get("x-event-key") == "diagnostics:ping")


def parse(provider: str, headers: Mapping[str, str], body: bytes) -> Push | None:
    """The push in a webhook; None for an event that is no push to a branch (a tag, a branch
    deleted, another kind of event): nothing to build."""
    if provider not in PROVIDERS:
        raise HookRefused(f"unknown provider {provider!r} (github, gitlab, bitbucket)")
    try:
        doc = json.loads(body)
    except ValueError:
        raise HookRefused("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise HookRefused("the body is not a JSON object")
    try:
        push = _github(headers, doc) if provider == "github" else (
            _gitlab(headers, doc) if provider == "gitlab" else _bitbucket(headers, doc))
    except (KeyError, TypeError, AttributeError, IndexError):
        push = None
        readable = False
    else:
        readable = push is None or (all(isinstance(v, str) and 0 < len(v) <= 255 for v in (push.branch, push.commit))
                                    and isinstance(push.default_branch, str | None))
    if not readable:
        raise HookRefused(f"not a {provider} push event this dev8 can read")
    return push


def _branch(ref: str) -> str | None:
    return ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def _github(headers: Mapping[str, str], doc: dict) -> Push | None:
    if headers.get("x-github-event") != "push" or doc.get("deleted"):
        return None
    branch = _branch(doc["ref"])
    if branch is None:
        return None
    repo = doc["repository"]
    return Push(_urls(repo.get("clone_url"), repo.get("html_url")), branch, doc["after"], repo.get("default_branch"))


def _gitlab(headers: Mapping[str, str], doc: dict) -> Push | None:
    if headers.get("x-gitlab-event") != "Push Hook" or not doc.get("checkout_sha"):
        return None  # checkout_sha is null when the branch was deleted
    branch = _branch(doc["ref"])
    if branch is None:
        return None
    project = doc["project"]
    return Push(_urls(project.get("git_http_url"), project.get("web_url")), branch, doc["checkout_sha"],
                project.get("default_branch"))


def _bitbucket(headers: Mapping[str, str], doc: dict) -> Push | None:
    event = headers.get("x-event-key")
    repo = doc["repository"]
    if event == "repo:push":  # Bitbucket Cloud
        changes = [c["new"] for c in doc["push"]["changes"] if c.get("new") and c["new"].get("type") == "branch"]
        if not changes:
            return None
        main = (repo.get("mainbranch") or {}).get("name")
        return Push(_urls(repo["links"]["html"]["href"]), changes[-1]["name"], changes[-1]["target"]["hash"], main)
    if event == "repo:refs_changed":  # Bitbucket Data Center
        changes = [c for c in doc["changes"] if c["ref"].get("type") == "BRANCH" and c.get("type") != "DELETE"]
        if not changes:
            return None
        clones = [link["href"] for link in repo["links"]["clone"] if link.get("name") in ("http", "https")]
        return Push(_urls(*clones), changes[-1]["ref"]["displayId"], changes[-1]["toHash"], None)
    return None


def _urls(*urls: str | None) -> tuple[str, ...]:
    return tuple(normal(u) for u in urls if u)


def normal(url: str) -> str:
    """A repository URL as compared: scheme and host in lower case, no credentials, no
    trailing slash or ``.git``."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return url.strip().lower()
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2].lower()
    path = path.rstrip("/").removesuffix(".git")
    return f"{scheme.lower()}://{host}{slash}{path}"
