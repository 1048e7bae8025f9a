"""DEV8_RUNTIME=kubernetes against a real kube-apiserver (v1.20.2, RBAC on, dev8 bound to
the Role in deploy/kubernetes), its pods run on Docker by the test kubelet (tests/kube).
What only a real cluster shows is in the README; the contract suite covers the lifecycle."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh
import kubernetes_validate
import pytest
from kubernetes import client

from dev8.runtimes.base import EnvSpec, NeedsUserAction, RuntimeUnavailable, StorageGone
from dev8.runtimes.kube import KubernetesRuntime
from dev8.runtimes.kube import builders as b
from dev8.runtimes.kube.options import KubernetesOptions
from tests.support import (
    GIT_HOST,
    GITLAB_HOST,
    Dev8Server,
    User,
    make_tls_certs,
    start_git_server,
    unique,
    vscode_answers,
    wait_until,
)

# The three newest Kubernetes versions kubernetes-validate knows: what dev8 sends must pass
# their strict schemas (v1.20 itself drops unknown fields without a word).
SCHEMA_VERSIONS = sorted(set(kubernetes_validate.utils.all_versions()),
                         key=lambda v: tuple(int(p) for p in v.split(".")))[-3:]


@pytest.fixture
def runtime(kube_cluster, kubelet) -> Callable[..., KubernetesRuntime]:  # type: ignore[no-untyped-def]
    def make(who: str = "dev8", **kw: Any) -> KubernetesRuntime:
        return KubernetesRuntime(KubernetesOptions(kubeconfig=kube_cluster.kubeconfig(who), schedule_timeout=2, **kw))
    return make


class _Keys:
    """The control keys, where the contract suite's helpers read them (``.keys[env_id]``)."""
    keys: dict[str, bytes] = {}


@pytest.fixture
def spec(registry_base_image: str) -> EnvSpec:
    key = asyncssh.generate_private_key("ssh-ed25519")
    env_id = unique("id")
    _Keys.keys[env_id] = key.export_private_key("openssh")
    return EnvSpec(env_id=env_id, owner_id=7, name=unique("k"), image=registry_base_image, cpus=0.5,
                   memory_bytes=256 << 20, control_public_key=key.export_public_key("openssh").decode().strip(),
                   installation=unique("i")[:7])


def admin_core(kube_cluster) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(kube_cluster.admin())


def test_what_dev8_sends_passes_the_strict_schemas_of_current_kubernetes(spec: EnvSpec) -> None:
    opts = KubernetesOptions(image_pull_secrets="regcred", node_selector="pool=dev,zone=a",  # type: ignore[arg-type]
                             tolerations='[{"key": "dev", "operator": "Exists", "effect": "NoSchedule"}]',
                             storage_class="fast")
    assert len(SCHEMA_VERSIONS) == 3
    for version in SCHEMA_VERSIONS:
        for body in (b.pod(spec, opts), b.claim(spec, opts), b.claim(replace(spec, seed="dev8-i-u7-pb-1"), opts)):
            kubernetes_validate.validate(body, version, strict=True)
        bad = b.pod(spec, opts)
        bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalaton"] = False  # a typo v1.20 would drop
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)
    pod = b.pod(spec, opts)["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False and container["ports"] == [
        {"name": "ssh", "containerPort": 22, "protocol": "TCP"}]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}} in pod["volumes"]


def test_names_fit_dns_1123_and_never_collide() -> None:
    base = EnvSpec(env_id="e", owner_id=1, name="a", image="i", cpus=1, memory_bytes=1, control_public_key="k",
                   installation="inst")
    names = {b.pod_name(replace(base, name=n, installation=i)) for n in ("a", "a-b", "x" * 32)
             for i in ("inst", "i--x", "I_NST." * 10)}
    assert len(names) == 9
    assert all(len(n) <= 63 and b.DNS_LABEL.fullmatch(n) for n in names)
    with pytest.raises(ValueError, match="label"):
        b.labels(replace(base, installation="bad value!"))


