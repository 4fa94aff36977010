"""Hypothesis profiles for the fuzz tests, chosen with STACKEMU_FUZZ:

- "ci" (the default): no deadline, derandomized so every CI run tries the same cases,
  no example database; each test sets its own count so the folder runs thousands of
  cases in well under a minute.
- "long": STACKEMU_FUZZ=long .venv/bin/pytest tests/fuzz: 200,000 random cases per test
  (STACKEMU_FUZZ_EXAMPLES=N for another count), new ones every run, failures kept in
  hypothesis' example database (.hypothesis/) and replayed first next time;
  pytest-timeout is lifted for them.

The profiles are registered, not loaded: tests elsewhere keep hypothesis' defaults."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz import PROFILE_ENV, examples_override, profile_name

_SLOW_INPUT = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_INPUT,
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=200_000,
    print_blob=True,
    suppress_health_check=_SLOW_INPUT,
)


def pytest_report_header() -> str:
    count = examples_override()
    return f"fuzz profile: {profile_name()} ({PROFILE_ENV})" + (
        f", {count} examples per test" if count else ""
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fuzz test runs hundreds of cases: slow (still part of `make test`); in the
    long profile, without pytest-timeout's limit."""
    long = profile_name() == "long"
    for item in items:
        if item.nodeid.startswith("tests/fuzz/"):
            item.add_marker(pytest.mark.slow)
            if long:
                item.add_marker(pytest.mark.timeout(0))
