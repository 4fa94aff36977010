"""Lint, types and the proto contract are part of the suite (issue: make test runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff() -> None:
    out = _run(str(BIN / "ruff"), "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy() -> None:
    out = _run(str(BIN / "mypy"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_buf_lint() -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        pytest.fail("buf is not installed: run `make install` (npm install of @bufbuild/buf)")
    out = _run(str(buf), "lint")
    assert out.returncode == 0, out.stdout + out.stderr


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    """What `make` generated is what protos/ says now."""
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    out = _run(
        sys.executable, "-m", "grpc_tools.protoc", "-I", "protos",
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", *protos,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for fresh in tmp_path.rglob("*.py"):
        rel = fresh.relative_to(tmp_path)
        current = ROOT / "stackemu" / rel.relative_to("stackemu")
        assert current.read_text() == fresh.read_text(), f"{current} is stale: run `make install`"
