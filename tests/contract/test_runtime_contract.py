"""The contract every runtime passes (runtimes/base.py), run against each one we ship.

Real backends: ``fake`` runs environments as local SSH server processes; ``docker`` as
containers on the test machine's engine with the dev8/base image; ``aci`` through the
Azure SDKs against the local Azure stand-in (tests/azure), which runs each container group
on Docker from a local registry; ``aci-live`` against a real subscription (opt-in);
``kubernetes`` against a real kube-apiserver with dev8's Role from deploy/kubernetes, its
pods run on Docker by the test kubelet (tests/kube); ``kubernetes-live`` against a real
cluster (opt-in). The checks go through
the environment's own sshd with the control key and the host key the runtime reported.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from dev8.core import envssh
from dev8.runtimes.base import EnvSpec, Observed, Runtime, RuntimeUnavailable
from tests.support import kill_fake_environments, unique


@dataclass
class Case:
    runtime: Runtime
    new_runtime: Callable[[], Runtime]   # another instance on the same backend (a restarted control plane)
    unavailable: Callable[[], Runtime]   # one whose backend cannot be reached
    image: str


@pytest.fixture(params=["fake", "docker", "aci", "aci-live", "kubernetes", "kubernetes-live"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    if request.param == "fake":
        from dev8.runtimes.fake import FakeRuntime
        root = tmp_path / "fake"

        def down() -> Runtime:
            (tmp_path / "down").mkdir(exist_ok=True)
            (tmp_path / "down" / "UNAVAILABLE").touch()
            return FakeRuntime(tmp_path / "down")
        yield Case(FakeRuntime(root), lambda: FakeRuntime(root), down, "dev8/base:latest")
        kill_fake_environments(root)  # whatever a failed test left running
    elif request.param == "aci-live":  # a real subscription: the README's live test
        import os
        if os.environ.get("DEV8_TEST_AZURE") != "1":
            pytest.skip("live Azure: set DEV8_TEST_AZURE=1, DEV8_TEST_AZURE_IMAGE, DEV8_RUNTIME_* and AZURE_*")
        from dev8.runtimes.aci import AciRuntime
        from dev8.runtimes.aci.options import AciOptions

        def live(**kw: object) -> Runtime:
            return AciRuntime(AciOptions(**kw))  # type: ignore[arg-type]
        yield Case(live(), live, lambda: live(arm_endpoint="https://127.0.0.1:9"), os.environ["DEV8_TEST_AZURE_IMAGE"])
    elif request.param == "kubernetes-live":  # a real cluster: the README's live test
        import os
        if not os.environ.get("DEV8_TEST_KUBECONFIG"):
            pytest.skip("a live cluster: set DEV8_TEST_KUBECONFIG, DEV8_TEST_KUBE_IMAGE and DEV8_RUNTIME_NAMESPACE")
        from dev8.runtimes.kube import KubernetesRuntime
        from dev8.runtimes.kube.options import KubernetesOptions

        def live_kube(**kw: object) -> Runtime:
            return KubernetesRuntime(KubernetesOptions(kubeconfig=os.environ["DEV8_TEST_KUBECONFIG"], **kw))  # type: ignore[arg-type]
        yield Case(live_kube(), live_kube, lambda: kube_down(tmp_path), os.environ["DEV8_TEST_KUBE_IMAGE"])
    elif request.param == "kubernetes":
        from dev8.runtimes.kube import KubernetesRuntime
        from dev8.runtimes.kube.options import KubernetesOptions
        cluster = request.getfixturevalue("kube_cluster")
        request.getfixturevalue("kubelet")
        image = request.getfixturevalue("registry_base_image")

        def kube() -> Runtime:
            return KubernetesRuntime(KubernetesOptions(kubeconfig=cluster.kubeconfig("dev8"), schedule_timeout=3))
        yield Case(kube(), kube, lambda: kube_down(tmp_path), image)
    elif request.param == "aci":
        from dev8.runtimes.aci import AciRuntime
        from dev8.runtimes.aci.options import AciOptions
        from tests.support import free_port
        stub = request.getfixturevalue("arm_stub")
        image = request.getfixturevalue("registry_base_image")
        mp = request.getfixturevalue("monkeypatch")
        for k, v in stub.env().items():
            mp.setenv(k, v)
        # the IP as endpoint: this process resolves names through the machine's own /etc/hosts
        # (the FQDN endpoint is tested through a server that sees the stand-in's DNS: test_aci.py)
        mp.setenv("DEV8_RUNTIME_DNS_LABEL", "false")

        def aci(**kw: object) -> Runtime:
            return AciRuntime(AciOptions(**kw))  # type: ignore[arg-type]
        yield Case(aci(), aci, lambda: aci(arm_endpoint=f"https://127.0.0.1:{free_port()}"), image)
    else:
        from dev8.runtimes.docker import DockerRuntime
        image = request.getfixturevalue("base_image")
        yield Case(DockerRuntime(), DockerRuntime,
                   lambda: DockerRuntime(base_url=f"unix://{tmp_path}/no-such-docker.sock"), image)


def kube_down(tmp_path: Path) -> Runtime:
    """A kubernetes runtime whose API server does not answer."""
    from dev8.runtimes.kube import KubernetesRuntime
    from dev8.runtimes.kube.options import KubernetesOptions
    from tests.support import free_port
    path = tmp_path / "kubeconfig-down"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "down",
        "clusters": [{"name": "down", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}]}))
    return KubernetesRuntime(KubernetesOptions(kubeconfig=path))


@pytest.fixture
def spec_of(case: Case) -> Iterator[Callable[..., EnvSpec]]:
    made: list[EnvSpec] = []

    def make(name: str | None = None, env_id: str | None = None) -> EnvSpec:
        key = asyncssh.generate_private_key("ssh-ed25519")
        spec = EnvSpec(env_id=env_id or unique("id"), owner_id=1, name=name or unique("c"), image=case.image,
                       cpus=0.5, memory_bytes=256 << 20,
                       control_public_key=key.export_public_key("openssh").decode().strip(),
                       installation=unique("i")[:7])
        keys[spec.env_id] = key.export_private_key("openssh")
        made.append(spec)
        return spec
    keys: dict[str, bytes] = {}
    make.keys = keys  # type: ignore[attr-defined]
    yield make
    for spec in made:
        try:
            case.runtime.remove(spec, keep_storage=False)
        except Exception:  # noqa: BLE001 — best effort
            pass


def run(spec_of: Callable[..., EnvSpec], spec: EnvSpec, observed: Observed, host_key: str, command: str,
        input: str | None = None) -> str:
    """Run ``command`` in the environment over SSH, trusting only ``host_key``."""
    async def go() -> str:
        conn = await envssh.connect(observed.host, observed.port, spec_of.keys[spec.env_id], host_key,  # type: ignore[attr-defined]
                                    timeout=30)
        async with conn:
            result = await conn.run(command, input=input, check=True, timeout=60)
            return str(result.stdout)
    return asyncio.run(go())


def stop(rt: Runtime, spec_of: Callable[..., EnvSpec], spec: EnvSpec, observed: Observed, host_key: str) -> None:
    """As the core stops an environment: the runtime's command before a stop first."""
    if rt.before_stop:
        run(spec_of, spec, observed, host_key, rt.before_stop)
    rt.stop(spec)


