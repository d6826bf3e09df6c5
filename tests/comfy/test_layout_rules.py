"""Rules of the product's layout that a refactor could silently break."""
import ast
import subprocess
import sys

from harness.comfy_runtime import REPO

ALLOWED_TOP = {"torch"} | set(sys.stdlib_module_names)


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def test_cache_core_imports_only_torch_and_stdlib():
    bad = []
    for f in sorted((REPO / "cache_core").rglob("*.py")):
        for mod, level in _imports(f):
            if level == 0 and mod.split(".")[0] not in ALLOWED_TOP:
                bad.append(f"{f.relative_to(REPO)}: {mod}")
    assert not bad, bad


def test_cache_core_imports_without_comfy_on_path():
    code = ("import sys; sys.path.insert(0, %r); import cache_core; "
            "assert not any(m == 'comfy' or m.startswith('comfy.') for m in sys.modules), 'comfy imported'; "
            "print('ok')") % str(REPO)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_no_pickle_or_eval_in_shipped_code():
    for sub in ("cache_core", "nodes"):
        for f in (REPO / sub).rglob("*.py"):
            src = f.read_text()
            for banned in ("import pickle", "torch.load(", "eval(", "exec("):
                assert banned not in src, f"{f.relative_to(REPO)} uses {banned}"


def test_pyproject_has_registry_section_and_no_extra_runtime_deps():
    import tomllib
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["dependencies"] == []
    assert {"PublisherId", "DisplayName"} <= set(meta["tool"]["comfy"])


def test_pyproject_passes_comfyui_own_registry_parser(comfy):
    """ComfyUI's comfy_config parser (what the Comfy Registry tooling reads) finds every field it needs."""
    import re
    from comfy_config.config_parser import extract_node_configuration
    cfg = extract_node_configuration(str(REPO))          # the pack folder, as ComfyUI passes it
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([._-][A-Za-z0-9]+)*", cfg.project.name) and len(cfg.project.name) < 100
    assert re.fullmatch(r"\d+\.\d+\.\d+", cfg.project.version)
    assert cfg.project.urls.repository.startswith("https://")
    assert cfg.project.supported_comfyui_version == ">=0.3.75" and cfg.project.dependencies == []
    assert cfg.tool_comfy.publisher_id and cfg.tool_comfy.display_name == "CacheKit"
    assert cfg.tool_comfy.icon == "" or cfg.tool_comfy.icon.startswith("https://")
    assert cfg.tool_comfy.includes and all((REPO / p).exists() for p in cfg.tool_comfy.includes)
