from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support import CHROMIUM, CHROMIUM_ARGS, FULLSTACK, Dev8Server, Postgres, Registry, User, unique


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a running Docker engine (the README's test command starts one): {exc}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    from dev8.runtimes import docker_images as images
    tag = images.image_tag("base")
    try:
        docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        images.build(docker_client, "base", print)
    return tag


@pytest.fixture(scope="session")
def fullstack_image(docker_client: docker.DockerClient) -> str:
    try:
        docker_client.images.get(FULLSTACK)
    except docker.errors.ImageNotFound:
        from dev8.runtimes import docker_images as images
        images.build(docker_client, "fullstack", print)
    return FULLSTACK


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if shutil.which("initdb") is None and shutil.which("pg_config") is None:
        pytest.fail("these tests need PostgreSQL server binaries (the README's test command installs them)")
    pg = Postgres()
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    if shutil.which("docker-registry") is None:
        pytest.fail("these tests need Debian's docker-registry (the README's test command installs it)")
    reg = Registry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def azure_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One test CA and certificate for every Azure stand-in (as Azure's endpoints share public CAs)."""
    from tests.support import make_tls_certs
    root = tmp_path_factory.mktemp("azure-certs")
    make_tls_certs(root, "127.0.0.1")
    return root


@pytest.fixture(scope="session")
def arm_stub(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,  # type: ignore[type-arg]
             azure_certs: Path) -> Iterator:
    """The Azure stand-in (tests/azure/arm_stub.py), its environments on this Docker engine."""
    from tests.azure.arm_stub import ArmStub
    root = tmp_path_factory.mktemp("azure")
    stub = ArmStub(root / "stub", docker_client, azure_certs).start()
    yield stub
    stub.stop()


@pytest.fixture(scope="session")
def keyvault(azure_certs: Path) -> Iterator:  # type: ignore[type-arg]
    """The Azure Key Vault stand-in (tests/azure/keyvault_stub.py); each test makes its own key."""
    from tests.azure.keyvault_stub import KeyVaultStub
    stub = KeyVaultStub(azure_certs).start()
    yield stub
    stub.shutdown()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator:  # type: ignore[type-arg]
    """A real kube-apiserver on etcd (tests/kube/cluster.py), with the test kubelet running
    its pods on this Docker engine and dev8's namespace set up from deploy/kubernetes."""
    from tests.kube.cluster import KubeCluster
    cluster = KubeCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kubelet(kube_cluster, docker_client: docker.DockerClient) -> Iterator:  # type: ignore[no-untyped-def,type-arg]
    from tests.kube.cluster import SERVICE_HOST
    from tests.kube.kubelet import TestKubelet
    node = TestKubelet(kube_cluster.admin(), docker_client, kube_cluster.root / "certs",
                       api_server=(SERVICE_HOST, kube_cluster.port)).start()
    kube_cluster.namespace_for_dev8("dev8-environments")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def registry_base_image(registry: Registry, base_image: str, docker_client: docker.DockerClient) -> str:
    """dev8/base as ACI would pull it: pushed to the (real, local) registry."""
    from dev8.runtimes.image_push import push
    return push(docker_client, base_image, registry.host, lambda _m: None)


@pytest.fixture(scope="session")
def registry_fullstack_image(registry: Registry, fullstack_image: str, docker_client: docker.DockerClient) -> str:
    """dev8/fullstack pushed to the local registry (pushed once: a cluster or ACI pulls what it names)."""
    from dev8.runtimes.image_push import push
    return push(docker_client, fullstack_image, registry.host, lambda _m: None)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dev8.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def server(tmp_path: Path, base_image: str) -> Iterator[Dev8Server]:
    srv = Dev8Server(tmp_path / "server").start()
    yield srv
    srv.shutdown()


@pytest.fixture
def alice(server: Dev8Server, tmp_path: Path) -> User:
    return User(server, "alice@example.com", tmp_path / "alice")


@pytest.fixture
def bob(server: Dev8Server, tmp_path: Path) -> User:
    return User(server, "bob@example.com", tmp_path / "bob")


@pytest.fixture
def test_network(docker_client: docker.DockerClient) -> Iterator[str]:
    net = docker_client.networks.create(unique("dev8-test-net-"))
    yield net.name
    net.reload()
    for c in net.containers:
        net.disconnect(c, force=True)
    net.remove()


@pytest.fixture(scope="module")  # not session: Playwright's sync API and asyncio.run() in other modules
def browser() -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        pytest.fail("these tests need Debian's chromium (the README's test command installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    yield pg
    context.close()
