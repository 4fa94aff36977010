"""Hostile input, fuzzed with hypothesis (issue 10, part 1): malformed frames, headers,
fragments, control messages, SkBuff protobufs and RPC messages into every layer.

Each test takes its settings from `fuzz_settings(n)`: the profile STACKEMU_FUZZ names
("ci", the default, or "long"; tests/fuzz/conftest.py registers both) with `n`
examples in ci and the profile's own count in long. STACKEMU_FUZZ_EXAMPLES=N sets
every test's count in either profile (a long run of a few minutes, say)."""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "STACKEMU_FUZZ"
EXAMPLES_ENV = "STACKEMU_FUZZ_EXAMPLES"
PROFILES = ("ci", "long")


def profile_name() -> str:
    name = os.environ.get(PROFILE_ENV, "ci") or "ci"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {', '.join(PROFILES)}")
    return name


def examples_override() -> int | None:
    raw = os.environ.get(EXAMPLES_ENV, "")
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{EXAMPLES_ENV}={raw!r}: expected a positive number of examples")
    return int(raw)


def fuzz_settings(ci_examples: int) -> settings:
    """The active profile's settings, with `ci_examples` examples under "ci"."""
    name = profile_name()
    profile = settings.get_profile(name)
    count = examples_override() or (ci_examples if name == "ci" else profile.max_examples)
    return settings(profile, max_examples=count)
