import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dev8.envimage.dev8_env as helper

HELPER = Path(helper.__file__)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """An instance's run dir as the images give it: memory-backed (configure refuses a disk)."""
    path = Path(tempfile.mkdtemp(prefix="dev8-test-run-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(run_dir: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DEV8_RUN_DIR": str(run_dir)}
    return subprocess.run([sys.executable, str(HELPER), *args], input=input, capture_output=True, text=True, env=env)


def test_configure_writes_private_files_and_removes_stale_ones(run_dir):
    r = run(run_dir, "configure", input=json.dumps({"secrets": {"A": "one", "B": "two"}, "environment": "web"}))
    assert r.returncode == 0, r.stderr
    sdir = run_dir / "secrets"
    assert (sdir / "A").read_text() == "one"
    assert stat.S_IMODE((sdir / "A").stat().st_mode) == 0o600
    assert stat.S_IMODE(sdir.stat().st_mode) == 0o700
    config = json.loads((run_dir / "config.json").read_text())
    assert config == {"environment": "web", "secret_names": ["A", "B"]}
    assert "one" not in (run_dir / "config.json").read_text()
    r = run(run_dir, "configure", input=json.dumps({"secrets": {"B": "new"}}))
    assert r.returncode == 0
    assert sorted(os.listdir(sdir)) == ["B"] and (sdir / "B").read_text() == "new"
    assert json.loads(run(run_dir, "status").stdout) == {"configured": True, "secret_names": ["B"]}


def test_configure_starts_no_process_and_imports_neither_subprocess_nor_tempfile(run_dir):
    """configure runs at every start of an environment: importing subprocess (and tempfile,
    which pulls in shutil, lzma and bz2) was over half of its start; a regression shows here."""
    probe = ("import json, sys\n"
             "sys.argv = ['dev8-env', 'configure']\n"
             f"code = compile(open({str(HELPER)!r}).read(), 'dev8-env', 'exec')\n"
             "try:\n    exec(code, {'__name__': '__main__'})\n"
             "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
             "print(json.dumps(sorted(m for m in ('subprocess', 'tempfile', 'shutil', 'typing') if m in sys.modules)),"
             " file=sys.stderr)\n")
    env = {**os.environ, "DEV8_RUN_DIR": str(run_dir)}
    r = subprocess.run([sys.executable, "-I", "-S", "-c", probe], input=json.dumps({"secrets": {"A": "one"}}),
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (run_dir / "secrets" / "A").read_text() == "one"
    assert json.loads(r.stderr.strip().splitlines()[-1]) == []


def test_configure_rejects_bad_names_without_writing(run_dir):
    r = run(run_dir, "configure", input=json.dumps({"secrets": {"../evil": "x"}}))
    assert r.returncode == 1 and "invalid secret entry" in r.stderr
    assert not (run_dir / "secrets").exists() or not os.listdir(run_dir / "secrets")
    assert run(run_dir, "nope").returncode == 2


def test_listening_ports_from_proc_net(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(header +
        "   0: 0100007F:1FA4 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 1 1\n"   # 127.0.0.1:8100 listen
        "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 2 1\n"   # 0.0.0.0:22 listen
        "   2: 0100007F:1FA4 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000 0 3 1\n"   # established
        "   3: 0B00007F:A0E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 5 1\n"   # Docker's DNS resolver
        "   4: 0500007F:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 6 1\n")  # 127.0.0.5:5001
    (tmp_path / "tcp6").write_text(header +
        "   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 4 1\n"
        "   1: 00000000000000000000000001000000:1770 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 7 1\n"  # [::1]:6000
        "   2: 0000000000000000FFFF00000100007F:1771 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 8 1\n")
    assert helper.listening_ports(str(tmp_path)) == {"ports": [{"port": 3000, "bind": "all"},
                                                               {"port": 5001, "bind": "loopback"},
                                                               {"port": 6000, "bind": "loopback"},
                                                               {"port": 6001, "bind": "loopback"},
                                                               {"port": 8100, "bind": "loopback"}]}


PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def test_extra_ca_certificates_arrive_with_the_configuration_and_join_the_system_bundle(run_dir):
    r = run(run_dir, "configure", input=json.dumps({"secrets": {}, "ca_certificates": PEM}))
    assert r.returncode == 0, r.stderr
    bundle = (run_dir / "ca-bundle.crt").read_text()
    assert bundle.endswith(PEM) and len(bundle) > len(PEM)  # the system's CAs first
    assert run(run_dir, "configure", input=json.dumps({"secrets": {}})).returncode == 0
    assert PEM not in (run_dir / "ca-bundle.crt").read_text()  # taken away again


def test_ca_certificates_that_are_not_pem_change_nothing(run_dir):
    r = run(run_dir, "configure", input=json.dumps({"secrets": {"A": "x"}, "ca_certificates": "not a cert"}))
    assert r.returncode == 1 and "PEM" in r.stderr
    assert not (run_dir / "secrets").exists() and not (run_dir / "ca-bundle.crt").exists()


def test_secrets_are_refused_where_memory_does_not_hold_them(tmp_path):
    r = run(tmp_path, "configure", input=json.dumps({"secrets": {"TOKEN": "s3cr3t"}}))
    assert r.returncode == 1 and "is not memory-backed" in r.stderr and "s3cr3t" not in r.stderr, r.stderr
    assert not (tmp_path / "secrets").exists() and not (tmp_path / "config.json").exists()


def test_a_full_tmpfs_is_an_error_naming_the_secret_sizes_never_values(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(run_dir)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (run_dir / "junk").write_bytes(b"x" * 40 * 1024)  # what filled it: not dev8's
        value = "s3cr3t-" + "v" * 30 * 1024
        r = run(run_dir, "configure", input=json.dumps({"secrets": {"BIG_TOKEN": value, "SMALL": "x"}}))
        assert r.returncode == 1
        assert "is full (64 KiB" in r.stderr and "BIG_TOKEN 30 KiB" in r.stderr and "du -a" in r.stderr, r.stderr
        assert "s3cr3t" not in r.stderr
    finally:
        subprocess.run(["umount", str(run_dir)], check=True)


def _repo(path: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
        if name in executable:
            (path / name).chmod(0o755)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "dotfiles"], check=True, env=env)
    return f"file://{path}"


def dotfiles(tmp_path: Path, url: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"dotfiles": {"url": url, "branch": None}}))
    env = {**os.environ, "DEV8_RUN_DIR": str(run_dir), "HOME": str(home)}
    return subprocess.run([sys.executable, str(HELPER), "dotfiles"], capture_output=True, text=True, env=env)


def test_dotfiles_run_the_first_install_script_once(tmp_path):
    url = _repo(tmp_path / "repo", {"install.sh": "echo installing; touch \"$HOME/ran-install\"\n",
                                    "setup.sh": "touch \"$HOME/ran-setup\"\n", ".bashrc": "x\n"})
    r = dotfiles(tmp_path, url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"reason": "ran install.sh: installing"}
    home = tmp_path / "home"
    assert (home / "ran-install").exists() and not (home / "ran-setup").exists()  # the first one only
    assert not (home / ".bashrc").exists()  # a script decides what goes where
    assert (home / ".dotfiles.log").read_text().strip() == "installing"
    again = dotfiles(tmp_path, url)
    assert json.loads(again.stdout) == {"reason": "already installed in ~/.dotfiles"}


def test_dotfiles_without_a_script_are_linked_and_the_homes_own_files_kept(tmp_path):
    url = _repo(tmp_path / "repo", {".vimrc": "set nu\n", ".bashrc": "theirs\n", "README.md": "x\n",
                                    ".gitignore": "x\n"})
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("mine\n")
    r = dotfiles(tmp_path, url)
    assert json.loads(r.stdout) == {"reason": "linked .vimrc; kept the home's own .bashrc"}
    home = tmp_path / "home"
    assert (home / ".vimrc").is_symlink() and (home / ".vimrc").read_text() == "set nu\n"
    assert (home / ".bashrc").read_text() == "mine\n" and not (home / "README.md").exists()


def test_a_failing_install_script_is_an_error_with_its_output(tmp_path):
    url = _repo(tmp_path / "repo", {"bootstrap.sh": "echo missing-tool >&2; exit 3\n"}, executable=("bootstrap.sh",))
    r = dotfiles(tmp_path, url)
    assert r.returncode == 1 and "bootstrap.sh failed (exit 3): missing-tool" in r.stderr, r.stderr
    bad = dotfiles(tmp_path / "other", "file:///nonexistent/dotfiles.git")
    assert bad.returncode == 1 and "git clone of file:///nonexistent/dotfiles.git failed" in bad.stderr


def test_vscode_user_settings_are_seeded_once_and_then_the_users(tmp_path, monkeypatch):
    monkeypatch.setattr(helper, "CODE_SERVER_DATA", str(tmp_path))
    settings = tmp_path / "User" / "settings.json"
    helper._seed_user_settings()
    assert json.loads(settings.read_text()) == helper.USER_DEFAULTS
    assert helper.USER_DEFAULTS["security.workspace.trust.enabled"] is False
    # the user turns trust back on and drops a default: neither comes back
    mine = {k: v for k, v in helper.USER_DEFAULTS.items() if k != "workbench.tips.enabled"}
    settings.write_text(json.dumps({**mine, "security.workspace.trust.enabled": True}))
    helper._seed_user_settings()
    assert json.loads(settings.read_text()) == {**mine, "security.workspace.trust.enabled": True}


def test_an_older_homes_settings_get_the_defaults_under_the_users_own_values(tmp_path, monkeypatch):
    monkeypatch.setattr(helper, "CODE_SERVER_DATA", str(tmp_path))
    settings = tmp_path / "User" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"github.copilot.enable": {"*": True}, "telemetry.telemetryLevel": "all"}))
    helper._seed_user_settings()
    got = json.loads(settings.read_text())
    assert got["github.copilot.enable"] == {"*": True} and got["telemetry.telemetryLevel"] == "all"  # theirs
    assert got["security.workspace.trust.enabled"] is False and got["workbench.startupEditor"] == "none"


