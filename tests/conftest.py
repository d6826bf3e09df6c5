import sys

import pytest

from harness import comfy_runtime   # scripts/harness: pytest.ini puts scripts/ on the path


@pytest.fixture(scope="session")
def comfy():
    """The real ComfyUI runtime CACHEKIT_COMFY picks (the current line by default), imported as a library (CPU)."""
    comfy_runtime.load()
    import comfy.model_management
    return comfy.model_management


@pytest.fixture(scope="session")
def ck(comfy):
    """This repository loaded as a ComfyUI custom node package."""
    from harness import pack
    return pack.load()


@pytest.fixture(autouse=True)
def _free_models():
    yield
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()


# make check, the edit-test loop: the engine alone, the nodes' inputs, the fixes for ComfyUI's changes, and every
# family x method test on the Wan and Flux classes (the two layouts: one stream of blocks, double then single)
_FAST_MODULES = {"test_engine", "test_policies", "test_steps", "test_layout_rules", "test_inputs", "test_comfy_changes"}
_FAST_FAMILIES = {"wan", "flux"}
_COMPILES = "test_torch_compile"     # torch.compile takes 10 s a test: make test runs it, the edit loop does not


def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(item, "callspec", None)
        if item.module.__name__ in _FAST_MODULES or (params and params.params.get("family") in _FAST_FAMILIES
                                                     and item.module.__name__ != _COMPILES):
            item.add_marker(pytest.mark.fast)


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
