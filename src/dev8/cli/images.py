"""Environment images: `dev8 image build` with the local Docker engine, `dev8 image push`
to a registry that ACI or Kubernetes pulls from."""
from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dev8.cli.common import fail, out

if TYPE_CHECKING:
    import docker

image_app = typer.Typer(help="Environment images: build them here, push them to a registry.", no_args_is_help=True)


def _engine() -> docker.DockerClient:
    from dev8.runtimes.image_push import PushError, local_engine
    try:
        return local_engine()
    except PushError as exc:
        fail(str(exc))


@image_app.command("build")
def image_build(target: Annotated[str, typer.Argument(help="Image target: base or fullstack")] = "base") -> None:
    """Build an environment image with the local Docker engine ahead of time."""
    from dev8.runtimes import docker_images as images
    client = _engine()
    try:
        tag = images.build(client, target, lambda m: out.print(f"  {m}", highlight=False))
    except images.ImageBuildError as exc:
        fail(str(exc))
    out.print(f"built {tag}")


@image_app.command("push")
def image_push(
    image: Annotated[str, typer.Argument(help="A local image, e.g. dev8/fullstack:latest")],
    registry: Annotated[str, typer.Option(
        help="HOST[:PORT][/PREFIX], e.g. myacr.azurecr.io or 127.0.0.1:5000/team; the image keeps its path "
             "and tag under it")],
    username: Annotated[str | None, typer.Option(
        help="Log in as this user (e.g. an ACR token's name); default: the engine's `docker login`")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password (or token) for --username from stdin")] = False,
) -> None:
    """Push an image from the local Docker engine to a registry (ACR included), with
    progress per layer; prints the name to use as DEV8_DEFAULT_IMAGE or --image."""
    from dev8.runtimes.image_push import PushError, push
    auth = None
    if username:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"Password for {username}: ")
        else:
            fail("no TTY: pass --password-stdin")
        auth = (username, password)
    elif password_stdin:
        fail("--password-stdin needs --username")
    client = _engine()
    try:
        pushed = push(client, image, registry, lambda m: out.print(f"  {m}", highlight=False), auth)
    except ValueError as exc:
        fail(str(exc))
    except PushError as exc:
        fail(str(exc))
    out.print(f"pushed {pushed}", highlight=False)
