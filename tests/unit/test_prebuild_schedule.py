"""Scheduled prebuild runs and the server's cap of runs at once, on a SQLite file."""
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dev8.core import prebuilds
from dev8.core.auth import create_user
from dev8.core.crypto import Keyring
from dev8.core.environments import Limits
from dev8.core.errors import Invalid
from dev8.store.models import Environment, Prebuild, utcnow

LIMITS = Limits("dev8/base:latest", 1.0, "1g")


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load_or_create(tmp_path / "keyring.json")


def test_a_schedule_queues_a_run_when_its_time_has_come(s: Session, keyring: Keyring) -> None:
    user = create_user(s, email="sched@example.com")
    config, _ = prebuilds.set_config(s, keyring, user, LIMITS, repo="https://git.example.com/o/a.git", every=3600)
    on_demand, _ = prebuilds.set_config(s, keyring, user, LIMITS, repo="https://git.example.com/o/b.git")
    assert prebuilds.due(s) == 1  # never ran: now (and not the one without a schedule)
    [run] = prebuilds.runs(s, config)
    assert prebuilds.due(s) == 0 and prebuilds.runs(s, config) == [run]  # it has just been asked for
    run.state, run.created_at = "ready", utcnow() - timedelta(minutes=10)
    assert prebuilds.due(s) == 0  # ran 10 minutes ago
    run.created_at = utcnow() - timedelta(hours=2)
    assert prebuilds.due(s) == 1 and len(prebuilds.runs(s, config)) == 2
    assert prebuilds.runs(s, on_demand) == []
    with pytest.raises(Invalid, match="1 hour to 30 days"):
        prebuilds.set_config(s, keyring, user, LIMITS, repo="https://git.example.com/o/a.git", every=60)


def test_runs_start_up_to_the_servers_cap_one_per_configuration(s: Session, keyring: Keyring) -> None:
    user = create_user(s, email="cap@example.com")
    configs = [prebuilds.set_config(s, keyring, user, LIMITS, repo=f"https://git.example.com/o/r{i}.git")[0]
               for i in range(3)]
    for config in configs:
        prebuilds.request_run(s, user, config)
    assert prebuilds.request_run(s, user, configs[0]).state == "queued"  # the one waiting, not another
    started = prebuilds.dispatch(s, keyring, concurrent=2)
    assert len(started) == 2
    envs = [s.get(Environment, e) for e in started]
    assert all(e is not None and e.prebuild_id and e.options.get("prebuild_run") for e in envs)
    states = sorted(r.state for c in configs for r in prebuilds.runs(s, c))
    assert states == ["queued", "running", "running"]
    assert prebuilds.dispatch(s, keyring, concurrent=2) == []  # the cap is full
    # a second run of a running configuration waits for the first, even with room
    prebuilds.request_run(s, user, configs[0])
    assert prebuilds.dispatch(s, keyring, concurrent=5) == [
        e.id for e in s.query(Environment).filter(Environment.prebuild_id.in_(
            [r.id for r in prebuilds.runs(s, configs[2]) if r.state == "running"]))]
    assert [r.state for r in prebuilds.runs(s, configs[0])].count("queued") == 1
    assert s.query(Prebuild).filter(Prebuild.state == "running").count() == 3


def test_a_run_whose_environment_was_deleted_by_hand_fails_and_frees_its_place(s: Session, keyring: Keyring) -> None:
    user = create_user(s, email="reap@example.com")
    config, _ = prebuilds.set_config(s, keyring, user, LIMITS, repo="https://git.example.com/o/r.git")
    prebuilds.request_run(s, user, config)
    [env_id] = prebuilds.dispatch(s, keyring)
    env = s.get(Environment, env_id)
    assert env is not None and env.idle_timeout == 0  # never stopped as idle in the middle of its work
    s.delete(env)
    s.flush()
    prebuilds.request_run(s, user, config)
    assert len(prebuilds.dispatch(s, keyring)) == 1  # the configuration runs again
    states = [r.state for r in prebuilds.runs(s, config)]
    assert sorted(states) == ["failed", "running"]
    assert [r.message for r in prebuilds.runs(s, config) if r.state == "failed"] == ["its environment was deleted"]


def test_a_create_finds_its_owners_newest_ready_prebuild_of_the_same_repository_branch_and_image(
        s: Session, keyring: Keyring) -> None:
    user = create_user(s, email="match@example.com")
    other = create_user(s, email="other@example.com")
    config, _ = prebuilds.set_config(s, keyring, user, LIMITS, repo="https://Git.example.com/o/a.git", branch="main")
    old = Prebuild(config_id=config.id, env_id="e1", env_name="pb-1", state="ready", commit="a" * 40,
                   finished_at=utcnow() - timedelta(hours=1))
    new = Prebuild(config_id=config.id, env_id="e2", env_name="pb-2", state="ready", commit="b" * 40,
                   finished_at=utcnow())
    failed = Prebuild(config_id=config.id, env_id="e3", env_name="pb-3", state="failed", finished_at=utcnow())
    s.add_all([old, new, failed])
    s.flush()
    image = LIMITS.default_image
    assert prebuilds.newest_ready(s, user.id, "https://git.example.com/o/a", "main", image) is new  # one repository
    assert prebuilds.newest_ready(s, user.id, "https://git.example.com/o/a.git", None, image) is None  # other branch
    assert prebuilds.newest_ready(s, user.id, "https://git.example.com/o/a.git", "main", "other:img") is None
    assert prebuilds.newest_ready(s, other.id, "https://git.example.com/o/a.git", "main", image) is None  # not theirs
