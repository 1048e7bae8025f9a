"""Idle auto-stop decisions (pure) and what counts as use."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dev8.core.activity import Activity, Policy, counts, due
from dev8.durations import human, human_size, parse_duration
from dev8.store.models import Environment

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def running(started_ago: float, used_ago: float | None = None, idle_timeout: int | None = None) -> Environment:
    return Environment(name="web", desired_state="running", observed_state="running", idle_timeout=idle_timeout,
                       started_at=NOW - timedelta(seconds=started_ago),
                       last_used_at=None if used_ago is None else NOW - timedelta(seconds=used_ago))


def test_idle_time_counts_from_the_last_use_or_the_start():
    policy = Policy(idle_timeout=1800, max_session=0)
    assert due(running(3600, used_ago=60), policy, NOW) is None
    warn = due(running(3600, used_ago=1600), policy, NOW)  # 200 s left: within the 5 min warning
    assert warn is not None and not warn.stop and warn.warning == "web stops in 3 min: 30 min idle, unless it is used"
    stop = due(running(3600, used_ago=1800), policy, NOW)
    assert stop is not None and stop.stop and stop.reason == "stopped after 30 min idle"
    # a use before this start does not count against it: the start is use
    assert due(running(60, used_ago=7200), policy, NOW) is None


def test_own_timeout_overrides_the_default_and_zero_is_never():
    policy = Policy(idle_timeout=1800, max_session=0)
    assert due(running(86400, used_ago=86400, idle_timeout=0), policy, NOW) is None
    own = due(running(86400, used_ago=3600, idle_timeout=3600), policy, NOW)
    assert own is not None and own.reason == "stopped after 60 min idle"


def test_the_session_limit_applies_however_busy_and_the_nearer_deadline_wins():
    policy = Policy(idle_timeout=1800, max_session=8 * 3600)
    limit = due(running(8 * 3600, used_ago=1), policy, NOW)
    assert limit is not None and limit.stop and limit.reason == "stopped after 8 h running (this dev8's session limit)"
    idle_first = due(running(8 * 3600 - 100, used_ago=1800), policy, NOW)
    assert idle_first is not None and idle_first.reason == "stopped after 30 min idle"


def test_only_running_environments_are_due():
    policy = Policy(idle_timeout=60, max_session=0)
    for desired, observed in (("stopped", "running"), ("running", "starting"), ("running", "error")):
        env = running(3600, used_ago=3600)
        env.desired_state, env.observed_state = desired, observed
        assert due(env, policy, NOW) is None


def test_keepalives_and_acks_are_not_use():
    assert not counts(13) and not counts(0) and counts(14) and counts(5000)


def test_marks_are_taken_once():
    activity = Activity()
    activity.touch("a")
    activity.touch("b")
    assert set(activity.take()) == {"a", "b"} and activity.take() == {}


def test_durations():
    assert [parse_duration(t) for t in ("30m", "2h", "90s", "1d", "0", "never")] == [1800, 7200, 90, 86400, 0, 0]
    for bad in ("30", "m", "-1m", "1.5h", "soon", ""):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert [human(s) for s in (45, 60, 200, 1800, 7200, 5400, 28800)] == [
        "45 s", "1 min", "3 min", "30 min", "2 h", "1.5 h", "8 h"]
    assert [human_size(n) for n in (0, 1000, 1536, 512 << 20, 3 << 29, 12 << 30)] == \
        ["0 B", "1000 B", "1.5 KiB", "512 MiB", "1.5 GiB", "12 GiB"]


def test_the_servers_idle_timeout_follows_the_same_rule_as_an_environments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pydantic
    import pytest

    from dev8.settings import Settings
    assert Settings(data_dir=tmp_path, idle_timeout=45).idle_timeout == 45  # as `--idle-timeout 45s` is
    for bad in (3, -1, 31 * 86400):
        with pytest.raises(pydantic.ValidationError, match=r"0 \(never\) or between 5 s and 30 days"):
            Settings(data_dir=tmp_path, idle_timeout=bad)
