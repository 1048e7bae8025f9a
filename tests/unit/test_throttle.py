"""The login throttle, on a SQLite file (it counts in the database, across replicas)."""

import pytest
from sqlalchemy.orm import Session

from dev8.core.errors import TooManyAttempts
from dev8.core.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_for_one_email_lock_it_until_the_window_passes(s: Session) -> None:
    clock = Clock()
    t = LoginThrottle(per_email=5, per_client=20, window=300, clock=clock)
    for _ in range(5):
        t.check(s, "A@x.test", "1.1.1.1")
        t.failed(s, "a@x.test", "1.1.1.1")
        clock.now += 10
    with pytest.raises(TooManyAttempts) as exc:
        t.check(s, "a@x.test", "2.2.2.2")  # another address does not help
    assert 0 < exc.value.retry_after <= 300
    t.check(s, "b@x.test", "1.1.1.1")  # others from the same address still may
    clock.now += 300
    t.check(s, "a@x.test", "1.1.1.1")  # the oldest failure left the window


def test_one_address_is_limited_across_emails_and_success_resets_the_email(s: Session) -> None:
    clock = Clock()
    t = LoginThrottle(per_email=5, per_client=3, window=60, clock=clock)
    for i in range(3):
        t.failed(s, f"u{i}@x.test", "9.9.9.9")
    with pytest.raises(TooManyAttempts):
        t.check(s, "new@x.test", "9.9.9.9")
    t.failed(s, "c@x.test", "8.8.8.8")
    t.succeeded(s, "c@x.test")
    for _ in range(4):
        t.failed(s, "c@x.test", "7.7.7.7")
    t.check(s, "c@x.test", "6.6.6.6")  # 4 since the success: under 5


def test_only_the_first_refusal_of_a_lockout_is_marked_first(s: Session) -> None:
    clock = Clock()
    t = LoginThrottle(per_email=2, per_client=20, window=60, clock=clock)
    for _ in range(2):
        t.failed(s, "a@x.test", "1.1.1.1")
    firsts = []
    for _ in range(3):
        with pytest.raises(TooManyAttempts) as exc:
            t.check(s, "a@x.test", "1.1.1.1")
        firsts.append(exc.value.first)
    assert firsts == [True, False, False]
    clock.now += 61  # the lockout ends; two new failures start another one
    t.check(s, "a@x.test", "1.1.1.1")
    t.failed(s, "a@x.test", "1.1.1.1")
    t.failed(s, "a@x.test", "1.1.1.1")
    with pytest.raises(TooManyAttempts) as exc:
        t.check(s, "a@x.test", "1.1.1.1")
    assert exc.value.first


def test_two_replicas_count_the_same_failures(s: Session) -> None:
    """Two throttles (two servers) on one database: failures seen by either count for both."""
    clock = Clock()
    a, b = (LoginThrottle(per_email=5, per_client=20, window=300, clock=clock) for _ in range(2))
    for i in range(5):
        (a if i % 2 else b).failed(s, "a@x.test", f"10.0.0.{i}")
    for t in (a, b):
        with pytest.raises(TooManyAttempts):
            t.check(s, "a@x.test", "10.0.0.9")
    a.succeeded(s, "a@x.test")
    b.check(s, "a@x.test", "10.0.0.9")  # a success on one ends the lockout on the other
