"""Git over HTTPS with provider tokens: a real `git http-backend` behind TLS in a test
container, configured in turn as a GitHub Enterprise, self-managed GitLab and Bitbucket
Server host. The environment trusts the test CA through DEV8_ENV_CA_BUNDLE."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import GIT_HOST, GITLAB_HOST, Dev8Server, User, make_tls_certs, start_git_server, unique, wait_until

TOKEN = "tok-" + "a1b2c3d4e5f6" * 3


@pytest.fixture
def git_setup(tmp_path: Path, test_network: str, base_image: str, docker_client):  # type: ignore[no-untyped-def]
    ca = make_tls_certs(tmp_path / "tls", GIT_HOST, GITLAB_HOST)
    server = Dev8Server(tmp_path / "server", extra_env={"DEV8_RUNTIME_NETWORK": test_network,
                                                        "DEV8_ENV_CA_BUNDLE": str(ca)}).start()
    containers = []

    def git_server(users: dict[str, str]):  # type: ignore[no-untyped-def]
        c = start_git_server(docker_client, test_network, tmp_path / "tls", users)
        containers.append(c)
        return c
    yield server, git_server
    server.shutdown()
    for c in containers:
        c.remove(force=True)


@pytest.mark.parametrize("kind, username, git_option_user", [
    ("github", "x-access-token", None),     # GitHub Enterprise
    ("gitlab", "oauth2", None),             # self-managed GitLab
    ("bitbucket", "x-token-auth", None),    # Bitbucket Server/Data Center HTTP access token
    ("bitbucket", "alice-bb", "alice-bb"),  # Bitbucket username + app password
])
def test_clone_pull_push_with_the_right_token_and_a_clear_failure_with_a_wrong_one(
        git_setup, tmp_path: Path, kind: str, username: str, git_option_user: str | None):  # type: ignore[no-untyped-def]
    server, git_server = git_setup
    repo_container = git_server({username: TOKEN})
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "CORP_TOKEN", input=TOKEN)
    name = unique("git")
    option = f"{kind}@{GIT_HOST}:8443=CORP_TOKEN" + (f",{git_option_user}" if git_option_user else "")
    created = alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/app.git", "--branch", "feature",
                        "--git", option)
    assert "✓ clone" in created.stdout, created.stdout
    r = alice.ssh(name, "cd ~/workspace/app && git branch --show-current && cat FEATURE.md && git config user.email")
    assert r.stdout.split() == ["feature", "feature", "alice@example.com"], r.stderr
    push = alice.ssh(name, "cd ~/workspace/app && echo change > CHANGE.md && git add CHANGE.md "
                           "&& git commit -qm 'from dev8' && git push -q origin feature && git pull -q && echo pushed")
    assert push.stdout.strip() == "pushed", push.stderr
    log = repo_container.exec_run("git -C /srv/git/org/app.git log --format=%an:%s -1 feature").output.decode()
    assert log.strip() == "alice:from dev8"
    # the token is nowhere on the volume: not in .git-credentials, .gitconfig, .git/config, history
    grep = alice.ssh(name, f"grep -rIl '{TOKEN}' ~ 2>/dev/null; ls ~/.git-credentials 2>&1")
    assert TOKEN not in grep.stdout and "No such file" in grep.stdout
    # a wrong token (replaced secret reaches the running environment without a restart)
    alice.cli("secrets", "set", "CORP_TOKEN", input="tok-wrong")
    wait_until(lambda: alice.ssh(name, "cat /run/dev8/secrets/CORP_TOKEN").stdout == "tok-wrong", timeout=60,
               what="reconfigured secret")
    failed = alice.ssh(name, "cd ~/workspace/app && git pull")
    assert failed.returncode != 0 and "Authentication failed" in failed.stderr


def test_credentials_only_for_configured_hosts_and_clone_failure_keeps_environment(git_setup, tmp_path: Path):  # type: ignore[no-untyped-def]
    server, git_server = git_setup
    git_server({"x-access-token": TOKEN})
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "GITHUB_TOKEN", input=TOKEN)
    name = unique("cf")
    created = alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/missing.git",
                        "--git", f"github@{GIT_HOST}:8443")
    assert "! clone: " in created.stdout and "git clone failed" in created.stdout
    assert f"{name} is ready" in created.stdout
    helper = "printf 'protocol=https\\nhost=%s\\n\\n' {} | git credential fill"
    other = alice.ssh(name, "GIT_TERMINAL_PROMPT=0 " + helper.format("evil.example"))
    assert TOKEN not in other.stdout and other.returncode != 0
    mine = alice.ssh(name, helper.format(f"{GIT_HOST}:8443"))
    assert f"password={TOKEN}" in mine.stdout and "username=x-access-token" in mine.stdout
    # a clone that works later is done once: restart does not clone again
    events = alice.http().get(f"/environments/{name}/events", params={"follow": "false"}).json()
    assert any(e["step"] == "clone" and e["status"] == "warning" for e in events)


def test_gh_and_glab_auth_status_succeed_against_the_server_without_a_prompt(
        git_setup, tmp_path: Path, fullstack_image: str):  # type: ignore[no-untyped-def]
    server, git_server = git_setup
    git_server({"octo-dev": TOKEN, "gitlab-dev": TOKEN[::-1]})
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "GHE", input=TOKEN)
    alice.cli("secrets", "set", "GL", input=TOKEN[::-1])
    name = unique("auth")
    alice.cli("create", name, "--image", fullstack_image,
              "--git", f"github@{GIT_HOST}:8443=GHE", "--git", f"gitlab@{GITLAB_HOST}:8443=GL")
    gh = alice.ssh(name, f"gh auth status --hostname {GIT_HOST}:8443 </dev/null", timeout=60)
    assert gh.returncode == 0 and "Logged in to" in gh.stdout + gh.stderr and "octo-dev" in gh.stdout + gh.stderr, \
        gh.stdout + gh.stderr
    glab = alice.ssh(name, f"glab auth status --hostname {GITLAB_HOST}:8443 </dev/null", timeout=60)
    assert glab.returncode == 0 and "Logged in to" in glab.stdout + glab.stderr, glab.stdout + glab.stderr
    assert "gitlab-dev" in glab.stdout + glab.stderr and "api call failed" not in glab.stdout + glab.stderr
    # no token variables in the shells: the CLIs read their tmpfs configs
    env = alice.ssh(name, "env; bash -lc env")
    assert TOKEN not in env.stdout and "GH_TOKEN" not in env.stdout and "GITLAB_TOKEN" not in env.stdout
    # a wrong token: the server refuses and both CLIs say so
    alice.cli("secrets", "set", "GHE", input="wrong")
    alice.cli("secrets", "set", "GL", input="wrong")
    wait_until(lambda: alice.ssh(name, "cat /run/dev8/secrets/GL").stdout == "wrong", timeout=60,
               what="reconfigured secrets")
    bad_gh = alice.ssh(name, f"gh auth status --hostname {GIT_HOST}:8443", timeout=60)
    assert bad_gh.returncode == 1 and "token in" in bad_gh.stdout + bad_gh.stderr, bad_gh.stdout + bad_gh.stderr
    # glab exits 0 either way (its "status" is informational); it reports the refusal in words
    bad_glab = alice.ssh(name, f"glab auth status --hostname {GITLAB_HOST}:8443", timeout=60)
    assert "401" in bad_glab.stdout + bad_glab.stderr and "gitlab-dev" not in bad_glab.stdout + bad_glab.stderr


def test_dotfiles_are_cloned_with_the_environments_git_login_and_installed_once(git_setup, tmp_path: Path):  # type: ignore[no-untyped-def]
    server, git_server = git_setup
    repo_container = git_server({"x-access-token": TOKEN})
    seed = ("set -e; d=/tmp/dots; git init -q -b main $d; cd $d; "
            "printf 'echo dotfiles for $(whoami)\\necho \"alias ll=ls\" >> ~/.bash_aliases\\n' > install.sh; "
            "git add .; git -c user.name=t -c user.email=t@t commit -qm dots; "
            "git clone -q --bare $d /srv/git/alice/dotfiles.git")
    assert repo_container.exec_run(["sh", "-c", seed]).exit_code == 0
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "CORP_TOKEN", input=TOKEN)
    login = f"github@{GIT_HOST}:8443=CORP_TOKEN"
    early = unique("early")
    alice.cli("create", early, "--git", login)  # before any dotfiles: it never gets them unasked
    bad = alice.cli("dotfiles", "set", "ftp://example.com/dots", check=False)
    assert bad.returncode == 1 and "invalid repository URL" in bad.stderr
    alice.cli("dotfiles", "set", f"https://{GIT_HOST}:8443/alice/dotfiles.git")
    assert alice.cli("dotfiles", "show").stdout.strip() == f"https://{GIT_HOST}:8443/alice/dotfiles.git"
    name = unique("dots")
    created = alice.cli("create", name, "--git", login)
    assert "✓ dotfiles" in created.stdout and "ran install.sh: dotfiles for dev" in created.stdout, created.stdout
    assert alice.ssh(name, "cat ~/.bash_aliases").stdout == "alias ll=ls\n"
    alice.cli("restart", name)  # once per home: not again
    assert alice.ssh(name, "cat ~/.bash_aliases").stdout == "alias ll=ls\n"
    # an environment created before: not at its next start, only when asked to
    alice.cli("restart", early)
    assert alice.ssh(early, "ls -a ~").stdout.split().count(".dotfiles") == 0
    applied = alice.cli("dotfiles", "apply", early)
    assert "✓ dotfiles" in applied.stdout and "ran install.sh" in applied.stdout, applied.stdout
    assert alice.ssh(early, "cat ~/.bash_aliases").stdout == "alias ll=ls\n"
    # a repository that cannot be cloned is a warning; the environment is ready all the same
    alice.cli("dotfiles", "set", f"https://{GIT_HOST}:8443/alice/missing.git")
    other = unique("dots")
    broken = alice.cli("create", other, "--git", login)
    assert "! dotfiles: dev8-env dotfiles failed" in broken.stdout and f"{other} is ready" in broken.stdout, broken.stdout
    alice.cli("dotfiles", "clear")
    assert alice.cli("dotfiles", "show").stdout.strip() == "no dotfiles repository"


DEVCONTAINER = """{
  // a repository's dev container, as VS Code writes them: comments and trailing commas
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "containerEnv": {"APP_ENV": "dev"},
  "forwardPorts": [8000],
  "portsAttributes": {"8000": {"label": "API"}},
  "postCreateCommand": "echo created >> ~/created.log",
  "postStartCommand": ["sh", "-c", "echo \\"$APP_ENV\\" >> ~/started.log"],
}
"""


def test_a_repositorys_devcontainer_json_sets_variables_commands_and_port_labels(git_setup, tmp_path: Path):  # type: ignore[no-untyped-def]
    server, git_server = git_setup
    repo_container = git_server({"x-access-token": TOKEN})
    seed = ("set -e; d=/tmp/dc; git init -q -b main $d; mkdir $d/.devcontainer; "
            "cp /srv/tls/devcontainer.json $d/.devcontainer/; cd $d; git add .; "
            "git -c user.name=t -c user.email=t@t commit -qm dc; git clone -q --bare $d /srv/git/org/dc.git")
    (tmp_path / "tls" / "devcontainer.json").write_text(DEVCONTAINER)  # the container sees tls/ as /srv/tls
    assert repo_container.exec_run(["sh", "-c", seed]).exit_code == 0
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "CORP_TOKEN", input=TOKEN)
    name = unique("dc")
    out = alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/dc.git",
                    "--git", f"github@{GIT_HOST}:8443=CORP_TOKEN").stdout
    assert "✓ devcontainer (.devcontainer/devcontainer.json: 1 variables, 1 forwarded ports" in out, out
    assert "! devcontainer: features is not used" in out  # reported, not silently ignored
    assert "✓ lifecycle" in out and f"{name} is ready" in out, out
    assert alice.ssh(name, "echo $APP_ENV").stdout.strip() == "dev"
    alice.ssh(name, "nohup python3 -m http.server 8000 >/dev/null 2>&1 &")
    wait_until(lambda: any(p["port"] == 8000 for p in alice.http().get(f"/environments/{name}/ports").json()["ports"]),
               timeout=30, what="port 8000")
    ports = alice.http().get(f"/environments/{name}/ports").json()["ports"]
    assert [p["label"] for p in ports if p["port"] == 8000] == ["API"]
    alice.cli("restart", name)  # created once per home; started at every start
    assert alice.ssh(name, "cat ~/created.log ~/started.log").stdout.split() == ["created", "dev", "dev"]


def test_a_devcontainer_dockerfile_is_built_with_dev8s_layer_and_the_environment_moves_onto_it(
        git_setup, tmp_path: Path, docker_client):  # type: ignore[no-untyped-def]
    """The repository's Dockerfile (FROM a plain Debian image, as a team's would be) is built,
    dev8's layer (sshd, the dev user, dev8-env) goes on top, and the environment restarts on
    the result with its home (the clone) kept."""
    from dev8.runtimes.docker_images import DEFAULT_BASE_IMAGE, FALLBACK_BASE_IMAGE
    debian = next(n for n in (DEFAULT_BASE_IMAGE, FALLBACK_BASE_IMAGE) if docker_client.images.list(name=n))
    server, git_server = git_setup
    repo_container = git_server({"x-access-token": TOKEN})
    files = {"devcontainer.json": '{"build": {"dockerfile": "Dockerfile", "args": {"FLAVOUR": "team"}}}',
             "Dockerfile": f"FROM {debian}\nARG FLAVOUR\nRUN echo \"built for $FLAVOUR\" > /etc/from-the-dockerfile\n"}
    for name, text in files.items():
        (tmp_path / "tls" / name).write_text(text)  # the git container sees tls/ as /srv/tls
    seed = ("set -e; d=/tmp/img; git init -q -b main $d; mkdir $d/.devcontainer; "
            "cp /srv/tls/devcontainer.json /srv/tls/Dockerfile $d/.devcontainer/; cd $d; git add .; "
            "git -c user.name=t -c user.email=t@t commit -qm img; git clone -q --bare $d /srv/git/org/img.git")
    assert repo_container.exec_run(["sh", "-c", seed]).exit_code == 0
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "CORP_TOKEN", input=TOKEN)
    name = unique("img")
    out = alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/img.git",
                    "--git", f"github@{GIT_HOST}:8443=CORP_TOKEN", timeout=1200).stdout
    assert "✓ devcontainer-image (restarting on dev8-dc/" in out and f"{name} is ready" in out, out
    env = alice.http().get(f"/environments/{name}").json()
    assert env["image"].startswith("dev8-dc/")
    assert alice.ssh(name, "cat /etc/from-the-dockerfile").stdout.strip() == "built for team"
    assert alice.ssh(name, "ls ~/workspace/img/.devcontainer").stdout.split() == ["Dockerfile", "devcontainer.json"]
    alice.cli("restart", name)  # built once: a restart keeps the image
    assert alice.http().get(f"/environments/{name}").json()["image"] == env["image"]
    events = alice.http().get(f"/environments/{name}/events", params={"follow": "false", "last": 500}).json()
    assert sum(1 for e in events if e["step"] == "devcontainer-image" and e["status"] == "ok") == 1
