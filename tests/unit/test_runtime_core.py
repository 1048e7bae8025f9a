"""Pure parts of the runtime-neutral core: what a runtime observation means, the endpoint
the connection pool is given, the spec's units, runtime options."""
from __future__ import annotations

import pytest

from dev8.core.connections import Endpoint, Unreachable
from dev8.core.environments import spec_of
from dev8.runtimes import load_runtime
from dev8.runtimes.docker import DockerOptions, last_exit, observed_of
from dev8.runtimes.fake import FakeOptions
from dev8.store.models import Environment

RUNNING = {"Id": "0123456789abcdef" * 4, "State": {"Status": "running", "StartedAt": "2026-11-30T05:00:00.1Z"},
           "NetworkSettings": {"Ports": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}}}


def test_docker_observation_instance_changes_with_each_start_not_with_each_look():
    first = observed_of(RUNNING)
    assert first.reachable and (first.host, first.port) == ("127.0.0.1", 49153)
    assert observed_of(RUNNING) == first
    restarted = observed_of({**RUNNING, "State": {"Status": "running", "StartedAt": "2026-11-30T06:00:00Z"}})
    assert restarted.instance_id != first.instance_id  # its tmpfs was emptied: configure again
    paused = observed_of({**RUNNING, "State": {**RUNNING["State"], "Status": "paused"}})
    assert paused.instance_id == first.instance_id  # frozen, still the same instance
    exited = observed_of({**RUNNING, "State": {"Status": "exited", "StartedAt": "x"}, "NetworkSettings": {}})
    assert exited.exists and not exited.running and not exited.reachable and exited.instance_id is None


def test_docker_log_of_the_current_run_starts_after_the_previous_exit():
    assert last_exit(RUNNING) is None  # never ended: its whole log is this run's
    assert last_exit({"State": {"FinishedAt": "0001-01-01T00:00:00Z"}}) is None
    ended = last_exit({"State": {"FinishedAt": "2026-11-30T05:00:00.250000001Z"}})
    assert ended is not None and abs(ended - (1796014800 + 0.25)) < 1e-6
    assert last_exit({"State": {"FinishedAt": "2026-11-30T06:00:00+01:00"}}) == 1796014800


def env(**kw: object) -> Environment:
    fields = dict(id="e1", owner_id=3, name="web", image="dev8/base:latest", cpus=1.5, memory="2g",
                  control_public_key="ssh-ed25519 AAAA", observed_state="running", ssh_host="10.0.0.7", ssh_port=22,
                  host_key="ssh-ed25519 BBBB", instance_id="pod-1", status_message="")
    fields.update(kw)
    return Environment(**fields)


def test_endpoint_only_for_a_running_environment_with_a_pinned_key():
    assert Endpoint.of(env()) == Endpoint("e1", "10.0.0.7", 22, "ssh-ed25519 BBBB", "pod-1")
    for missing in ({"host_key": None}, {"ssh_host": None}, {"instance_id": None}, {"observed_state": "stopped"}):
        with pytest.raises(Unreachable, match="dev8 start web"):
            Endpoint.of(env(**missing))
    with pytest.raises(Unreachable, match="host-key failed: changed"):
        Endpoint.of(env(observed_state="error", status_message="host-key failed: changed"))
    # a failed configure leaves the instance reachable (its owner can look inside)
    assert Endpoint.of(env(observed_state="error", status_message="configure failed: disk full")).port == 22


def test_spec_holds_neutral_fields_memory_in_bytes():
    spec = spec_of(env(memory="512m"), "inst1")
    assert spec.memory_bytes == 512 << 20 and spec.cpus == 1.5
    assert spec.object_name == "dev8-inst1-u3-web" and spec.labels["dev8.env-id"] == "e1"


def test_runtime_options_come_from_dev8_runtime_variables(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("DEV8_RUNTIME_NETWORK", "devnet")
    assert DockerOptions().network == "devnet"
    monkeypatch.delenv("DEV8_RUNTIME_NETWORK")
    monkeypatch.setenv("DEV8_DOCKER_NETWORK", "legacy")  # the name the README used before
    assert DockerOptions().network == "legacy"
    monkeypatch.setenv("DEV8_RUNTIME_ROOT", str(tmp_path / "r"))
    assert FakeOptions().root == tmp_path / "r"
    assert load_runtime("fake", tmp_path).root == tmp_path / "r"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"unknown runtime 'nope' \(installed: aci, docker, fake"):
        load_runtime("nope", tmp_path)


def test_an_event_of_an_environment_deleted_meanwhile_is_dropped_and_others_are_kept(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from dev8.core.connections import EnvConnections
    from dev8.core.reconciler import Reconciler
    from dev8.runtimes.fake import FakeRuntime
    from dev8.store.models import Event, User
    with db.session() as s:
        s.add(User(id=3, email="e@example.com", username="e"))
        s.flush()
        s.add(env(id="e1"))
    rec = Reconciler(db, None, FakeRuntime(tmp_path / "rt"), EnvConnections(db, None))  # type: ignore[arg-type]
    rec._event("e1", "start", "running")
    rec._event("gone", "start", "running")  # the foreign key refuses it: no event, no error
    with db.session() as s:
        assert [(e.env_id, e.step) for e in s.scalars(select(Event))] == [("e1", "start")]


def test_a_reconcile_that_loses_its_lease_writes_nothing_it_held_back(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The fields a start sets on the way (STARTING here) wait for its next write; when the
    lease is found lost instead, another replica reconciles the environment now, and what
    this one held back must not land on that replica's state."""
    import asyncio

    from sqlalchemy import select

    from dev8.core.connections import EnvConnections
    from dev8.core.leases import Leases
    from dev8.core.reconciler import LeaseLost, Reconciler
    from dev8.runtimes.fake import FakeRuntime
    from dev8.store.models import Event, User
    with db.session() as s:
        s.add(User(id=3, email="e@example.com", username="e"))
        s.flush()
        s.add(env(id="e1", observed_state="stopped", desired_state="running", ssh_host=None, ssh_port=None,
                  host_key=None, instance_id=None))
    leases = Leases.alone(db)
    leases.fresh = lambda: False  # type: ignore[method-assign]
    rec = Reconciler(db, None, FakeRuntime(tmp_path / "rt"), EnvConnections(db, None),  # type: ignore[arg-type]
                     leases=leases)
    with pytest.raises(LeaseLost):
        asyncio.run(rec.reconcile("e1"))
    with db.session() as s:
        assert s.get(Environment, "e1").observed_state == "stopped"
        assert list(s.scalars(select(Event))) == []