def wait_host_key(runtime: Runtime, spec: EnvSpec) -> str:
    import time
    deadline = time.monotonic() + 60
    while True:
        try:
            return runtime.host_key(spec)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ssh_ready(spec_of, spec, observed, host_key) -> str:  # type: ignore[no-untyped-def]
    import time
    deadline = time.monotonic() + 30
    while True:
        try:
            return run(spec_of, spec, observed, host_key, "echo ready")
        except (TimeoutError, OSError, asyncssh.Error):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_lifecycle_endpoint_configure_stop_keeps_storage_new_instance_remove(case: Case, spec_of) -> None:  # type: ignore[no-untyped-def]
    rt, spec = case.runtime, spec_of()
    assert rt.observe(spec) == Observed(exists=False)
    rt.prepare(spec, lambda _m: None)
    first = rt.ensure_running(spec)
    assert first.reachable and first.port and 0 < first.port < 65536, first
    key = wait_host_key(rt, spec)
    assert key.startswith("ssh-ed25519 ")
    assert ssh_ready(spec_of, spec, first, key).strip() == "ready"
    # configure over SSH: a secret lands in the instance's tmpfs, work in the storage
    doc = json.dumps({"environment": spec.name, "secrets": {"TOKEN": "s3cret"}})
    assert json.loads(run(spec_of, spec, first, key, "dev8-env configure", input=doc))["secrets"] == ["TOKEN"]
    run(spec_of, spec, first, key, "echo kept > ~/workspace/work.txt")
    assert json.loads(run(spec_of, spec, first, key, "dev8-env status"))["secret_names"] == ["TOKEN"]
    # the wrong host key is refused
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(spec_of, spec, first, other, "true")

    listed = rt.observe_all(spec.installation)[spec.env_id]  # the periodic pass's one call
    assert listed.running and (listed.host, listed.port) == (first.host, first.port)
    assert listed.instance_id in (None, first.instance_id)

    stop(rt, spec_of, spec, first, key)
    stopped = rt.observe(spec)
    assert stopped.exists and not stopped.running and not stopped.reachable
    assert not rt.observe_all(spec.installation)[spec.env_id].running
    second = rt.ensure_running(spec)
    assert second.reachable and second.instance_id != first.instance_id  # tmpfs state was lost
    assert wait_host_key(rt, spec) == key  # the host key lives in the storage
    ssh_ready(spec_of, spec, second, key)
    assert run(spec_of, spec, second, key, "cat ~/workspace/work.txt").strip() == "kept"
    assert json.loads(run(spec_of, spec, second, key, "dev8-env status")) == {"configured": False}  # configure again

    rt.remove(spec, keep_storage=True)
    assert rt.observe(spec) == Observed(exists=False)
    assert spec.env_id not in rt.observe_all(spec.installation)
    third = rt.ensure_running(spec)  # a re-created environment finds its storage
    ssh_ready(spec_of, spec, third, wait_host_key(rt, spec))
    assert run(spec_of, spec, third, key, "cat ~/workspace/work.txt").strip() == "kept"
    rt.remove(spec, keep_storage=False)
    assert rt.observe(spec) == Observed(exists=False)
    fourth = rt.ensure_running(spec)
    key4 = wait_host_key(rt, spec)
    ssh_ready(spec_of, spec, fourth, key4)
    assert run(spec_of, spec, fourth, key4, "ls ~/workspace").strip() == ""  # storage was removed
    assert key4 != key


