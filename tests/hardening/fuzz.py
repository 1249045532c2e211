"""What the property-based tests (tests/hardening/test_fuzz_*.py) share: the input strategies,
the profiles, the request helper that checks the two properties, and the tally printed at the
end of the run (and written to $FUZZ_REPORT as JSON when set).

The properties, for every request: never a 500, and never a secret in the response. Every
request carries a secret canary where a secret could go (a sensitive input, a `$key` in batch
rows, a password); the canary must not appear anywhere in what comes back.

Profiles: `short` (the default, in `make test`: few examples, derandomized so that a run is
repeatable) and `fuzz` (`make fuzz`: many examples, a fresh random seed each run). Choose with
HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Made at run time: Hypothesis feeds string literals of the code under test into text
# strategies, so a canary written in the source would turn up in places that are not secret.
CANARY = "s3cret-" + uuid.uuid4().hex[:16]

settings.register_profile(
    "short",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))


@dataclass
class Tally:
    examples: int = 0
    requests: int = 0
    server_errors: int = 0
    secrets_echoed: int = 0


TALLY = Tally()
_LOCK = threading.Lock()


def count_example() -> None:
    with _LOCK:
        TALLY.examples += 1


def report() -> dict:
    figures = asdict(TALLY)
    figures["profile"] = os.environ.get("HYPOTHESIS_PROFILE", "short")
    return figures


def write_report() -> None:
    path = os.environ.get("FUZZ_REPORT")
    if path and TALLY.requests:
        with open(path, "w") as handle:
            json.dump(report(), handle, indent=2)


def check(response, *, secrets: tuple[str, ...] = (CANARY,)) -> None:
    """The two properties, on one answer (the test client raised already if a view did)."""
    with _LOCK:
        TALLY.requests += 1
        if response.status_code >= 500:
            TALLY.server_errors += 1
    assert response.status_code < 500, response.status_code
    body = response.content if not getattr(response, "streaming", False) else b""
    where = body + "\n".join(f"{k}: {v}" for k, v in response.items()).encode()
    echoed = [secret for secret in secrets if secret.encode() in where]
    if echoed:
        with _LOCK:
            TALLY.secrets_echoed += 1
    assert not echoed, f"secret echoed in a {response.status_code} answer"


def form_body(data: dict) -> bytes:
    """application/x-www-form-urlencoded, with lone surrogates sent as the (invalid) bytes a
    hostile client would send — the test client's own encoder cannot encode them at all."""
    parts = []
    for key, values in data.items():
        for value in values if isinstance(values, list) else [values]:
            raw = str(value).encode("utf-8", "surrogatepass")
            parts.append(f"{quote(str(key).encode('utf-8', 'surrogatepass'))}={quote(raw)}")
    return "&".join(parts).encode("ascii")


def query(data: dict) -> str:
    return form_body(data).decode("ascii")


def path_part(text: str) -> str:
    """A URL path segment, percent-encoded the way `form_body` encodes values."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="/")


# --- Strategies ---------------------------------------------------------------------------------

_alphabet = st.characters(codec=None, categories=None)  # every code point, surrogates included
plain_text = st.text(_alphabet, max_size=60)
deep = st.builds(
    lambda opener, n, tail: opener * n + tail,
    st.sampled_from(["[", "{", '{"a":', '[{"a":', "[[", '{"$k":']),
    st.integers(60, 3000),
    st.sampled_from(["", "1", "]" * 5, "}"]),
)
long_number = st.builds(
    lambda sign, n, tail: sign + "1" * n + tail,
    st.sampled_from(["", "-", "version:", "label:", "0"]),
    st.integers(19, 6000),
    st.sampled_from(["", ".5", "e5", "e999", "²"]),
)
specials = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        '"\\ud800"',
        '{"a": "\\ud800"}',
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "%00",
        "../../etc/passwd",
        "２",
        "²",
        "-1",
        "0",
        "9223372036854775808",
        "00000000-0000-0000-0000-000000000000",
        "stored",
        "latest",
        "label:",
        "label:production",
        "version:",
        "version:1",
        "default",
        "\ufeff{",
        "{}",
        "[]",
        "null",
        "true",
    ]
)
nasty = st.one_of(specials, plain_text, deep, long_number)


def with_canary(strategy):
    """Sometimes the nasty value, sometimes one with the canary inside it."""
    return st.one_of(strategy, st.builds(lambda v: f"{v}{CANARY}", strategy))


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
    specials,
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(plain_text, children, max_size=4)
    ),
    max_leaves=12,
)
