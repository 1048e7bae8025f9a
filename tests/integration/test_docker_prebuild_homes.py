"""How the Docker runtime makes a home from a prebuild's volume, on the real engine: an
overlay (the default) whose lower layer is the prebuild's volume, kept while a home is
layered on it; or a copy (``prebuild_homes="copy"``). A kept home of the same name is never
overwritten by either."""
from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from dev8.runtimes.base import EnvSpec, StorageGone
from dev8.runtimes.docker import LABEL_LAYERED_ON, DockerRuntime
from tests.support import unique

FILL = ("mkdir -p /h/app/node_modules/.bin && for i in $(seq 1 50); do echo $i > /h/app/node_modules/m$i; done "
        "&& ln -s ../m1 /h/app/node_modules/.bin/tool && chmod 600 /h/app/node_modules/m2 && chown -R 1000:1000 /h")


def spec(name: str, image: str, installation: str, seed: str | None = None, expected: bool = False) -> EnvSpec:
    return EnvSpec(env_id=unique("id"), owner_id=1, name=name, image=image, cpus=1, memory_bytes=1 << 28,
                   control_public_key="", installation=installation, storage_expected=expected, seed=seed)


@pytest.fixture
def world(docker_client: docker.DockerClient, base_image: str) -> Iterator[tuple]:  # type: ignore[type-arg]
    installation = unique("t")
    yield docker_client, base_image, installation
    for volume in docker_client.volumes.list(filters={"label": f"dev8.installation={installation}"}):
        volume.remove(force=True)
    for volume in docker_client.volumes.list():
        if volume.name.startswith(f"dev8-{installation}-"):
            volume.remove(force=True)


def sh(c: docker.DockerClient, image: str, volume: str, script: str) -> str:
    """``script`` as root in a throwaway container with ``volume`` at /h."""
    return c.containers.run(image, ["sh", "-c", script], entrypoint=[], user="0", remove=True,
                            volumes={volume: {"bind": "/h", "mode": "rw"}}).decode()


def prebuild(c: docker.DockerClient, image: str, installation: str) -> EnvSpec:
    """A prebuild's storage as a run leaves it: its volume, filled."""
    made = spec(unique("pb"), image, installation)
    c.volumes.create(made.volume_name, labels={"dev8.installation": installation})
    sh(c, image, made.volume_name, FILL)
    return made


def volumes(c: docker.DockerClient, installation: str) -> set[str]:
    return {v.name for v in c.volumes.list() if v.name.startswith(f"dev8-{installation}-")}


CHECK = ("cd /h/app && ls node_modules | wc -l && readlink node_modules/.bin/tool && stat -c '%u %a' node_modules/m2 "
         "&& cat node_modules/m7")


def test_overlay_homes_share_the_prebuild_which_stays_until_the_last_goes(world) -> None:  # type: ignore[no-untyped-def]
    c, image, inst = world
    rt = DockerRuntime()
    pb = prebuild(c, image, inst)
    said: list[str] = []
    a, b = spec("a", image, inst, seed=pb.object_name), spec("b", image, inst, seed=pb.object_name)
    for home in (a, b):
        rt.prepare(home, said.append)
        assert c.volumes.get(home.volume_name).attrs["Labels"][LABEL_LAYERED_ON] == pb.volume_name
    assert any("layering the new home" in m for m in said), said
    assert sh(c, image, a.volume_name, CHECK).split() == ["50", "../m1", "1000", "600", "7"]
    # each home's changes are its own; a directory of the prebuild can be renamed; the prebuild is untouched
    sh(c, image, a.volume_name, "echo mine > /h/app/node_modules/m7 && mv /h/app/node_modules /h/app/nm "
                                "&& rm /h/app/nm/m3")
    assert sh(c, image, a.volume_name, "cat /h/app/nm/m7; ls /h/app/nm | wc -l").split() == ["mine", "49"]
    assert sh(c, image, b.volume_name, CHECK).split() == ["50", "../m1", "1000", "600", "7"]
    assert sh(c, image, pb.volume_name, "cat /h/app/node_modules/m7; ls /h/app").split() == ["7", "node_modules"]
    # a second prepare (a restart before the first start) keeps the home as it is
    rt.prepare(a, said.append)
    assert sh(c, image, a.volume_name, "cat /h/app/nm/m7").strip() == "mine"

    # the prebuild removed: kept (retired) while homes are layered on it
    rt.remove(pb, keep_storage=False)
    assert {pb.volume_name, f"{pb.volume_name}-retired"} <= volumes(c, inst)
    assert sh(c, image, b.volume_name, "cat /h/app/node_modules/m9").strip() == "9"
    rt.remove(a, keep_storage=False)
    assert not {a.volume_name, f"{a.volume_name}-upper", f"{a.volume_name}-work"} & volumes(c, inst)
    assert pb.volume_name in volumes(c, inst)  # b still on it
    rt.remove(b, keep_storage=True)  # a kept home still needs it
    assert pb.volume_name in volumes(c, inst)
    rt.remove(b, keep_storage=False)
    assert volumes(c, inst) == set()  # the last home gone: the prebuild and its mark with it