def test_every_step_is_idempotent_and_a_restarted_control_plane_adopts(case: Case, spec_of) -> None:  # type: ignore[no-untyped-def]
    rt, spec = case.runtime, spec_of()
    rt.prepare(spec, lambda _m: None)
    rt.prepare(spec, lambda _m: None)
    first = rt.ensure_running(spec)
    again = rt.ensure_running(spec)
    assert again.instance_id == first.instance_id and (again.host, again.port) == (first.host, first.port)
    adopted = case.new_runtime().observe(spec)  # as after a crash between steps
    assert adopted.instance_id == first.instance_id and adopted.running
    assert case.new_runtime().ensure_running(spec).instance_id == first.instance_id
    rt.stop(spec)
    rt.stop(spec)
    rt.remove(spec, keep_storage=False)
    rt.remove(spec, keep_storage=False)
    assert rt.observe(spec) == Observed(exists=False)


def test_an_earlier_environments_leftover_of_the_same_name_is_not_adopted(case: Case, spec_of) -> None:  # type: ignore[no-untyped-def]
    rt = case.runtime
    old = spec_of()
    rt.prepare(old, lambda _m: None)
    old_obs = rt.ensure_running(old)
    from dataclasses import replace
    new = replace(old, env_id=unique("id"))  # same name and owner, another environment
    spec_of.keys[new.env_id] = spec_of.keys[old.env_id]
    assert rt.observe(new) == Observed(exists=False)
    rt.prepare(new, lambda _m: None)
    obs = rt.ensure_running(new)
    assert obs.reachable and obs.instance_id != old_obs.instance_id
    assert rt.observe(old) == Observed(exists=False)
    rt.remove(new, keep_storage=False)


def test_unreachable_backend_raises_runtime_unavailable_on_every_call(case: Case, spec_of) -> None:  # type: ignore[no-untyped-def]
    rt, spec = case.unavailable(), spec_of()
    calls: list[Callable[[], object]] = [
        rt.ping, lambda: rt.prepare(spec, lambda _m: None), lambda: rt.ensure_running(spec),
        lambda: rt.observe(spec), lambda: rt.observe_all(spec.installation), lambda: rt.stop(spec), lambda: rt.remove(spec, keep_storage=True),
        lambda: rt.logs(spec, 10), lambda: rt.host_key(spec), lambda: rt.image_status(spec.image),
        lambda: rt.fetch_image(spec.image, lambda _m: None)]
    for call in calls:
        with pytest.raises(RuntimeUnavailable) as info:
            call()
        assert str(info.value)  # says where and why


def test_storage_that_existed_and_is_gone_is_not_replaced_by_an_empty_one(case: Case, spec_of) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from dev8.runtimes.base import StorageGone
    rt, spec = case.runtime, spec_of()
    rt.prepare(spec, lambda _m: None)
    rt.remove(spec, keep_storage=False)  # as an operator removing it by hand would
    expected = replace(spec, storage_expected=True)
    with pytest.raises(StorageGone, match="gone"):
        rt.prepare(expected, lambda _m: None)
    with pytest.raises(StorageGone):  # and nothing was made meanwhile
        rt.prepare(expected, lambda _m: None)
    rt.prepare(spec, lambda _m: None)  # the owner agreed: an empty one
    rt.prepare(expected, lambda _m: None)  # it exists now
