"""Prebuilds on a real server (fake runtime; the repository served over git's dumb HTTP):
a run does the clone and devcontainer.json's onCreateCommand and updateContentCommand; a
create of the same repository starts from a copy of its home and runs only
postCreateCommand (and updateContentCommand again when the branch moved on); a newer run
replaces it, the older home goes; a failed run keeps the prebuild before it; prebuilds are
their owner's alone."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Dev8Server,
    DumbGitServer,
    User,
    fake_server,
    github_push,
    log_in,
    set_web_password,
    shot,
    unique,
    wait_until,
)

DEVCONTAINER = {
    # onCreateCommand: what makes a prebuild worth it (npm ci): many files, counted runs
    "onCreateCommand": "mkdir -p deps && for i in $(seq 1 300); do echo $i > deps/f$i; done; "
                       "echo oncreate >> \"$HOME/runs\"",
    "updateContentCommand": "echo update-$(git rev-parse --short HEAD) >> \"$HOME/runs\"",
    "postCreateCommand": "echo postcreate >> \"$HOME/runs\"",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    with fake_server(tmp_path_factory.mktemp("prebuilds")) as srv:
        yield srv


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DumbGitServer]:
    git = DumbGitServer(tmp_path_factory.mktemp("repo"), {
        ".devcontainer/devcontainer.json": json.dumps(DEVCONTAINER), "README.md": "first\n"})
    try:
        yield git
    finally:
        git.stop()


def home_of(server: Dev8Server, user: User, name: str) -> Path:
    env_id = user.http().get(f"/environments/{name}").json()["id"]
    runtime: Path = server.runtime_root  # type: ignore[attr-defined]
    [home] = [m.parent / "home" for m in runtime.glob("*/meta") if json.loads(m.read_text())["env_id"] == env_id]
    return home


def runs_in(home: Path) -> list[str]:
    return (home / "runs").read_text().split()


def events(user: User, name: str) -> list[dict]:
    return user.http().get(f"/environments/{name}/events", params={"follow": "false"}).json()


def test_a_create_starts_from_the_prebuild_and_runs_only_what_is_its_own(server: Dev8Server, repo: DumbGitServer,
                                                                          tmp_path: Path) -> None:
    alice = User(server, "alice@example.com", tmp_path / "alice")
    made = alice.cli("prebuilds", "set", repo.url, "--keep", "1")
    assert "prebuild ready at" in made.stdout, made.stdout
    [config] = alice.http().get("/prebuilds").json()
    first = config["runs"][0]
    assert first["state"] == "ready" and first["commit"] and "lifecycle ok" in first["log"]
    assert alice.http().get("/environments").json() == []  # the run's environment is no one's to see
    runtime: Path = server.runtime_root  # type: ignore[attr-defined]
    [prebuild_home] = [d / "home" for d in runtime.glob(f"*-{first['environment']}")]
    assert runs_in(prebuild_home) == ["oncreate", f"update-{first['commit'][:7]}"]  # not postCreate

    name = unique("pb")
    alice.cli("create", name, "--repo", repo.url)
    home = home_of(server, alice, name)
    assert home != prebuild_home
    assert (home / "workspace" / "proj" / "deps" / "f300").read_text() == "300\n"  # onCreate's work, copied
    assert runs_in(home) == ["oncreate", f"update-{first['commit'][:7]}", "postcreate"]  # only postCreate ran here
    shown = alice.http().get(f"/environments/{name}").json()
    assert shown["prebuild"] == first["commit"]
    assert any(e["step"] == "prebuild" and "from the prebuild of " + first["commit"][:7] in e["message"]
               for e in events(alice, name))
    assert alice.ssh(name, "cat workspace/proj/README.md").stdout == "first\n"  # it works as any environment

    # the branch moves on: a new home from the same prebuild catches up and updates its content
    second_commit = repo.commit({"README.md": "second\n"})
    later = unique("pb")
    alice.cli("create", later, "--repo", repo.url)
    home2 = home_of(server, alice, later)
    assert (home2 / "workspace" / "proj" / "README.md").read_text() == "second\n"
    assert runs_in(home2) == ["oncreate", f"update-{first['commit'][:7]}", f"update-{second_commit[:7]}",
                              "postcreate"]

    # a newer run replaces the prebuild (keep 1): its home goes, the homes made from it stay
    assert "prebuild ready at" in alice.cli("prebuilds", "run", repo.url).stdout
    runs = alice.http().get(f"/prebuilds/{config['id']}").json()["runs"]
    assert [r["state"] for r in runs] == ["ready", "removed"] and runs[0]["commit"] == second_commit
    wait_until(lambda: not prebuild_home.exists(), timeout=30, what="the older prebuild's home removed")
    assert (home / "workspace" / "proj" / "deps" / "f1").exists()
    newest = unique("pb")
    alice.cli("create", newest, "--repo", repo.url)
    assert runs_in(home_of(server, alice, newest)) == ["oncreate", f"update-{second_commit[:7]}", "postcreate"]

    # opting out: an ordinary create runs everything itself
    plain = unique("pb")
    alice.cli("create", plain, "--repo", repo.url, "--no-prebuild")
    assert alice.http().get(f"/environments/{plain}").json()["prebuild"] is None
    assert runs_in(home_of(server, alice, plain)) == ["oncreate", f"update-{second_commit[:7]}", "postcreate"]
    assert not (home_of(server, alice, plain) / ".local/share/dev8/devcontainer-prebuilt").exists()

    # another user's create of the same repository does not get alice's prebuild, nor sees it
    bob = User(server, "bob@example.com", tmp_path / "bob")
    theirs = unique("pb")
    bob.cli("create", theirs, "--repo", repo.url)
    assert bob.http().get(f"/environments/{theirs}").json()["prebuild"] is None
    assert bob.http().get(f"/prebuilds/{config['id']}").status_code == 404
    assert bob.http().get("/prebuilds").json() == []

    # deleting the prebuild leaves every home made from it alone
    alice.cli("prebuilds", "delete", repo.url)
    assert alice.http().get("/prebuilds").json() == []
    assert alice.ssh(newest, "cat workspace/proj/deps/f7").stdout == "7\n"


def test_a_failed_run_keeps_the_prebuild_before_it_and_says_why(server: Dev8Server, tmp_path: Path) -> None:
    git = DumbGitServer(tmp_path / "git", {".devcontainer/devcontainer.json": json.dumps(
        {"onCreateCommand": "test -e broken && { echo the build broke >&2; exit 3; }; echo ok > built"})})
    try:
        carol = User(server, "carol@example.com", tmp_path / "carol")
        carol.cli("prebuilds", "set", git.url)
        [config] = carol.http().get("/prebuilds").json()
        good = config["runs"][0]
        assert good["state"] == "ready"
        git.commit({"broken": "yes\n"})
        failed = carol.cli("prebuilds", "run", git.url, check=False)
        assert failed.returncode == 1 and "the build broke" in failed.stderr, failed.stderr
        runs = carol.http().get(f"/prebuilds/{config['id']}").json()["runs"]
        assert [r["state"] for r in runs] == ["failed", "ready"]
        assert "lifecycle failed" in runs[0]["message"] and "the build broke" in runs[0]["message"]
        runtime: Path = server.runtime_root  # type: ignore[attr-defined]
        wait_until(lambda: not list(runtime.glob(f"*-{runs[0]['environment']}")), timeout=30,
                   what="the failed run's home removed")
        name = unique("pb")
        carol.cli("create", name, "--repo", git.url)
        assert carol.http().get(f"/environments/{name}").json()["prebuild"] == good["commit"]
    finally:
        git.stop()


def test_bad_prebuild_requests_change_nothing(server: Dev8Server, tmp_path: Path) -> None:
    dave = User(server, "dave@example.com", tmp_path / "dave")
    api = dave.http()
    assert api.put("/prebuilds", json={"repo": "not a url"}).status_code == 422
    assert api.put("/prebuilds", json={"repo": "https://git.example.com/a/b.git", "keep": 0}).status_code == 422
    missing = api.put("/prebuilds", json={"repo": "https://git.example.com/a/b.git", "secrets": ["NOPE"]})
    assert missing.status_code == 422 and "NOPE" in missing.text
    assert api.post("/prebuilds/nonexistent/runs").status_code == 404
    assert api.get("/prebuilds").json() == []


def test_a_signed_push_webhook_makes_a_prebuild_of_the_new_commit_and_a_forged_one_nothing(
        server: Dev8Server, tmp_path: Path) -> None:
    git = DumbGitServer(tmp_path / "git", {"README.md": "v1\n"})
    try:
        erin = User(server, "erin@example.com", tmp_path / "erin")
        made = erin.cli("prebuilds", "set", git.url, "--no-run")
        secret = made.stdout.split("secret", 1)[1].split()[0]
        [config] = erin.http().get("/prebuilds").json()
        assert config["runs"] == [] and config["webhook_secret"] is None  # shown once, when it was made

        def runs() -> list[dict]:
            return erin.http().get(f"/prebuilds/{config['id']}").json()["runs"]
        pushed = git.commit({"README.md": "v2\n"})
        forged = github_push(server, git.url, "main", pushed, "a guess")
        assert forged.status_code == 401 and runs() == []
        unknown = github_push(server, "http://127.0.0.1:9/nobody.git", "main", pushed, secret)
        assert unknown.status_code == 401  # an unknown repository looks like a forged hook
        other_branch = github_push(server, git.url, "feature", pushed, secret)
        assert other_branch.status_code == 202 and other_branch.json() == {"runs": []}

        accepted = github_push(server, git.url, "main", pushed, secret)
        assert accepted.status_code == 202 and len(accepted.json()["runs"]) == 1
        wait_until(lambda: runs()[0]["state"] == "ready", timeout=60, what="the pushed commit prebuilt")
        assert runs()[0]["commit"] == pushed
        # no devcontainer.json: a home made from it still moves to the branch's head, once
        newer = git.commit({"README.md": "v3\n"})
        name = unique("pb")
        erin.cli("create", name, "--repo", git.url)
        assert erin.ssh(name, "cd workspace/proj && git rev-parse HEAD && cat README.md").stdout.split() == [newer, "v3"]
        erin.ssh(name, "cd workspace/proj && git -c user.name=e -c user.email=e@e commit -qm mine --allow-empty")
        git.commit({"README.md": "v4\n"})
        erin.cli("restart", name)  # a start later: the clone is the user's own now, not pulled again
        assert erin.ssh(name, "cd workspace/proj && git log -1 --format=%s").stdout.strip() == "mine"
        assert not [e for e in events(erin, name) if e["status"] in ("warning", "error")]
        again = github_push(server, git.url, "main", pushed, secret)  # delivered twice: built once
        assert again.status_code == 202
        wait_until(lambda: runs()[0]["state"] == "skipped", timeout=30, what="the repeated push skipped")
        assert [r["state"] for r in runs()] == ["skipped", "ready"]

        # a new secret: the old one proves nothing any more
        rotated = erin.cli("prebuilds", "webhook", git.url).stdout.split("secret", 1)[1].split()[0]
        assert rotated != secret
        assert github_push(server, git.url, "main", pushed, secret).status_code == 401
        assert github_push(server, git.url, "main", pushed, rotated).status_code == 202
    finally:
        git.stop()


def test_the_prebuilds_page_sets_runs_shows_and_deletes(page, server: Dev8Server, repo: DumbGitServer,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    frank = User(server, "frank@example.com", tmp_path / "frank")
    set_web_password(frank)
    log_in(page, server, frank, "/prebuilds")
    page.wait_for_selector("#prebuild-empty:visible")
    page.fill("#prebuild-repo", repo.url)
    page.select_option("#prebuild-every", "86400")
    page.click("#prebuild-form button[type=submit]")
    page.wait_for_selector("#prebuild-hook:visible")
    assert "/api/v1/prebuilds/hooks/github" in page.inner_text("#prebuild-hook-value")
    secret = page.inner_text("#prebuild-hook-value").split("secret")[1].strip()
    assert len(secret) >= 40
    page.wait_for_selector("article[data-prebuild] .state.ready", timeout=60_000)  # it refreshes while it runs
    card = page.locator("article[data-prebuild]")
    assert "every 1 d" in card.inner_text() and repo.url in card.inner_text()
    card.locator("summary:text('Steps')").click()
    assert "lifecycle ok" in card.locator("pre").inner_text()
    shot(page, "prebuilds")
    page.on("dialog", lambda d: d.accept())
    card.locator("button:text('Delete')").click()
    page.wait_for_selector("#prebuild-empty:visible")
    assert frank.http().get("/prebuilds").json() == []
    assert page.console_errors == []
