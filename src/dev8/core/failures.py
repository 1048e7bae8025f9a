"""A failure in words a user understands, with the raw detail kept apart.

Runtimes and libraries fail in their own words ("500 Server Error for http+docker://…",
"[Errno 28] No space left on device"). The environment's status says what happened and
what to do in a sentence; the raw text is kept as its detail, one click away on the
dashboard (``status_detail`` in the API). Pure: patterns in, sentences out.
"""
from __future__ import annotations

import re

# What the raw text says → what the user reads. First match wins.
KNOWN: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), s) for p, s in (
    (r"no space left on device", "the machine that runs environments is out of disk space; ask your admin to free "
                                 "some, then retry"),
    (r"oomkilled|out of memory|cannot allocate memory|exit(ed)? (code|status) 137",
     "it ran out of memory; edit it to give it more memory, then retry"),
    (r"port is already allocated|address already in use",
     "a port it needs is taken on the machine that runs it; retry in a moment"),
    (r"pull access denied|manifest unknown|repository does not exist|manifest for .* not found",
     "its image could not be downloaded (the registry does not have it or refused access); edit the image name"),
    (r"timed out after (\d+)s", "it did not finish within {1} s; retry, and if it happens again ask your admin"),
    (r"connection refused|connection reset|connection lost|not accepting connections",
     "it did not answer on its SSH port; retry, and see its logs if it happens again"),
))
# A Docker engine error: '500 Server Error for http+docker://…: Internal Server Error ("why")'
DOCKER_API = re.compile(r"^\d{3} \w+ Error for http\+docker://\S+: [^(]*\(\"(?P<why>.*)\"\)\s*$", re.S)
MAX_SENTENCE = 300


def explain(raw: str) -> tuple[str, str]:
    """``(sentence, detail)`` for a failure whose raw text is ``raw``: a known cause in a
    sentence with ``raw`` as its detail; the Docker engine's own explanation without the
    request around it; else ``raw`` itself (already a sentence: dev8's own errors are
    written to be shown), its detail empty unless it was too long to show whole."""
    raw = raw.strip()
    for pattern, sentence in KNOWN:
        found = pattern.search(raw)
        if found:
            return sentence.format(*[found.group(0), *found.groups()]), raw
    docker = DOCKER_API.match(raw)
    if docker:
        why = docker.group("why").strip()
        return f"the Docker engine refused: {_shorten(why)}", raw
    first = raw.splitlines()[0] if raw else "unknown error"
    if first == raw and len(raw) <= MAX_SENTENCE:
        return raw, ""
    return _shorten(first), raw


def without_advice(sentence: str) -> str:
    """A known failure's sentence without its advice to retry, for while dev8 retries by itself."""
    return re.split(r"[;,] (?:then )?retry\b", sentence, maxsplit=1)[0]


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_SENTENCE else text[:MAX_SENTENCE - 1].rstrip() + "…"
