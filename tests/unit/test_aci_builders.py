"""The aci runtime's pure builders; every body is checked strictly against Microsoft's
published specification (tests/data/azure, with its source)."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from azure.mgmt.containerinstance import models as m

from dev8.runtimes.aci import builders as b
from dev8.runtimes.aci.options import AciOptions
from dev8.runtimes.base import EnvSpec
from dev8.runtimes.pulled import host_key_from_logs
from tests.azure.swagger import SpecViolation, validate

ACI = "containerInstance-2023-05-01.json"
STORAGE = "storage-file-shares-2026-09-01.json"
SPEC = EnvSpec(env_id="e1", owner_id=7, name="web", image="myacr.azurecr.io/dev8/base:latest", cpus=1.5,
               memory_bytes=3 << 30, control_public_key="ssh-ed25519 AAAA dev8-control", installation="abc1234")


def options(**kw: object) -> AciOptions:
    base = {"subscription_id": "sub", "resource_group": "rg", "location": "westeurope", "storage_account": "homes"}
    return AciOptions(**{**base, **kw})  # type: ignore[arg-type]


def body(spec: EnvSpec = SPEC, **kw: object) -> dict:
    return b.container_group(spec, options(**kw), storage_key="c3RvcmFnZWtleQ==").serialize()


@pytest.mark.parametrize("kw", [
    {}, {"dns_label": True}, {"network": "private", "subnet_id": "/subscriptions/s/resourceGroups/rg/providers/"
                              "Microsoft.Network/virtualNetworks/v/subnets/aci"},
    {"registry_server": "myacr.azurecr.io", "registry_username": "pull", "registry_password": "tok"},
    {"registry_server": "myacr.azurecr.io", "registry_identity": "/subscriptions/s/resourceGroups/rg/providers/"
                                                                 "Microsoft.ManagedIdentity/userAssignedIdentities/p"},
])
def test_every_container_group_body_is_valid_against_the_published_spec(kw: dict) -> None:
    sent = body(**kw)
    validate(ACI, "ContainerGroup", sent)
    props = sent["properties"]
    assert props["ipAddress"]["ports"] == [{"protocol": "TCP", "port": 22}]  # only sshd
    assert props["containers"][0]["properties"]["ports"] == [{"protocol": "TCP", "port": 22}]
    assert props["restartPolicy"] == "Always" and props["osType"] == "Linux"
    assert props["containers"][0]["properties"]["resources"] == {"requests": {"memoryInGB": 3.0, "cpu": 1.5}}
    assert sent["tags"] == SPEC.labels
    env = props["containers"][0]["properties"]["environmentVariables"]
    assert all("secureValue" not in v for v in env)  # no secret rides in the spec
    assert {v["name"] for v in env} == {"DEV8_CONTROL_KEY", "DEV8_HOME_ARCHIVE", "DEV8_HOME_SAVE_EVERY"}
    assert props["volumes"][0]["azureFile"]["shareName"] == b.share_name(SPEC)
    assert props["containers"][0]["properties"]["volumeMounts"] == [
        {"name": "home", "mountPath": b.SHARE_MOUNT}, {"name": "home-disk", "mountPath": "/home/dev"}]
    assert props["volumes"][1] == {"name": "home-disk", "emptyDir": {}}


def test_a_new_home_from_a_prebuild_mounts_its_share_read_only_for_its_archive() -> None:
    seeded = replace(SPEC, seed="dev8-abc1234-u7-pb-1a2b3c")
    sent = body(seeded)
    validate(ACI, "ContainerGroup", sent)
    props = sent["properties"]
    share = b.seed_share_name(seeded)
    assert share == b.share_name(replace(SPEC, name="pb-1a2b3c")) != b.share_name(SPEC)  # the prebuild run's own
    assert props["volumes"][2]["name"] == "seed" and props["volumes"][2]["azureFile"]["shareName"] == share
    assert props["volumes"][2]["azureFile"]["readOnly"] is True
    assert {"name": "seed", "mountPath": b.SEED_MOUNT, "readOnly": True} in props["containers"][0]["properties"][
        "volumeMounts"]
    env = {v["name"]: v["value"] for v in props["containers"][0]["properties"]["environmentVariables"]}
    assert env["DEV8_HOME_SEED"] == f"{b.SEED_MOUNT}/home.tar.gz"
    assert "seed" not in str(body())  # an ordinary home mounts nothing else


def test_the_validator_rejects_unknown_read_only_and_missing_properties() -> None:
    good = body()
    unknown = copy.deepcopy(good)
    unknown["properties"]["containers"][0]["properties"]["privileged"] = True
    with pytest.raises(SpecViolation, match="privileged"):
        validate(ACI, "ContainerGroup", unknown)
    missing = copy.deepcopy(good)
    del missing["properties"]["containers"][0]["properties"]["resources"]
    with pytest.raises(SpecViolation, match="resources"):
        validate(ACI, "ContainerGroup", missing)
    read_only = copy.deepcopy(good)
    read_only["properties"]["provisioningState"] = "Succeeded"
    with pytest.raises(SpecViolation):
        validate(ACI, "ContainerGroup", read_only)
    wrong_type = copy.deepcopy(good)
    wrong_type["properties"]["ipAddress"]["ports"][0]["port"] = "22"
    with pytest.raises(SpecViolation, match="port"):
        validate(ACI, "ContainerGroup", wrong_type)
    validate(ACI, "ContainerGroup", {**good, "id": "/x", "name": "n"}, request=False)  # answers may carry them


def test_the_share_body_the_storage_sdk_sends_is_what_the_storage_spec_allows() -> None:
    # the model the aci runtime hands file_shares.create, as the SDK serializes it for the wire
    import json

    from azure.mgmt.storage import models as sm
    from azure.mgmt.storage._utils.model_base import SdkJSONEncoder
    share = sm.FileShare(file_share_properties=sm.FileShareProperties(share_quota=100))
    body = json.loads(json.dumps(share, cls=SdkJSONEncoder, exclude_readonly=True))
    assert body == {"properties": {"shareQuota": 100}}, body
    validate(STORAGE, "FileShare", body)
    for bad in ({"properties": {"shareQuota": 100, "quota": 5}},          # unknown
                {"properties": {"shareQuota": 100, "deleted": False}},    # read-only
                {"properties": {"shareQuota": "100"}},                    # wrong type
                {"etag": "x", "properties": {}}):                         # read-only at the top
        with pytest.raises(SpecViolation):
            validate(STORAGE, "FileShare", bad)


def test_names_follow_azures_rules_and_never_collide() -> None:
    assert b.group_name(SPEC) == "dev8-abc1234-u7-web" and b.share_name(SPEC) == "dev8-abc1234-u7-web-home"
    names = {b.group_name(replace(SPEC, name=n)) for n in ("a--b", "a-b", "a---b", "x" * 32)}
    assert len(names) == 4
    for name in names | {b.azure_name("Dev8_UPPER.case" * 5)}:
        assert b._AZURE_NAME.fullmatch(name) and len(name) <= 63, name
    assert b.group_name(replace(SPEC, name="a--b")) == b.group_name(replace(SPEC, name="a--b"))  # deterministic


def test_memory_is_rounded_up_to_a_tenth_of_a_gb() -> None:
    assert b.memory_gb(256 << 20) == 0.3 and b.memory_gb(1 << 30) == 1.0 and b.memory_gb(1) == 0.1


def _answer(state: str, container_state: str | None, start: str = "2026-12-05T10:00:00Z", restarts: int = 0,
            ip: str | None = "10.1.2.3") -> m.ContainerGroup:
    raw = body()
    raw.update(id="/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/g",
               name="g")
    raw["properties"]["provisioningState"] = "Succeeded"
    raw["properties"]["instanceView"] = {"state": state, "events": [
        {"name": "Pulling", "message": "pulling image", "type": "Normal"}]}
    if ip:
        raw["properties"]["ipAddress"]["ip"] = ip
    if container_state:
        raw["properties"]["containers"][0]["properties"]["instanceView"] = {
            "restartCount": restarts, "currentState": {"state": container_state, "startTime": start}}
    validate(ACI, "ContainerGroup", raw, request=False)
    return m.ContainerGroup.deserialize(raw)


def test_what_a_group_read_back_says() -> None:
    running = b.observed_of(_answer("Running", "Running"))
    assert running.reachable and (running.host, running.port) == ("10.1.2.3", 22)
    restarted = b.observed_of(_answer("Running", "Running", restarts=1))
    started_again = b.observed_of(_answer("Running", "Running", start="2026-12-05T11:00:00Z"))
    assert len({running.instance_id, restarted.instance_id, started_again.instance_id}) == 3
    pending = b.observed_of(_answer("Pending", "Waiting"))
    assert pending.exists and not pending.running and "pulling image" in pending.detail
    stopped = b.observed_of(_answer("Stopped", None, ip=None))
    assert stopped.exists and not stopped.running and not stopped.reachable
    assert b.made_for(_answer("Running", "Running"), SPEC)
    assert not b.made_for(_answer("Running", "Running"), replace(SPEC, cpus=2))
    assert not b.made_for(_answer("Running", "Running"), replace(SPEC, image="other:1"))


def test_the_host_key_is_the_last_one_the_entrypoint_printed() -> None:
    log = "dev8-host-key: ssh-ed25519 OLD\nsshd started\ndev8-host-key: ssh-ed25519 NEW x\nnoise dev8-host-key: bad\n"
    assert host_key_from_logs(log) == "ssh-ed25519 NEW x"
    assert host_key_from_logs(log, first=True) == "ssh-ed25519 OLD"  # a log of one run: what its entrypoint printed
    assert host_key_from_logs("nothing here") is None


def test_options_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="SUBNET_ID"):
        options(network="private")
    with pytest.raises(ValueError, match="go together"):
        options(registry_server="r.io", registry_username="u")
    with pytest.raises(ValueError, match="REGISTRY_SERVER"):
        options(registry_identity="/id")
