"""The whole user path against a real `dev8 server`, real Docker and the real OpenSSH client."""
from __future__ import annotations

import json
import stat
import subprocess
import time

import docker

from tests.support import Dev8Server, User, unique, wait_until


def env_containers(client: docker.DockerClient, server: Dev8Server) -> list:
    return client.containers.list(all=True, filters={"label": f"dev8.installation={server.installation()}"})


def env_volumes(client: docker.DockerClient, server: Dev8Server) -> list:
    return client.volumes.list(filters={"label": f"dev8.installation={server.installation()}"})


def test_create_shows_progress_and_ssh_runs_commands_with_exit_codes(server: Dev8Server, alice: User,
                                                                     docker_client: docker.DockerClient):
    name = unique("e")
    alice.cli("secrets", "set", "API_TOKEN", input="tok-1234567890-secret\n")
    listed = alice.cli("secrets", "list").stdout
    assert "API_TOKEN" in listed and "tok-1234567890-secret" not in listed
    created = alice.cli("create", name, "--secret", "API_TOKEN", "--cpus", "1", "--memory", "1g")
    for step in ("image", "start", "host-key", "sshd", "configure", "ready"):
        assert f"✓ {step}" in created.stdout, created.stdout
    r = alice.ssh(name, "id -un; cat /run/dev8/secrets/API_TOKEN; echo; stat -c %a /run/dev8/secrets/API_TOKEN; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.split() == ["dev", "tok-1234567890-secret", "600"]
    # the same through `dev8 ssh NAME -- command`
    r = alice.cli("ssh", name, "-i", str(alice.key), "--", "echo", "via-cli", "&&", "false", check=False)
    assert r.stdout.strip() == "via-cli" and r.returncode == 1
    # resource limits, labels and only sshd published on loopback
    [container] = env_containers(docker_client, server)
    attrs = container.attrs
    assert attrs["HostConfig"]["NanoCpus"] == 1_000_000_000 and attrs["HostConfig"]["Memory"] == 1 << 30
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    bindings = attrs["HostConfig"]["PortBindings"]
    assert list(bindings) == ["22/tcp"] and bindings["22/tcp"][0]["HostIp"] == "127.0.0.1"
    assert container.labels["dev8.owner"] and container.labels["dev8.env-id"]
    # the secret is nowhere but the tmpfs: not in inspect, not in the volume, not in server logs
    assert "tok-1234567890-secret" not in json.dumps(attrs)
    grep = subprocess.run(["docker", "exec", container.id, "grep", "-rl", "tok-1234567890-secret", "/home/dev", "/etc",
                           "/tmp", "/var"], capture_output=True, text=True)
    assert grep.stdout == ""
    assert "tok-1234567890-secret" not in server.log()
    # what it uses, as its own cgroup says: a busy loop shows, a 20 MiB file counts in its home
    alice.ssh(name, "head -c 20971520 /dev/zero > ~/big; "
                    "setsid -f timeout 5 sh -c 'while :; do :; done' >/dev/null 2>&1 </dev/null")
    shown = alice.cli("show", name).stdout
    assert "running" in shown and f"ssh -p {server.ssh_port} {name}@127.0.0.1" in shown
    assert "memory" in shown and "of 1 GiB" in shown and "home 20 MiB" in shown, shown
    assert name in alice.cli("list").stdout
    stats = alice.http().get(f"/environments/{name}/stats").json()
    assert (stats["cpu_limit"], stats["memory_limit_bytes"]) == (1.0, 1 << 30), stats
    assert stats["cpu_percent"] > 50 and 0 < stats["memory_bytes"] < 1 << 30, stats
    assert 0 <= stats["uptime_seconds"] < 600 and stats["home_bytes"] >= 20 << 20, stats
    assert stats["disk_total_bytes"] >= stats["disk_free_bytes"] > 0


def test_work_survives_stop_start_restart_recreate_and_newer_image(server: Dev8Server, alice: User,
                                                                    docker_client: docker.DockerClient, base_image: str):
    name = unique("p")
    image = f"dev8-test/{name}:latest"
    docker_client.images.get(base_image).tag(image)
    try:
        alice.cli("create", name, "--image", image)
        r = alice.ssh(name, "echo kept > ~/workspace/file.txt && echo 'export X=1' >> ~/.bashrc && echo ok")
        assert r.stdout.strip() == "ok", r.stderr

        def check(label: str) -> None:
            got = alice.ssh(name, "cat ~/workspace/file.txt; grep -c 'export X=1' ~/.bashrc")
            assert got.stdout.split() == ["kept", "1"], f"after {label}: {got.stdout!r} {got.stderr!r}"

        alice.cli("stop", name)
        assert "stopped" in alice.cli("show", name).stdout
        assert all(c.status != "running" for c in env_containers(docker_client, server))
        # connecting starts it again, and the work is there
        r = alice.ssh(name, "cat ~/workspace/file.txt", timeout=180)
        assert r.returncode == 0 and r.stdout.strip() == "kept", r.stderr
        assert f"dev8: {name} is stopped: starting it" in r.stderr and "dev8: ready ok" in r.stderr, r.stderr
        check("stop, then ssh")
        alice.cli("stop", name)
        alice.cli("start", name)
        check("stop/start")
        first_id = env_containers(docker_client, server)[0].id
        alice.cli("restart", name)
        check("restart")
        # a newer image under the same tag: restart re-creates the container on it
        newer = docker_client.containers.run(image, entrypoint=["sh", "-c", "echo v2 > /etc/dev8-image-version"],
                                             detach=True)
        newer.wait()
        newer.commit(repository=f"dev8-test/{name}", tag="latest",
                     changes=['ENTRYPOINT ["/usr/local/bin/dev8-entrypoint"]'])
        newer.remove()
        alice.cli("restart", name)
        check("newer image")
        assert alice.ssh(name, "cat /etc/dev8-image-version").stdout.strip() == "v2"
        assert env_containers(docker_client, server)[0].id != first_id
        # edited while stopped: other CPUs, memory and image; the container is re-made with them
        alice.cli("stop", name)
        alice.cli("edit", name, "--cpus", "1.5", "--memory", "1536m", "--image", base_image)
        alice.cli("start", name)
        check("edit")
        attrs = env_containers(docker_client, server)[0].attrs
        assert (attrs["HostConfig"]["NanoCpus"], attrs["HostConfig"]["Memory"]) == (1_500_000_000, 1536 << 20)
        assert attrs["Config"]["Image"] == base_image
        assert alice.ssh(name, "cat /etc/dev8-image-version 2>/dev/null || echo none").stdout.strip() == "none"
        # delete the environment but keep the volume, then create it again
        alice.cli("delete", name, "--keep-volume", "--yes")
        assert env_containers(docker_client, server) == []
        assert len(env_volumes(docker_client, server)) == 1
        alice.cli("create", name, "--image", image)
        check("delete --keep-volume and re-create")
        alice.cli("delete", name, "--yes")
        wait_until(lambda: env_volumes(docker_client, server) == [], timeout=30, what="volume removal")
        assert env_containers(docker_client, server) == []
        assert name not in alice.cli("list").stdout
    finally:
        docker_client.images.remove(image, force=True)


def test_a_start_logs_in_once_and_starts_no_process_through_the_engine(server: Dev8Server, alice: User,
                                                                     docker_client: docker.DockerClient):
    """What a start does inside the environment beyond the same container started with
    `docker run` and logged into once (bench/floor.py's floor, which #26 measures against):
    one SSH login (the pinned host key checked, then configure on that connection); no
    `docker exec` (the host key is read from the log); about as many processes as the floor (boot
    timing moves both by a few, so the bound is loose: it catches a step that starts a
    shell script's worth of them). Counts, not times."""
    from bench.floor import floor_batch, processes_started, ssh_logins
    name = unique("e")
    since = time.time() - 1

    def execs() -> list[str]:  # the engine's record of `docker exec`s into the container so far
        events = docker_client.events(since=since, until=time.time() + 1, decode=True,
                                      filters={"container": container.id, "event": "exec_create"})
        return [e["Action"] for e in events]
    alice.cli("create", name)
    [container] = env_containers(docker_client, server)
    assert execs() == []
    assert ssh_logins(container) == 1, container.logs().decode(errors="replace")[-2000:]
    created = processes_started(container)
    host = container.attrs["HostConfig"]
    floor = floor_batch(docker_client, 1, container.attrs["Config"]["Image"], host["NanoCpus"] / 1e9, host["Memory"])
    assert created <= floor.processes[0] + 5, (created, floor.processes)
    alice.cli("stop", name)
    alice.cli("start", name)  # a new run of the container: its own PID namespace, the same log
    container.reload()
    assert len(execs()) == 1  # processes_started's own, above
    assert ssh_logins(container) == 2
    assert processes_started(container) <= floor.processes[0] + 5, floor.processes


def test_restart_policy_and_supervisor_bring_sshd_back(server: Dev8Server, alice: User):
    name = unique("s")
    alice.cli("create", name)
    alice.ssh(name, "sudo pkill -x sshd -o || sudo pkill -f 'sshd -D'")

    def answers() -> bool:
        return alice.ssh(name, "echo back").stdout.strip() == "back"
    wait_until(answers, timeout=30, what="sshd restarted by the supervisor")


def test_a_mistyped_image_is_refused_at_create_with_the_reason(server: Dev8Server, alice: User):
    name = unique("f")
    r = alice.cli("create", name, "--image", "dev8-test/does-not-exist:nope", check=False)
    assert r.returncode == 1 and "dev8-test/does-not-exist:nope is not on this machine" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "http+docker" not in r.stderr.split("(")[0]
    assert alice.http().get(f"/environments/{name}").status_code == 404  # nothing created


def test_first_start_prints_setup_link_and_setup_works(server: Dev8Server):
    line = next(x for x in server.log().splitlines() if "setup?token=" in x)
    token = line.split("setup?token=")[1].split()[0]
    import httpx
    page = httpx.get(line.split()[-1] if line.split()[-1].startswith("http") else server.url + "/setup")
    assert page.status_code == 200 and '<script src="/static/setup.js">' in page.text
    assert "/api/v1/setup" in httpx.get(server.url + "/static/setup.js").text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    r = httpx.post(server.url + "/api/v1/setup", json={"token": token, "email": "root@example.com",
                                                        "password": "correct horse"})
    assert r.status_code == 200
    me = httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {r.json()['token']}"}).json()
    assert me["is_admin"] is True


def test_cli_login_token_file_is_private_and_bad_input_is_clear(server: Dev8Server, alice: User, tmp_path):
    cfg = alice.config_dir / "config.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 not-a-key\n")
    r = alice.cli("keys", "add", str(bad), check=False)
    assert r.returncode == 1 and "not a valid SSH public key" in r.stderr and "Traceback" not in r.stderr
    r = alice.cli("create", "Bad_Name", check=False)
    assert r.returncode == 1 and "invalid environment name" in r.stderr
    r = alice.cli("login", server.url, "--token", "dev8_wrong", check=False)
    assert r.returncode == 1 and "invalid token" in r.stderr
    token = server.cli("admin", "create-token", alice.email, "--expires", "30d", "--name", "ci").stdout
    assert token.strip().startswith("dev8_") and len(token.strip().splitlines()) == 1
    r = server.cli("admin", "create-token", "nobody@example.com", check=False)
    assert r.returncode == 1 and "no user" in r.stderr