def test_a_settings_file_with_comments_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(helper, "CODE_SERVER_DATA", str(tmp_path))
    settings = tmp_path / "User" / "settings.json"
    settings.parent.mkdir()
    text = '// mine\n{"security.workspace.trust.enabled": true,}\n'
    settings.write_text(text)
    helper._seed_user_settings()
    helper._enable_copilot({"github.copilot"})  # json cannot read it: not replaced
    assert settings.read_text() == text


def test_health_reads_runits_state_files_without_sudo(tmp_path):
    for name, state in (("sshd", "run\n"), ("code-server", "down\n"), ("other", "run, want down\n")):
        (tmp_path / name / "supervise").mkdir(parents=True)
        (tmp_path / name / "supervise" / "stat").write_text(state)
    assert helper.health(str(tmp_path)) == {"services": {"code-server": "down", "other": "up", "sshd": "up"}}


def _in_home(tmp_path: Path, config: dict) -> dict[str, str]:
    """An environment for dev8-env with its own home, workspace and run dir holding ``config``."""
    home, run_dir = tmp_path / "home", tmp_path / "run"
    (home / "workspace").mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    return {**os.environ, "DEV8_RUN_DIR": str(run_dir), "HOME": str(home), "DEV8_WORKSPACE": str(home / "workspace")}


