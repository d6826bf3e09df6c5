"""The README's generated parts match what they are generated from: the supported-model list is the family table's
(scripts/supported_models.py), and every picture and file it links to is in the repository."""
import re

import pytest

from harness.comfy_runtime import REPO

import supported_models

pytestmark = pytest.mark.fast


def test_readme_lists_the_supported_models_of_the_family_table(ck):
    readme = (REPO / "README.md").read_text()
    assert supported_models.block() in readme, "run scripts/supported_models.py --write"
    from cachekit.nodes.host.families import FAMILIES
    assert all(f"- **{fam.name}**: {fam.models}." in readme for fam in FAMILIES)


def test_readme_links_point_at_files_that_exist():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


def test_the_code_cites_sections_of_its_own_docs():
    """Docstrings cite docs/methods.md by section; every cited section is there, and nothing cites a file a user
    who clones the project does not have."""
    sections = set(re.findall(r"(?m)^## (§[\d.]+)", (REPO / "docs" / "methods.md").read_text()))
    cited = set()
    for path in [*REPO.glob("cache_core/**/*.py"), *REPO.glob("nodes/*.py"), *REPO.glob("tests/*.py"),
                 *REPO.glob("scripts/*.py"), REPO / "web" / "cachekit.js"]:
        if path.name == "test_docs.py":
            continue
        text = path.read_text()
        cited |= set(re.findall(r"docs/methods\.md (§[\d.]+)", text))
        assert "COMFY_RUNTIME.md" not in text and "shared/reference" not in text, path
    assert cited and cited <= sections, cited - sections
