from pathlib import Path

from dev8.runtimes import docker_images as images
from dev8.runtimes.base import EnvSpec
from dev8.runtimes.docker import container_kwargs

SPEC = EnvSpec(env_id="abc", owner_id=7, name="web", image="dev8/base:latest", cpus=1.5, memory_bytes=2 << 30,
               control_public_key="ssh-ed25519 AAAA test", installation="i1")


def test_container_publishes_only_sshd_on_loopback_with_limits_and_labels():
    kw = container_kwargs(SPEC)
    assert kw["ports"] == {"22/tcp": ("127.0.0.1", None)}
    assert kw["nano_cpus"] == 1_500_000_000 and kw["mem_limit"] == 2 << 30
    assert kw["labels"] == {"dev8.managed": "true", "dev8.installation": "i1", "dev8.env-id": "abc", "dev8.owner": "7"}
    assert kw["name"] == "dev8-i1-u7-web" and kw["volumes"] == {"dev8-i1-u7-web-home": {"bind": "/home/dev", "mode": "rw"}}
    assert kw["restart_policy"] == {"Name": "unless-stopped"}
    assert set(kw["environment"]) == {"DEV8_CONTROL_KEY"}
    assert kw["tmpfs"] == {"/run/dev8": "size=16m,mode=0700,uid=1000,gid=1000"}
    assert "mounts" not in kw and kw["network"] is None  # nothing of the host's is mounted


def test_network_is_the_runtimes_option_not_the_specs():
    assert container_kwargs(SPEC, network="devnet")["network"] == "devnet"


def test_build_context_has_dockerfile_and_helper():
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(images.build_context())) as tar:
        names = set(tar.getnames())
    assert {"Dockerfile", "dev8-env", "base/sshd_config", "base/entrypoint.sh"} <= names


def test_apt_mirror_from_deb822_and_one_line_sources(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# comment http://x\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert images.apt_mirror(tmp_path) == "http://mirror.example/debian"
    other = tmp_path / "one"
    other.mkdir()
    (other / "sources.list").write_text("deb http://security.debian.org/debian-security bookworm-security main\n"
                                         "deb [arch=amd64] https://m.example/debian bookworm main\n")
    assert images.apt_mirror(other) == "https://m.example/debian"


def test_build_steps_read_as_progress():
    from dev8.runtimes.docker_images import step_progress
    assert step_progress("dev8/fullstack:latest", "Step 24/34 : RUN npm install -g x\n", 190.4) == \
        "dev8/fullstack:latest: step 24 of 34 (RUN), 3 min 10 s so far"
    assert step_progress("t", "Step 1/3 : FROM debian", 4.2) == "t: step 1 of 3 (FROM), 4 s so far"
    assert step_progress("t", " ---> Running in 1234", 1) is None