def test_create_commands_run_once_when_a_second_server_runs_the_step_while_the_first_still_does(tmp_path):
    """A dev8 replica died during the lifecycle step; the one taking over runs it again while
    the first run goes on in the environment (its SSH session gone, not its process)."""
    env = _in_home(tmp_path, {"devcontainer": {"once": ["echo run >> \"$HOME/created\"; sleep 1"],
                                               "on_start": []}})
    first = subprocess.Popen([sys.executable, str(HELPER), "lifecycle"], env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (tmp_path / "home" / "created").exists():
        assert time.monotonic() < deadline, "the first run never started its command"
        time.sleep(0.02)
    second = subprocess.run([sys.executable, str(HELPER), "lifecycle"], env=env, capture_output=True, text=True)
    assert first.wait(20) == 0 and second.returncode == 0, second.stderr
    assert (tmp_path / "home" / "created").read_text() == "run\n"
    assert json.loads(second.stdout) == {"reason": "nothing to run"}  # it waited, then found it done


def test_a_clone_cut_half_way_is_never_taken_for_the_repository(tmp_path):
    url = _repo(tmp_path / "src", {"README.md": "the real one\n"})
    env = _in_home(tmp_path, {"repo": {"url": url, "branch": None}})
    workspace = tmp_path / "home" / "workspace"
    (workspace / "src.dev8-partial" / ".git").mkdir(parents=True)  # an instance stopped mid-clone left it
    r = subprocess.run([sys.executable, str(HELPER), "clone"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["cloned"] is True and answer["path"] == str(workspace / "src") and len(answer["commit"]) == 40
    assert (workspace / "src" / "README.md").read_text() == "the real one\n"
    assert sorted(p.name for p in workspace.iterdir()) == ["src"]
    bad = _in_home(tmp_path / "bad", {"repo": {"url": "file:///nonexistent/repo.git", "branch": None}})
    failed = subprocess.run([sys.executable, str(HELPER), "clone"], env=bad, capture_output=True, text=True)
    assert failed.returncode == 1 and "git clone failed" in failed.stderr
    assert list((tmp_path / "bad" / "home" / "workspace").iterdir()) == []  # nothing half made


def test_git_gets_each_configured_hosts_token_from_the_tmpfs_and_no_other_hosts(run_dir, tmp_path):
    token = "ghp_" + "s3cr3t'\"$(x)" * 3  # quotes and $(...) are data, not shell
    config = {"git": {"providers": [{"kind": "github", "host": "GitHub.com", "secret": "GH"},
                                    {"kind": "gitlab", "host": "git.corp.test:8443", "secret": "GL", "username": "me"}]},
              "secrets": {"GH": token, "GL": "glpat-1"}}
    assert run(run_dir, "configure", input=json.dumps(config)).returncode == 0
    assert token not in (run_dir / "gitconfig").read_text()
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(run_dir / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)}

    def fill(url: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "credential", "fill"], input=f"url={url}\n\n", capture_output=True, text=True,
                              env=env)
    got = dict(line.split("=", 1) for line in fill("https://github.com/org/app.git").stdout.splitlines())
    assert (got["username"], got["password"]) == ("x-access-token", token)
    got = dict(line.split("=", 1) for line in fill("https://git.corp.test:8443/g/app.git").stdout.splitlines())
    assert (got["username"], got["password"]) == ("me", "glpat-1")
    assert fill("https://evil.example/org/app.git").returncode != 0  # no token for a host not configured
    assert fill("https://git.corp.test/g/app.git").returncode != 0  # nor another port of a configured one
    (run_dir / "secrets" / "GH").unlink()  # a token gone: git asks (and, here, fails), no empty password
    assert fill("https://github.com/org/app.git").returncode != 0