def layered_home(world) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """A prebuild and a home ``a`` layered on it, by a default runtime: (rt, prebuild, a)."""
    c, image, inst = world
    rt = DockerRuntime()
    pb = prebuild(c, image, inst)
    a = spec("a", image, inst, seed=pb.object_name)
    rt.prepare(a, lambda m: None)
    return rt, pb, a


def test_a_prebuild_removed_before_its_homes_were_layered_goes_at_once(world) -> None:  # type: ignore[no-untyped-def]
    c, image, inst = world
    rt, pb, a = layered_home(world)
    rt.remove(a, keep_storage=False)
    assert volumes(c, inst) == {pb.volume_name}  # not retired: nothing to wait for
    rt.remove(pb, keep_storage=False)
    assert volumes(c, inst) == set()
    with pytest.raises(StorageGone, match="prebuild's home volume"):  # no home made of nothing
        rt.prepare(spec("late", image, inst, seed=pb.object_name), lambda m: None)
    assert volumes(c, inst) == set()


def test_a_home_whose_prebuild_volume_vanished_is_storage_gone(world) -> None:  # type: ignore[no-untyped-def]
    c, image, inst = world
    rt, pb, a = layered_home(world)
    c.volumes.get(pb.volume_name).remove(force=True)  # behind dev8's back
    with pytest.raises(StorageGone, match="layered on the prebuild volume"):
        rt.prepare(spec("a", image, inst, expected=True), lambda m: None)
    assert a.volume_name in volumes(c, inst)  # nothing removed: the user decides
    said: list[str] = []
    rt.prepare(spec("a", image, inst), said.append)  # `dev8 start --empty-home`: a new, empty home
    assert any("made anew" in m for m in said), said
    assert volumes(c, inst) == {a.volume_name}
    assert sh(c, image, a.volume_name, "ls -A /h").split() == []  # a plain volume, filled at its first start


@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_a_kept_home_of_the_same_name_is_never_overwritten(world, mode: str) -> None:  # type: ignore[no-untyped-def]
    c, image, inst = world
    rt = DockerRuntime(prebuild_homes=mode)  # type: ignore[arg-type]
    pb = prebuild(c, image, inst)
    kept = spec("a", image, inst)
    rt.prepare(kept, lambda m: None)
    sh(c, image, kept.volume_name, "echo work > /h/precious")
    said: list[str] = []
    rt.prepare(spec("a", image, inst, seed=pb.object_name), said.append)
    assert sh(c, image, kept.volume_name, "cat /h/precious; ls /h").split() == ["work", "precious"]
    assert any("kept home volume" in m for m in said), said


def test_copied_homes_are_whole_and_need_no_prebuild(world) -> None:  # type: ignore[no-untyped-def]
    c, image, inst = world
    rt = DockerRuntime(prebuild_homes="copy")
    pb = prebuild(c, image, inst)
    a = spec("a", image, inst, seed=pb.object_name)
    said: list[str] = []
    rt.prepare(a, said.append)
    assert any("copying the prebuild's home" in m for m in said), said
    assert LABEL_LAYERED_ON not in (c.volumes.get(a.volume_name).attrs["Labels"] or {})
    rt.remove(pb, keep_storage=False)
    assert volumes(c, inst) == {a.volume_name}
    assert sh(c, image, a.volume_name, CHECK).split() == ["50", "../m1", "1000", "600", "7"]
