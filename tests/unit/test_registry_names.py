from __future__ import annotations

import pytest

from dev8.runtimes.image_push import _layer_line, target_name
from dev8.runtimes.registry import ImageRef, is_loopback, parse_ref


@pytest.mark.parametrize("image, expected", [
    ("dev8/base", ImageRef("registry-1.docker.io", "dev8/base", "latest")),
    ("debian:bookworm", ImageRef("registry-1.docker.io", "library/debian", "bookworm")),
    ("myacr.azurecr.io/team/dev8/fullstack:1.2", ImageRef("myacr.azurecr.io", "team/dev8/fullstack", "1.2")),
    ("127.0.0.1:5000/dev8/base", ImageRef("127.0.0.1:5000", "dev8/base", "latest")),
    ("localhost/x@sha256:" + "a" * 64, ImageRef("localhost", "x", "sha256:" + "a" * 64)),
])
def test_image_references_are_read_as_docker_reads_them(image: str, expected: ImageRef) -> None:
    assert parse_ref(image) == expected


@pytest.mark.parametrize("image", ["", "UPPER/case", "a//b", "host.io/", "x:y:z/w"])
def test_invalid_references_are_refused(image: str) -> None:
    with pytest.raises(ValueError):
        parse_ref(image)


def test_loopback_registries_are_plain_http_others_https() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("myacr.azurecr.io") and not is_loopback("10.0.0.1:5000")
    assert parse_ref("127.0.0.2:5000/a").base_url == "http://127.0.0.2:5000"
    assert parse_ref("myacr.azurecr.io/a").base_url == "https://myacr.azurecr.io"


def test_a_pushed_name_keeps_path_and_tag_under_the_registry() -> None:
    assert target_name("dev8/base:latest", "myacr.azurecr.io") == "myacr.azurecr.io/dev8/base:latest"
    assert target_name("dev8/base", "127.0.0.1:5000/team/") == "127.0.0.1:5000/team/dev8/base:latest"
    assert target_name("debian:bookworm", "r.example") == "r.example/debian:bookworm"
    assert target_name("old.example/dev8/base:1", "new.example") == "new.example/dev8/base:1"
    for bad in ("", "https://r.example", "r example"):
        with pytest.raises(ValueError):
            target_name("dev8/base", bad)


def test_layer_progress_reads_as_states_and_quarters() -> None:
    assert _layer_line("Pushed", {}) == "Pushed"
    assert _layer_line("Pushing", {"current": 60, "total": 100}) == "pushing 50%"
    assert _layer_line("Pushing", {}) is None
    assert _layer_line("Buffering to disk", {}) is None
