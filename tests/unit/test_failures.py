"""Failures in a sentence, the raw text kept as detail (core.failures)."""
from __future__ import annotations

import pytest

from dev8.core.failures import MAX_SENTENCE, explain


@pytest.mark.parametrize("raw, sentence", [
    ("[Errno 28] No space left on device: '/var/lib/x'", "out of disk space"),
    ("container exited with code 137 (OOMKilled)", "ran out of memory"),
    ('500 Server Error for http+docker://localhost/v1.47/containers/x/start: Internal Server Error ("driver failed '
     'programming external connectivity: Bind for 127.0.0.1:2222 failed: port is already allocated")', "port it needs"),
    ("pull access denied for nosuch/image, repository does not exist or may require 'docker login'",
     "could not be downloaded"),
    ("timed out after 120s", "did not finish within 120 s"),
    ("[Errno 111] Connect call failed ('127.0.0.1', 2222): Connection refused", "did not answer on its SSH port"),
])
def test_known_failures_become_sentences_with_the_raw_text_as_detail(raw: str, sentence: str) -> None:
    said, detail = explain(raw)
    assert sentence in said and detail == raw and raw not in said


def test_the_docker_engines_explanation_loses_the_request_around_it() -> None:
    raw = ('500 Server Error for http+docker://localhost/v1.47/containers/create?name=dev8-x: Internal Server Error '
           '("invalid mount config for type \\"volume\\": invalid mount path: \'home\' mount path must be absolute")')
    said, detail = explain(raw)
    assert said.startswith("the Docker engine refused: invalid mount config") and "http+docker" not in said
    assert detail == raw


def test_dev8s_own_sentences_pass_through_and_long_text_is_shortened() -> None:
    own = "secret BROKEN cannot be decrypted: set it again with `dev8 secrets set BROKEN`"
    assert explain(own) == (own, "")
    long = "x" * 1000
    said, detail = explain(long)
    assert len(said) == MAX_SENTENCE and said.endswith("…") and detail == long
    said, detail = explain("Traceback (most recent call last):\n  File 'x'\nValueError: boom")
    assert said == "Traceback (most recent call last):" and "ValueError: boom" in detail