def test_the_pod_runs_with_no_privilege_escalation_only_sshds_capabilities_and_secrets_in_memory(
        runtime, spec: EnvSpec, kube_cluster, docker_client) -> None:  # type: ignore[no-untyped-def]
    rt = runtime()
    rt.prepare(spec, lambda _m: None)
    observed = rt.ensure_running(spec)
    try:
        container = docker_client.containers.get(
            next(c.id for c in docker_client.containers.list(filters={"label": f"pod=dev8-environments.{b.pod_name(spec)}"})))
        status = container.exec_run("sh -c 'grep -E \"^(CapEff|NoNewPrivs)\" /proc/1/status; stat -f -c %T /run/dev8'",
                                    user="root").output.decode()
        fields = dict(line.split(":\t") for line in status.splitlines() if ":\t" in line)
        assert fields["NoNewPrivs"].strip() == "1"
        assert int(fields["CapEff"], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN (nor anything beyond sshd's set)
        assert status.split()[-1] == "tmpfs"
        pod = admin_core(kube_cluster).read_namespaced_pod(b.pod_name(spec), "dev8-environments")
        assert pod.status.pod_ip == observed.host and observed.port == 22
        assert pod.metadata.labels["dev8.env-id"] == spec.env_id
    finally:
        rt.remove(spec, keep_storage=False)


def test_a_pod_deleted_behind_dev8s_back_is_made_again_on_the_kept_claim(runtime, spec: EnvSpec, kube_cluster  # type: ignore[no-untyped-def]
                                                                         ) -> None:
    rt = runtime()
    rt.prepare(spec, lambda _m: None)
    first = rt.ensure_running(spec)
    try:
        from tests.contract.test_runtime_contract import run, ssh_ready, wait_host_key
        keyring = _Keys
        key = wait_host_key(rt, spec)
        ssh_ready(keyring, spec, first, key)
        run(keyring, spec, first, key, "echo kept > ~/workspace/k.txt")
        admin_core(kube_cluster).delete_namespaced_pod(b.pod_name(spec), "dev8-environments", grace_period_seconds=0)
        wait_until(lambda: not rt.observe(spec).running, timeout=30, what="the pod gone")
        assert rt.observe(spec).exists  # the claim is: stopped, not lost
        second = rt.ensure_running(spec)
        assert second.instance_id != first.instance_id
        ssh_ready(keyring, spec, second, wait_host_key(rt, spec))
        assert run(keyring, spec, second, key, "cat ~/workspace/k.txt").strip() == "kept"
    finally:
        rt.remove(spec, keep_storage=False)


def test_a_home_cloned_from_a_prebuilds_claim_is_a_copy_of_its_own(runtime, spec: EnvSpec) -> None:  # type: ignore[no-untyped-def]
    """A prebuild's claim (its environment removed, the claim kept) cloned into a new home:
    the files are there, and what the new home changes is not in the prebuild's."""
    from tests.contract.test_runtime_contract import run, ssh_ready, wait_host_key
    rt = runtime()
    rt.prepare(spec, lambda _m: None)
    first = rt.ensure_running(spec)
    made = replace(spec, env_id=unique("id"), name=unique("k"), seed=spec.object_name)
    _Keys.keys[made.env_id] = _Keys.keys[spec.env_id]
    try:
        ssh_ready(_Keys, spec, first, wait_host_key(rt, spec))
        run(_Keys, spec, first, wait_host_key(rt, spec), "mkdir -p ~/workspace/dep && echo prebuilt > ~/workspace/dep/f")
        rt.remove(spec, keep_storage=True)  # what a prebuild run leaves: its claim
        said: list[str] = []
        rt.prepare(made, said.append)
        assert any("cloning the prebuild's claim" in m for m in said), said
        second = rt.ensure_running(made)
        key = wait_host_key(rt, made)
        ssh_ready(_Keys, made, second, key)
        assert run(_Keys, made, second, key, "cat ~/workspace/dep/f && stat -c %U ~/workspace/dep/f").split() == [
            "prebuilt", "dev"]
        run(_Keys, made, second, key, "echo mine > ~/workspace/dep/f")
        rt.remove(made, keep_storage=False)
        again = rt.ensure_running(spec)  # the prebuild's own home is as it was
        key = wait_host_key(rt, spec)
        ssh_ready(_Keys, spec, again, key)
        assert run(_Keys, spec, again, key, "cat ~/workspace/dep/f").strip() == "prebuilt"
        gone = replace(made, env_id=unique("id"), name=unique("k"), seed="dev8-nothing-u1-none")
        with pytest.raises(StorageGone, match="the prebuild's claim"):
            rt.prepare(gone, lambda _m: None)
    finally:
        rt.remove(made, keep_storage=False)
        rt.remove(spec, keep_storage=False)


def test_an_image_the_cluster_cannot_pull_fails_with_the_kubelets_reason_and_leaves_no_pod(
        runtime, spec: EnvSpec, registry) -> None:  # type: ignore[no-untyped-def]
    rt = runtime()
    missing = replace(spec, image=f"{registry.host}/nosuch/image:1")
    with pytest.raises(NeedsUserAction, match="image") as info:  # refused before anything is made
        rt.prepare(missing, lambda _m: None)
    assert "not in its registry" in str(info.value)
    with pytest.raises(NeedsUserAction, match=r"cannot pull .*nosuch/image:1: (ErrImagePull|ImagePullBackOff)"):
        rt.ensure_running(missing)  # as when the registry lost it after the check
    assert not rt.observe(missing).running and rt._pod(missing) is None
    rt.remove(missing, keep_storage=False)


def test_a_pod_too_big_for_any_node_fails_with_the_schedulers_message(runtime, spec: EnvSpec) -> None:  # type: ignore[no-untyped-def]
    rt = runtime()
    big = replace(spec, cpus=64)
    rt.prepare(big, lambda _m: None)
    with pytest.raises(NeedsUserAction, match=r"no node can run it: 0/1 nodes are available: 1 Insufficient cpu"):
        rt.ensure_running(big)
    assert rt._pod(big) is None  # nothing left pending
    rt.remove(big, keep_storage=False)


def test_a_claim_no_storage_class_provides_stays_pending_and_says_so(runtime, spec: EnvSpec) -> None:  # type: ignore[no-untyped-def]
    rt = runtime(storage_class="nosuch")
    rt.prepare(spec, lambda _m: None)
    with pytest.raises(NeedsUserAction, match=r"unbound immediate PersistentVolumeClaims.*claim .* is still Pending"):
        rt.ensure_running(spec)
    rt.remove(spec, keep_storage=False)


def test_rbac_refusals_say_which_verb_on_which_resource(runtime, spec: EnvSpec) -> None:  # type: ignore[no-untyped-def]
    nobody = runtime("someone")
    with pytest.raises(RuntimeUnavailable, match=r'refused dev8 \(403\).*cannot list resource "pods"'):
        nobody.ping()
    with pytest.raises(RuntimeUnavailable, match=r'cannot (get|create) resource "persistentvolumeclaims"'):
        nobody.prepare(spec, lambda _m: None)
    # dev8's own Role is enough for everything it does, and only in its namespace
    elsewhere = runtime(namespace="default")
    with pytest.raises(RuntimeUnavailable, match=r'in the namespace "default"'):
        elsewhere.observe(spec)


def test_observe_all_lists_running_and_stopped_environments_in_two_calls(runtime, spec: EnvSpec) -> None:  # type: ignore[no-untyped-def]
    rt = runtime()
    other = replace(spec, env_id=unique("id"), name=unique("k"))
    for s in (spec, other):
        rt.prepare(s, lambda _m: None)
    rt.ensure_running(spec)
    try:
        found = rt.observe_all(spec.installation)
        assert found[spec.env_id].running and not found[other.env_id].running and found[other.env_id].exists
        assert set(found) == {spec.env_id, other.env_id}
    finally:
        for s in (spec, other):
            rt.remove(s, keep_storage=False)


TOKEN = "tok-" + "k8s0" * 8


@pytest.fixture(scope="module")
def kube_server(tmp_path_factory: pytest.TempPathFactory, kube_cluster, kubelet, registry_base_image: str,  # type: ignore[no-untyped-def]
                docker_client, keyvault) -> Iterator[Dev8Server]:
    """A dev8 server on DEV8_RUNTIME=kubernetes with dev8's own Role, its secrets sealed in
    (the stand-in of) Azure Key Vault, and a git server its pods reach (as a cluster's pods
    reach a company's git host)."""
    import docker
    root = tmp_path_factory.mktemp("kube-server")
    network = docker_client.networks.create(unique("dev8-kube-git-"))
    ca = make_tls_certs(root / "tls", GIT_HOST, GITLAB_HOST)
    git = start_git_server(docker_client, network.name, root / "tls", {"x-access-token": TOKEN})
    kubelet.extra_networks.append(network.name)
    key = unique("kube-kek-")
    keyvault.create(key)
    server = Dev8Server(root / "server", extra_env={
        "DEV8_RUNTIME": "kubernetes", "DEV8_RUNTIME_KUBECONFIG": str(kube_cluster.kubeconfig("dev8")),
        "DEV8_DEFAULT_IMAGE": registry_base_image, "DEV8_ENV_CA_BUNDLE": str(ca),
        **keyvault.settings_env(key)}).start()
    yield server
    server.kill()
    kubelet.extra_networks.remove(network.name)
    git.remove(force=True)
    with contextlib.suppress(docker.errors.APIError):  # a pod a failed test left is still on it
        network.remove()


def test_an_environment_on_kubernetes_end_to_end(kube_server: Dev8Server, kube_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    core = admin_core(kube_cluster)
    alice = User(kube_server, f"{unique('alice')}@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "GITHUB_TOKEN", input=TOKEN)
    name = unique("k")
    created = alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/app.git",
                        "--git", f"github@{GIT_HOST}:8443")
    assert "✓ clone" in created.stdout and f"{name} is ready" in created.stdout, created.stdout
    env_id = alice.http().get(f"/environments/{name}").json()["id"]
    pods = core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_id}").items
    assert len(pods) == 1 and TOKEN not in str(pods[0].to_dict())  # the token went over SSH, not in the pod
    first_uid = pods[0].metadata.uid
    # its services' state, read without sudo (no-new-privileges refuses it)
    assert alice.http().get(f"/environments/{name}/health").json()["services"].get("sshd") == "up"
    # SSH through the gateway to the pod's IP, git push with the token from the secret
    r = alice.ssh(name, "cd ~/workspace/app && cat README.md && echo x > k.txt && git add k.txt && "
                        "git commit -qm 'from k8s' && git push -q origin main && echo pushed; stat -f -c %T /run/dev8/")
    assert r.stdout.split()[-2:] == ["pushed", "tmpfs"] and "hello from the test git server" in r.stdout, r.stderr
    # a preview through dev8's proxy, over the same SSH transport
    alice.ssh(name, "cd ~/workspace/app && (setsid python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &)")
    wait_until(lambda: alice.script().get(f"/@{alice.username}/{name}/ports/8123/k.txt").status_code == 200,
               timeout=30, what="the preview")
    assert alice.script().get(f"/@{alice.username}/{name}/ports/8123/k.txt").text == "x\n"

    alice.cli("stop", name)
    assert core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_id}").items == []
    claims = core.list_namespaced_persistent_volume_claim("dev8-environments", label_selector=f"dev8.env-id={env_id}")
    assert len(claims.items) == 1  # the home is kept
    alice.cli("start", name)
    pod = core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_id}").items[0]
    assert pod.metadata.uid != first_uid  # a new pod: configured again, its host key read from its log
    r = alice.ssh(name, "cat ~/workspace/app/k.txt; cd ~/workspace/app && git pull -q && echo pulled")
    assert r.stdout.split() == ["x", "pulled"], r.stderr

    alice.cli("delete", name, "--yes")
    wait_until(lambda: not core.list_namespaced_persistent_volume_claim(
        "dev8-environments", label_selector=f"dev8.env-id={env_id}").items, timeout=60, what="the claim deleted")
    assert core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_id}").items == []


