"""The fullstack image for real: every tool as user dev, code-server through the SSH
transport, AI keys only for the AI CLIs, gh/glab logins from the tmpfs, the supervisor."""
from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.support import FULLSTACK, Dev8Server, User, free_port, unique, wait_until

ANTHROPIC = "sk-ant-test-" + "9" * 24


@pytest.fixture
def fs_env(server: Dev8Server, alice: User, fullstack_image: str) -> str:
    alice.cli("secrets", "set", "ANTHROPIC", input=ANTHROPIC)
    alice.cli("secrets", "set", "GHE_TOKEN", input="ghe-token-123")
    alice.cli("secrets", "set", "GL_TOKEN", input="glab-token-456")
    name = unique("fs")
    alice.cli("create", name, "--image", fullstack_image, "--anthropic-key", "ANTHROPIC",
              "--git", "github@ghe.corp.test=GHE_TOKEN", "--git", "gitlab@gitlab.corp.test=GL_TOKEN")
    return name


def version(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    assert m, text
    return tuple(int(x or 0) for x in m.groups())


def test_every_tool_runs_for_dev_in_plain_and_login_shells(alice: User, fs_env: str):
    checks = {"node --version": (22,), "bun --version": (1,), "python3 --version": (3, 11), "go version": (1, 22),
              "rustc --version": (1, 80), "cargo --version": (1, 80), "gh --version": (2,), "glab --version": (1,),
              "git --version": (2,), "code-server --version": (4,), "claude --version": (1,),
              "gemini --version": (0,), "copilot --version": (0,)}
    for wrap in ("{}", "bash -lc '{}'"):
        script = "; ".join(f"echo \"@@{cmd}@@$({cmd} 2>&1 | head -n1)\"" for cmd in checks)
        r = alice.ssh(fs_env, wrap.format(script.replace("'", "'\\''")) if "bash" in wrap else script, timeout=180)
        found = dict(re.findall(r"@@(.+?)@@(.*)", r.stdout))
        for cmd, minimum in checks.items():
            assert cmd in found and version(found[cmd]) >= minimum, (wrap, cmd, found.get(cmd), r.stderr)
    assert alice.ssh(fs_env, "id -un").stdout.strip() == "dev"


def test_ai_keys_only_reach_the_ai_cli_that_was_given_one(alice: User, fs_env: str):
    shells = alice.ssh(fs_env, "echo ${ANTHROPIC_API_KEY:-unset}; bash -lc 'echo ${ANTHROPIC_API_KEY:-unset}'")
    assert shells.stdout.split() == ["unset", "unset"]
    # a running claude process (it cannot reach the API here, so it soon exits) has the key in
    # its environment; gemini, given no key, has none. Sample /proc while they run.
    probe = ("claude -p hi >/dev/null 2>&1 & gemini -p hi >/dev/null 2>&1 & "
             "for i in $(seq 100); do for p in $(pgrep -u dev -f 'claude|gemini'); do "
             "tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -E '^(ANTHROPIC|GEMINI)_API_KEY='; "
             "tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -o 'bin/gemini'; done; sleep 0.03; done "
             "| sort -u; kill %1 %2 2>/dev/null; true")
    out = alice.ssh(fs_env, probe, timeout=60).stdout
    assert f"ANTHROPIC_API_KEY={ANTHROPIC}" in out, out
    assert "bin/gemini" in out  # gemini's process was seen
    assert "GEMINI_API_KEY=" not in out


def test_gh_and_glab_logins_come_from_the_tmpfs(alice: User, fs_env: str):
    r = alice.ssh(fs_env, "gh auth token --hostname ghe.corp.test; glab config get token --host gitlab.corp.test")
    assert r.stdout.split() == ["ghe-token-123", "glab-token-456"], r.stderr
    leaked = alice.ssh(fs_env, "grep -rIl -e ghe-token-123 -e glab-token-456 ~ /etc /tmp 2>/dev/null; true")
    assert leaked.stdout.strip() == ""


def test_code_server_answers_through_the_ssh_transport(alice: User, fs_env: str):
    local = free_port()
    fwd = subprocess.Popen([*alice.ssh_args(fs_env)[:-1], "-N", "-L", f"{local}:127.0.0.1:13337",
                            alice.ssh_args(fs_env)[-1]], stderr=subprocess.PIPE)
    try:
        page = wait_until(lambda: httpx.get(f"http://127.0.0.1:{local}/", follow_redirects=True, timeout=10),
                          timeout=60, what="code-server workbench")
        assert page.status_code == 200 and "workbench" in page.text.lower()
    finally:
        fwd.terminate()
        fwd.wait(10)


def test_supervisor_restarts_services_and_show_reports_health(alice: User, fs_env: str):
    health = alice.http().get(f"/environments/{fs_env}/health").json()
    assert health["services"] == {"code-server": "up", "sshd": "up"}
    alice.ssh(fs_env, "sudo pkill -f 'code-server/out/node/entry' ; sudo pkill -f 'lib/node_modules/code-server'")

    def back() -> bool:
        r = alice.ssh(fs_env, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:13337/healthz")
        return r.stdout.strip() == "200"
    wait_until(back, timeout=15, interval=0.2, what="code-server restarted")
    assert "code-server up" in alice.cli("show", fs_env).stdout


def test_secrets_stay_out_of_inspect_and_image_history(server: Dev8Server, fs_env: str, docker_client):  # type: ignore[no-untyped-def]
    [c] = docker_client.containers.list(filters={"label": f"dev8.installation={server.installation()}"})
    assert ANTHROPIC not in json.dumps(c.attrs)
    history = json.dumps(docker_client.images.get(FULLSTACK).history())
    assert ANTHROPIC not in history and "ghe-token-123" not in history
    assert ANTHROPIC not in server.log()


def test_extensions_listed_at_create_are_installed_and_copilot_is_enabled_with_a_token(
        alice: User, fullstack_image: str, tmp_path):  # type: ignore[no-untyped-def]
    from tests.support import make_vsix
    hello = make_vsix(tmp_path / "hello.vsix")
    copilot = make_vsix(tmp_path / "copilot.vsix", publisher="GitHub", name="copilot")
    alice.cli("secrets", "set", "COPILOT", input="ghu_copilot_token")
    name = unique("ext")
    created = alice.cli("create", name, "--image", fullstack_image, "--extension", "~/hello.vsix",
                        "--extension", "copilot.vsix", "--copilot-token", "COPILOT")
    # not there on the first start: a warning, and the environment is still ready
    assert "! extensions: " in created.stdout and f"{name} is ready" in created.stdout
    settings = "cat ~/.local/share/code-server/User/settings.json 2>/dev/null || echo none"
    assert "github.copilot.enable" not in alice.ssh(name, settings).stdout  # not installed yet
    ssh = alice.ssh_args(name)
    for local, remote in ((hello, "hello.vsix"), (copilot, "workspace/copilot.vsix")):
        subprocess.run(["scp", "-P", ssh[2], *ssh[3:-1], str(local), f"{ssh[-1]}:{remote}"], check=True,
                       capture_output=True, timeout=60)
    again = alice.cli("env", "reconfigure", name)
    assert "✓ extensions (installed ~/hello.vsix, copilot.vsix)" in again.stdout, again.stdout
    listed = alice.ssh(name, "code-server --user-data-dir ~/.local/share/code-server --list-extensions")
    assert {"dev8test.hello", "github.copilot"} <= set(listed.stdout.lower().split())
    assert json.loads(alice.ssh(name, settings).stdout)["github.copilot.enable"] == {"*": True}


def test_vscode_workbench_loads_through_the_proxy(server: Dev8Server, alice: User, fs_env: str):
    """The workbench and its assets through dev8's proxy, over the environment's SSH (the
    path form with a token; browsers get the same on VS Code's own host: test_chromium)."""
    client = alice.script()
    client.timeout, client.follow_redirects = httpx.Timeout(60), True  # code-server adds its folder
    base = f"/@{alice.username}/{fs_env}/apps/vscode/"
    page = client.get(base, headers={"accept": "text/html"})
    assert page.status_code == 200 and "workbench" in page.text.lower()
    assets = re.findall(r'(?:src|href)="(\./[^"]+\.(?:js|css|png))"', page.text)
    assert assets, page.text[:2000]
    asset = client.get(str(page.url.join(assets[0])))
    assert asset.status_code == 200 and len(asset.content) > 1000


def test_extensions_come_from_the_configured_marketplace(tmp_path, test_network: str, fullstack_image: str,  # type: ignore[no-untyped-def]
                                                        docker_client):
    from tests.support import REPO, make_vsix
    vsix_dir = tmp_path / "vsix"
    vsix_dir.mkdir()
    make_vsix(vsix_dir / "dev8test.greeter-1.2.3.vsix", name="greeter", version="1.2.3")
    url = "http://gallery.corp.test:8300"
    gallery = docker_client.containers.run(
        "dev8/base:latest", ["python3", "/srv/gallery.py"], entrypoint=[], detach=True, user="root",
        environment={"GALLERY_URL": url}, volumes={str(REPO / "tests" / "gallery.py"): {"bind": "/srv/gallery.py",
                                                                                       "mode": "ro"},
                                                  str(vsix_dir): {"bind": "/srv/vsix", "mode": "ro"}})
    docker_client.networks.get(test_network).connect(gallery, aliases=["gallery.corp.test"])
    server = Dev8Server(tmp_path / "server", extra_env={
        "DEV8_RUNTIME_NETWORK": test_network,
        "DEV8_EXTENSIONS_GALLERY": json.dumps({"serviceUrl": f"{url}/api", "itemUrl": f"{url}/item"})}).start()
    try:
        alice = User(server, "alice@example.com", tmp_path / "alice")
        name = unique("mk")
        created = alice.cli("create", name, "--image", fullstack_image, "--extension", "dev8test.greeter",
                            "--extension", "dev8test.missing")
        assert "! extensions: " in created.stdout and "could not install: dev8test.missing" in created.stdout
        assert f"{name} is ready" in created.stdout
        listed = alice.ssh(name, "code-server --user-data-dir ~/.local/share/code-server --list-extensions "
                                 "--show-versions")
        assert "dev8test.greeter@1.2.3" in listed.stdout
        log = gallery.logs().decode()
        assert "GET /api/vscode/dev8test/greeter/latest" in log and "VSIXPackage" in log
        # the VS Code service itself browses the same marketplace
        service_env = alice.ssh(name, "for p in $(pgrep -u dev -f code-server); do tr '\\0' '\\n' "
                                      "< /proc/$p/environ 2>/dev/null; done | grep -m1 EXTENSIONS_GALLERY")
        assert f"{url}/api" in service_env.stdout
    finally:
        server.shutdown()
        gallery.remove(force=True)


def test_vscode_opens_without_welcome_page_chat_panel_or_telemetry_unless_the_user_wants_them(
        alice: User, fs_env: str):
    settings = "~/.local/share/code-server/User/settings.json"
    user = json.loads(alice.ssh(fs_env, f"cat {settings}").stdout)
    assert user["workbench.startupEditor"] == "none" and user["telemetry.telemetryLevel"] == "off"
    assert user["workbench.secondarySideBar.defaultVisibility"] == "hidden"
    assert user["security.workspace.trust.enabled"] is False
    # nothing of it in the machine settings, which would override the user's own
    assert json.loads(alice.ssh(fs_env, "cat ~/.local/share/code-server/Machine/settings.json").stdout) == {}
    # the user's settings are theirs: what they change stays through a reconfigure and a restart
    alice.ssh(fs_env, f"sed -i 's/\"workbench.startupEditor\": \"none\"/\"workbench.startupEditor\": \"welcomePage\"/' "
                      f"{settings}")
    alice.cli("env", "reconfigure", fs_env)
    alice.cli("restart", fs_env)
    assert json.loads(alice.ssh(fs_env, f"cat {settings}").stdout)["workbench.startupEditor"] == "welcomePage"
