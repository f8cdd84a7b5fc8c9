"""environment.yml (conda) and pyproject.toml (pip) must name the same packages and ranges."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pip_section_of_environment_yml() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    entries = []
    for line in lines[start + 1:]:
        match = re.match(r"\s+- (.+)", line)
        if not match:
            break
        entries.append(match.group(1).strip())
    return {entry for entry in entries if not entry.startswith("-e")}


def test_environment_yml_and_pyproject_name_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    from_pyproject = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert pip_section_of_environment_yml() == from_pyproject


def test_environment_installs_the_package_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()
