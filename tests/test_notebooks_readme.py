"""The notebooks and the README agree, and the notebooks keep one shape.

Every number the README's notebook table quotes appears in that notebook's stored outputs; every
notebook is in the table, titled "# 0N · Title", says how long it takes, was executed top to bottom
without errors, prints the machine its figures were measured on, writes its runs under runs/notebooks/,
and ends with a "Next:" link that resolves. Reads the .ipynb files only; nothing is executed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
LINK = re.compile(r"\]\(([^)#\s]+\.ipynb)(?:#[^)]*)?\)")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"])


def stored_output_text(notebook: dict) -> str:
    """Everything the code cells printed or returned as text, as one string."""
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                parts.append("".join(output["text"]))
            elif output["output_type"] in ("execute_result", "display_data"):
                parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def readme_notebook_table() -> dict[str, str]:
    """Notebook file name -> the last cell of its row in the README's "## The notebooks" table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The notebooks\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*\[[^\]]+\]\(notebooks/([^)]+\.ipynb)\)\s*\|", line)
        if match:
            rows[match.group(1)] = line.rstrip().rstrip("|").rsplit("|", 1)[1].strip()
    return rows


def test_there_are_notebooks_numbered_from_01_without_gaps():
    numbers = [int(path.name[:2]) for path in NOTEBOOKS]
    assert numbers == list(range(1, len(NOTEBOOKS) + 1))


def test_the_readme_table_lists_every_notebook_in_order():
    assert list(readme_notebook_table()) == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_number_in_the_readme_table_is_in_the_notebooks_stored_outputs(path):
    quoted = readme_notebook_table().get(path.name)
    assert quoted is not None, f"{path.name} has no row in the README's notebook table"
    outputs = stored_output_text(load(path))
    missing = [number for number in NUMBER.findall(quoted) if number not in outputs]
    assert not missing, f"the README quotes {missing} for {path.name}, but its stored outputs do not say so"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_opens_alike_and_says_how_long_it_takes(path):
    first = load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    assert re.match(rf"# {path.name[:2]} · \S", source(first)), "heading style: # 0N · Title"
    assert re.search(r"\*\*Time:\*\* .*2-core CPU", source(first)), "state the full mode's time on a 2-core CPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_ends_with_a_next_link_that_resolves(path):
    cells = load(path)["cells"]
    last = source(cells[-1])
    assert cells[-1]["cell_type"] == "markdown" and "\nNext: " in "\n" + last.split("\n\n")[-1]
    assert re.search(r"\]\([^)]+\)", last.split("Next: ", 1)[1]), "the Next: line links somewhere"
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for target in LINK.findall(source(cell)):
                assert (path.parent / target).is_file(), f"{path.name} links to {target}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_stored_outputs_come_from_one_clean_run_top_to_bottom(path):
    cells = [cell for cell in load(path)["cells"] if cell["cell_type"] == "code"]
    ran = [cell for cell in cells if not source(cell).startswith("# NBVAL_SKIP")]
    assert [cell["execution_count"] for cell in ran] == list(range(1, len(ran) + 1))
    errors = [output for cell in cells for output in cell["outputs"] if output["output_type"] == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_names_the_machine_and_thread_count_and_runs_in_full_mode(path):
    notebook = load(path)
    first_code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "notebook_settings()" in source(first_code)
    printed = "".join("".join(output.get("text", "")) for output in first_code["outputs"])
    assert printed.startswith("full mode") and re.search(r"machine: .*\d+ torch threads?\b", printed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_write_their_runs_only_under_runs_notebooks(path):
    code = "\n".join(source(cell) for cell in load(path)["cells"] if cell["cell_type"] == "code")
    assert not re.search(r"runs_dir\s*=\s*(?!settings\.runs_dir\b)", code), "use runs_dir=settings.runs_dir"
