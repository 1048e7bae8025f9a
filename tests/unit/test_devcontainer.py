"""The devcontainer.json subset dev8 honours, and what it reports instead of ignoring."""
from __future__ import annotations

import json

import pytest

from dev8.core.devcontainer import DevcontainerError, parse

SAMPLE = """{
  // the containers.dev format: JSON with comments and trailing commas
  "name": "api",
  "image": "mcr.microsoft.com/devcontainers/python:3.12",
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "containerEnv": {"APP_ENV": "dev", "PATH": "/evil", "HOME_COPY": "${localEnv:HOME}"},
  "remoteEnv": {"GREETING": "hello world"},
  "forwardPorts": [8000, "db:5432", 70000],
  "portsAttributes": {"8000": {"label": "API"}},
  "onCreateCommand": "echo one",
  "postCreateCommand": ["pip", "install", "-r", "requirements dev.txt"],
  "postStartCommand": {"server": "echo start", "watch": ["echo", "watch"]},
  "customizations": {"vscode": {"extensions": ["ms-python.python", "-ms-toolsai.jupyter"],
                                "settings": {"editor.tabSize": 4}}},
  "remoteUser": "vscode",
  "hostRequirements": {"cpus": 4},
}"""


def test_the_honoured_subset_becomes_a_plan():
    plan = parse(SAMPLE, ".devcontainer/devcontainer.json")
    assert plan.env == {"APP_ENV": "dev", "GREETING": "hello world"}
    assert plan.ports == {8000: "API"}
    assert plan.once == ["echo one", "pip install -r 'requirements dev.txt'"]  # onCreate, then postCreate
    assert (plan.on_create, plan.update_content) == (1, 0)  # what a prebuild runs: the first one
    assert plan.on_start == ["echo start", "echo watch"]
    assert plan.extensions == ["ms-python.python"] and plan.settings == {"editor.tabSize": 4}
    assert plan.to_options()["ports"] == {"8000": "API"}
    assert plan.image == "mcr.microsoft.com/devcontainers/python:3.12" and plan.build is None


@pytest.mark.parametrize("build, expected", [
    ({"dockerfile": "Dockerfile"}, {"context": ".devcontainer", "dockerfile": "Dockerfile", "args": {}}),
    ({"dockerfile": "Dockerfile", "context": "..", "args": {"V": "1"}},
     {"context": ".", "dockerfile": ".devcontainer/Dockerfile", "args": {"V": "1"}}),
])
def test_a_dockerfile_is_built_from_its_context_inside_the_repository(build: dict, expected: dict):
    plan = parse(f'{{"image": "x", "build": {json.dumps(build)}}}', ".devcontainer/devcontainer.json")
    assert plan.build == expected and plan.image is None
    assert "image is not used: build is" in plan.warnings


@pytest.mark.parametrize("build", [{"dockerfile": "../../etc/Dockerfile"}, {"dockerfile": "/Dockerfile"},
                                   {"dockerfile": "Dockerfile", "context": "../.."},
                                   {"dockerfile": "../Dockerfile", "context": "."}])
def test_a_build_outside_the_repository_or_its_context_is_refused(build: dict):
    plan = parse(f'{{"build": {json.dumps(build)}}}', ".devcontainer/devcontainer.json")
    assert plan.build is None and any(w.startswith("build:") for w in plan.warnings), plan.warnings


def test_everything_else_is_a_warning_not_silence():
    warnings = "\n".join(parse(SAMPLE, "devcontainer.json").warnings)
    for expected in ("features is not used", "containerEnv.PATH: dev8 sets",
                     "containerEnv.HOME_COPY: only plain text", "'db:5432' is not a port", "70000 is not a port",
                     "remoteUser 'vscode' is not used", "hostRequirements is not supported"):
        assert expected in warnings, expected
    assert "dockerComposeFile" in " ".join(parse('{"dockerComposeFile": "c.yml", "service": "app"}', "x").warnings)


@pytest.mark.parametrize("text", ["{", "[1, 2]", "{'a': }", "not json"])
def test_unreadable_files_are_an_error_naming_the_file(text: str):
    with pytest.raises(DevcontainerError, match="devcontainer.json"):
        parse(text, ".devcontainer/devcontainer.json")
