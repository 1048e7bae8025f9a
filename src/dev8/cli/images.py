"""Environment images: `dev8 image build`."""
from __future__ import annotations

from typing import Annotated

import typer

from dev8.cli.common import fail, out

image_app = typer.Typer(help="Environment images.", no_args_is_help=True)


@image_app.command("build")
def image_build(target: Annotated[str, typer.Argument(help="Image target: base or fullstack")] = "base") -> None:
    """Build an environment image with the local Docker engine ahead of time."""
    import docker as docker_sdk

    from dev8.runtimes import docker_images as images
    try:
        client = docker_sdk.from_env()
        client.ping()
    except docker_sdk.errors.DockerException as exc:
        fail(f"Docker engine unreachable: {exc}")
    try:
        tag = images.build(client, target, lambda m: out.print(f"  {m}", highlight=False))
    except images.ImageBuildError as exc:
        fail(str(exc))
    out.print(f"built {tag}")