def test_vscode_in_a_pod_through_dev8s_proxy(kube_server: Dev8Server, kube_cluster, registry_fullstack_image: str,  # type: ignore[no-untyped-def]
                                             tmp_path: Path) -> None:
    """The fullstack image in a pod (dropped capabilities, no privilege escalation, no
    service-account token): code-server starts and VS Code's workbench and assets come
    through dev8's proxy over the pod's SSH, on the first pod and on the next one."""
    bea = User(kube_server, f"{unique('bea')}@example.com", tmp_path / "bea")
    name = unique("vs")
    created = bea.cli("create", name, "--image", registry_fullstack_image, "--memory", "2g")
    assert f"{name} is ready" in created.stdout, created.stdout
    vscode_answers(bea, name)
    bea.cli("restart", name)  # a new pod
    vscode_answers(bea, name)
    bea.cli("delete", name, "--yes")


def test_the_shipped_manifests_pass_strict_schemas_and_agree_with_the_runtime() -> None:
    import yaml

    from dev8.settings import Settings
    from tests.kube.cluster import DEPLOY
    docs = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(DEPLOY.glob("*.yaml"))}
    kustomization = docs.pop("kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(n for n in docs if not n.endswith(".example.yaml"))
    for version in SCHEMA_VERSIONS:
        for objects in docs.values():
            for obj in objects:
                kubernetes_validate.validate(obj, version, strict=True)
    by_kind = {(o["kind"], o["metadata"]["name"]): o for objects in docs.values() for o in objects}
    policy = by_kind[("NetworkPolicy", "dev8-environments")]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= b.APP_LABELS.items()  # selects every environment pod
    allowed = policy["ingress"][0]["from"][0]
    template = by_kind[("Deployment", "dev8")]["spec"]["template"]
    assert allowed["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 22}]
    settings = by_kind[("ConfigMap", "dev8-settings")]["data"]
    assert settings["DEV8_RUNTIME_NAMESPACE"] == by_kind[("Role", "dev8-environments")]["metadata"]["namespace"]
    known = {f"DEV8_{f.upper()}" for f in Settings.model_fields} | {
        f"DEV8_RUNTIME_{f.upper()}" for f in KubernetesOptions.model_fields} | {"DEV8_KEYRING"}
    assert set(settings) <= known, set(settings) - known
    subject = by_kind[("RoleBinding", "dev8-environments")]["subjects"][0]
    assert template["spec"]["serviceAccountName"] == subject["name"] == by_kind[("ServiceAccount", "dev8")]["metadata"]["name"]
