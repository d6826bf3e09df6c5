import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import comfy_runtime  # noqa: E402


@pytest.fixture(scope="session")
def comfy():
    """The real ComfyUI 0.3.75 runtime, imported as a library (CPU)."""
    comfy_runtime.load()
    import comfy.model_management
    return comfy.model_management


@pytest.fixture(scope="session")
def ck(comfy):
    """This repository loaded as a ComfyUI custom node package."""
    import pack
    return pack.load()


@pytest.fixture(autouse=True)
def _free_models():
    yield
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()


# scripts/coverage_table.py runs the family x method tests with this set and builds docs/coverage.md from
# the tests that passed: the table claims nothing no test ran
_PASSED: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _PASSED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    import json
    import os
    out = os.environ.get("CACHEKIT_COVERAGE_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"exitstatus": int(exitstatus), "passed": _PASSED}, f)