def test_events_stream_is_server_sent_events(server: Dev8Server, alice: User):
    import httpx
    name = unique("v")
    alice.cli("create", name)
    with httpx.stream("GET", f"{server.url}/api/v1/environments/{name}/events",
                      headers={"Authorization": f"Bearer {alice.token}"}, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        steps = []
        for line in resp.iter_lines():
            if line.startswith("data:"):
                steps.append(json.loads(line[5:])["step"])
                if steps[-1] == "ready":
                    break
    assert steps[0] == "request" and "sshd" in steps and steps[-1] == "ready"


def test_environment_variables_reach_every_kind_of_shell(server: Dev8Server, alice: User):
    name = unique("v")
    alice.cli("create", name, "--env", "GREETING=hello world", "--env", "APP_ENV=dev")
    shown = alice.cli("show", name).stdout
    assert "GREETING=hello world" in shown
    for how, command in (("ssh host cmd", "echo \"$GREETING/$APP_ENV\""),
                         ("login shell", "bash -lc 'echo \"$GREETING/$APP_ENV\"'"),
                         ("interactive shell (VS Code's terminal)", "bash -ic 'echo \"$GREETING/$APP_ENV\"' 2>/dev/null"),
                         ("a script", "printf '#!/bin/sh\\necho \"$GREETING/$APP_ENV\"\\n' > /tmp/s.sh && sh /tmp/s.sh")):
        r = alice.ssh(name, command)
        assert r.stdout.strip().splitlines()[-1:] == ["hello world/dev"], (how, r.stdout, r.stderr)
    bad = alice.cli("create", unique("v"), "--env", "LD_PRELOAD=/tmp/x.so", check=False)
    assert bad.returncode == 1 and "invalid environment variable name 'LD_PRELOAD' (dev8 sets it)" in bad.stderr


def test_an_idle_container_is_stopped_and_ssh_starts_it_again_with_its_work(tmp_path, base_image: str,  # type: ignore[no-untyped-def]
                                                                           docker_client: docker.DockerClient):
    srv = Dev8Server(tmp_path / "idle").start(DEV8_IDLE_TIMEOUT="8", DEV8_IDLE_CHECK_INTERVAL="0.5")
    try:
        alice = User(srv, "alice@example.com", tmp_path / "alice")
        name = unique("i")
        alice.cli("create", name)
        assert alice.ssh(name, "echo kept > ~/workspace/note").returncode == 0
        wait_until(lambda: alice.http().get(f"/environments/{name}").json()["state"] == "stopped", timeout=60,
                   interval=0.5, what="the idle stop")
        assert alice.http().get(f"/environments/{name}").json()["stop_reason"] == "stopped after 8 s idle"
        assert all(c.status != "running" for c in env_containers(docker_client, srv))
        back = alice.ssh(name, "cat ~/workspace/note", timeout=120)
        assert back.stdout.strip() == "kept" and f"dev8: {name} is stopped: starting it" in back.stderr, back.stderr
    finally:
        srv.shutdown()
