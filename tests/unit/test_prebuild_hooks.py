"""Push webhooks as GitHub, GitLab and Bitbucket send them (fields as each provider documents
its push event), and their proofs."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from dev8.core.prebuild_hooks import HookRefused, Push, is_ping, normal, parse, proven

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
SECRET = "s3cret-of-the-hook"


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


GITHUB = {"ref": "refs/heads/main", "before": "0" * 40, "after": SHA, "deleted": False,
          "repository": {"clone_url": "https://github.com/Org/App.git", "html_url": "https://github.com/Org/App",
                         "default_branch": "main"}}
GITLAB = {"object_kind": "push", "ref": "refs/heads/dev", "checkout_sha": SHA,
          "project": {"git_http_url": "https://gitlab.example.com/org/app.git",
                      "web_url": "https://gitlab.example.com/org/app", "default_branch": "main"}}
BITBUCKET_CLOUD = {"push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": SHA}}}]},
                   "repository": {"links": {"html": {"href": "https://bitbucket.org/org/app"}},
                                  "mainbranch": {"name": "main"}}}
BITBUCKET_DC = {"eventKey": "repo:refs_changed",
                "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                             "refId": "refs/heads/main", "fromHash": "0" * 40, "toHash": SHA, "type": "UPDATE"}],
                "repository": {"links": {"clone": [{"href": "ssh://git@bb.example.com:7999/org/app.git", "name": "ssh"},
                                                   {"href": "https://bb.example.com/scm/org/app.git", "name": "http"}]}}}


@pytest.mark.parametrize("provider, headers, doc, expected", [
    ("github", {"x-github-event": "push"}, GITHUB,
     Push(("https://github.com/Org/App", "https://github.com/Org/App"), "main", SHA, "main")),
    ("gitlab", {"x-gitlab-event": "Push Hook"}, GITLAB,
     Push(("https://gitlab.example.com/org/app", "https://gitlab.example.com/org/app"), "dev", SHA, "main")),
    ("bitbucket", {"x-event-key": "repo:push"}, BITBUCKET_CLOUD,
     Push(("https://bitbucket.org/org/app",), "main", SHA, "main")),
    ("bitbucket", {"x-event-key": "repo:refs_changed"}, BITBUCKET_DC,
     Push(("https://bb.example.com/scm/org/app",), "main", SHA, None)),
])
def test_each_providers_push_is_read(provider: str, headers: dict, doc: dict, expected: Push) -> None:
    assert parse(provider, headers, json.dumps(doc).encode()) == expected


@pytest.mark.parametrize("provider, headers, doc", [
    ("github", {"x-github-event": "push"}, {**GITHUB, "ref": "refs/tags/v1"}),       # a tag
    ("github", {"x-github-event": "push"}, {**GITHUB, "deleted": True}),             # a branch deleted
    ("github", {"x-github-event": "issues"}, GITHUB),                                # another event
    ("gitlab", {"x-gitlab-event": "Push Hook"}, {**GITLAB, "checkout_sha": None}),   # a branch deleted
    ("bitbucket", {"x-event-key": "repo:refs_changed"},
     {**BITBUCKET_DC, "changes": [{**BITBUCKET_DC["changes"][0], "type": "DELETE"}]}),
])
def test_what_is_no_push_to_a_branch_builds_nothing(provider: str, headers: dict, doc: dict) -> None:
    assert parse(provider, headers, json.dumps(doc).encode()) is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({**GITHUB, "after": {"x": 1}}).encode(),
                                  json.dumps({"ref": "refs/heads/main"}).encode()])
def test_unreadable_hooks_are_refused_in_a_sentence(body: bytes) -> None:
    with pytest.raises(HookRefused, match="JSON|push event"):
        parse("github", {"x-github-event": "push"}, body)
    with pytest.raises(HookRefused, match="unknown provider"):
        parse("sourcehut", {}, b"{}")


def test_proofs_are_checked_as_each_provider_sends_them() -> None:
    body = json.dumps(GITHUB).encode()
    assert proven("github", {"x-hub-signature-256": signed(body)}, body, SECRET)
    assert not proven("github", {"x-hub-signature-256": signed(body, "guessed")}, body, SECRET)
    assert not proven("github", {"x-hub-signature-256": signed(body + b" ")}, body, SECRET)  # another body
    assert not proven("github", {"x-hub-signature": "sha1=" + "0" * 40}, body, SECRET)  # the old SHA-1 header
    assert not proven("github", {}, body, SECRET)
    assert proven("bitbucket", {"x-hub-signature": signed(body)}, body, SECRET)
    assert proven("gitlab", {"x-gitlab-token": SECRET}, body, SECRET)
    assert not proven("gitlab", {"x-gitlab-token": SECRET[:-1]}, body, SECRET)
    assert is_ping("github", {"x-github-event": "ping"}) and not is_ping("gitlab", {"x-github-event": "ping"})


def test_repository_urls_compare_without_case_credentials_or_git_suffix() -> None:
    assert normal("HTTPS://Git.Example.com/org/app.git/") == normal("https://oauth2:tok@git.example.com/org/app")
    assert normal("https://git.example.com/org/app") != normal("https://git.example.com/org/other")
