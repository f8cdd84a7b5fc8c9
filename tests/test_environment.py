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
    extras = [requirement for group in project["optional-dependencies"].values() for requirement in group]
    from_pyproject = set(project["dependencies"]) | {r for r in extras if not r.startswith("lenet[")}
    assert pip_section_of_environment_yml() == from_pyproject


def test_environment_installs_the_package_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_the_base_install_needs_no_notebook_server_or_export_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=,\[ ]", requirement)[0] for requirement in project["dependencies"]}
    assert not base & {"jupyterlab", "matplotlib", "ipywidgets", "anywidget", "fastapi", "uvicorn", "onnx"}
    assert "lenet[notebooks,serve,export]" in project["optional-dependencies"]["all"]


def test_uvicorn_has_an_upper_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (uvicorn,) = [r for r in project["optional-dependencies"]["serve"] if r.startswith("uvicorn")]
    assert "<" in uvicorn
