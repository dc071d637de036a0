"""Where the tests find ../shared (read-only data and third-party models).

Locally a missing shared file skips the test that needs it; under CI (env
CI=true) it fails, so a broken checkout of the shared data cannot pass green.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_path(*parts: str) -> Path:
    """The path of ../shared/<parts>; skip (fail under CI) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"shared data missing: {path}"
        if on_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require(condition: bool, why: str) -> None:
    """Skip the test when `condition` is false; under CI, fail it instead."""
    if not condition:
        if on_ci():
            pytest.fail(why)
        pytest.skip(why)


def require_tool(name: str, package: str) -> str:
    """The path of a program the test needs (from Debian's `package`); see require()."""
    import shutil

    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (apt install {package}; "
                              "scripts/install-deps.sh does it)")
    return path


def training_module(name: str):
    """models.training.<name> (the training code beside the package, not installed):
    the tests run with tests/ on the path, so the repository root goes on it first."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"models.training.{name}")
