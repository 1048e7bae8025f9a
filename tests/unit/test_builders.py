from pathlib import Path

from dev8 import images
from dev8.runtimes.base import EnvSpec
from dev8.runtimes.docker import container_kwargs

SPEC = EnvSpec(env_id="abc", owner_id=7, name="web", image="dev8/base:latest", cpus=1.5, memory="2g",
               control_public_key="ssh-ed25519 AAAA test", installation="i1")


def test_container_publishes_only_sshd_on_loopback_with_limits_and_labels():
    kw = container_kwargs(SPEC)
    assert kw["ports"] == {"22/tcp": ("127.0.0.1", None)}
    assert kw["nano_cpus"] == 1_500_000_000 and kw["mem_limit"] == "2g"
    assert kw["labels"] == {"dev8.managed": "true", "dev8.installation": "i1", "dev8.env-id": "abc", "dev8.owner": "7"}
    assert kw["name"] == "dev8-i1-u7-web" and kw["volumes"] == {"dev8-i1-u7-web-home": {"bind": "/home/dev", "mode": "rw"}}
    assert kw["restart_policy"] == {"Name": "unless-stopped"}
    assert set(kw["environment"]) == {"DEV8_CONTROL_KEY"}
    assert kw["mounts"] == [] and kw["network"] is None


def test_extra_ca_bundle_is_mounted_read_only_and_network_joined():
    from dataclasses import replace
    kw = container_kwargs(replace(SPEC, ca_bundle="/etc/corp-ca.pem", network="devnet"))
    [mount] = kw["mounts"]
    assert mount["Target"] == "/etc/dev8/extra-ca.crt" and mount["Source"] == "/etc/corp-ca.pem"
    assert mount["ReadOnly"] is True and kw["network"] == "devnet"


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
