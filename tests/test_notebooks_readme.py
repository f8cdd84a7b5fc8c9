"""The notebooks, the README and the pages under docs/ agree, and the notebooks keep one shape.

Every figure the README and docs/ quote has one source: the stored outputs of a notebook the page links
to, benchmarks/RESULTS.md or results.json when the page links to it (less RESULTS.md's History), or an
output block (a ```text block right after the ```bash block that printed it) on the page itself or on a docs
page it links to. The README's notebook
table quotes each notebook's own outputs and its own stated time. Every notebook is in the table, titled
"# 0N · Title", says how long it takes, was executed top to bottom without errors, prints the machine its
figures were measured on, writes its runs under runs/notebooks/, and ends with a "Next:" link that
resolves. Its "Try it yourself" section holds prompts only (no code cell, so no answer shows under a prompt),
offers a recall question, a change-and-predict and a stretch, and links its solutions notebook,
notebooks/solutions/<lesson>_solutions.ipynb, which exists and is stored without outputs (nbval runs it).
Reads files only; nothing is executed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.render_results import stored_output_text  # the one reader of a notebook's outputs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # the lessons; not notebooks/solutions/
SOLUTIONS = ROOT / "notebooks" / "solutions"
SOLUTION_NOTEBOOKS = sorted(SOLUTIONS.glob("*_solutions.ipynb"))
# The three kinds of exercise each lesson offers, as its prompts label them: "**1. (recall) ...**".
EXERCISE_KINDS = {"recall": r"\(recall\)", "change and predict": r"\(change[ -]and[ -]predict\)",
                  "stretch": r"\(stretch\)"}
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_JSON = ROOT / "benchmarks" / "results.json"
COMMENT = re.compile(r"<!--.*?-->")  # a marker that ties the figure after it to results.json (tests/test_figures.py)
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
LINK = re.compile(r"\]\(([^)#\s]+\.ipynb)(?:#[^)]*)?\)")
TABLE_ROW = re.compile(r"\|\s*\[[^\]]+\]\(notebooks/([^)]+\.ipynb)\)\s*\|")

# A figure: a number with a decimal point, or a number (or a range of two) followed by a percent sign or a
# unit. Counts of things (5,000 images, 3 seeds, 12 epochs), sizes (28x28, 400 -> 120) and notebook numbers
# are structure, not measurements, and are not checked.
VALUE = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
UNIT = r"(?:%|\s?(?:ms|s|min|MB|GB|KB|GiB|MiB|images/s|requests/s|req/s|x)\b)"
FIGURE = re.compile(rf"(?<![\w.,/-])({VALUE})(?:\s?[–-]\s?({VALUE}))?(?={UNIT})|(?<![\w.,/-])(\d+\.\d+)(?![\w.]*\d)")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
# Versions (torch 2.14.1, Python 3.11+) and paper identifiers (arXiv 1803.09820) are names, not figures.
VERSION = re.compile(r"(?i)\b(?:python|torch|torchvision|numpy|cuda|v|arxiv:?)\s*[<>=]*\s*\d+(?:\.\d+)+\+?|\b\d+\.\d+\.\d+\b")

# Figures from published work, not measured here: page -> figure as written -> the publication it comes from.
CITED = {
    "README.md": {
        "99.05": "LeCun, Bottou, Bengio, Haffner 1998, Gradient-based learning applied to document recognition, "
                 "section III.C: LeNet-5's test error is 0.95%",
        "99.2": "the same paper: 0.8% test error when the training images are distorted",
    },
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"])


def time_line(notebook: dict) -> str:
    """The "**Time:**" line of a notebook's first cell: how long it says it takes."""
    match = re.search(r"\*\*Time:\*\*[^\n]*", source(notebook["cells"][0]))
    return match.group(0) if match else ""


def readme_notebook_rows() -> dict[str, list[str]]:
    """Notebook file name -> the cells of its row in the README's "## The notebooks" table."""
    readme = COMMENT.sub("", (ROOT / "README.md").read_text(encoding="utf-8"))
    section = readme.split("\n## The notebooks\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = TABLE_ROW.match(line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def readme_notebook_table() -> dict[str, str]:
    """Notebook file name -> the last cell (the key result) of its row in the README's notebook table."""
    return {name: cells[-1] for name, cells in readme_notebook_rows().items()}


def values(text: str) -> set[float]:
    """Every number in `text`, as a value (2,400 and 2400 are one number; so are 20 and 20.0)."""
    return {float(number.replace(",", "")) for number in re.findall(VALUE, text)}


def fences(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a markdown page, as (language, body), in order."""
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(text)]


def output_blocks(text: str) -> str:
    """What the page shows commands printing: each ```text block that directly follows a ```bash block."""
    blocks = fences(text)
    return "\n".join(body for (before, _), (language, body) in zip(blocks, blocks[1:])
                     if language == "text" and before == "bash")


def links(text: str) -> list[str]:
    """The targets of the page's markdown links and images, outside code."""
    prose = FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"\]\(([^)\s]+)\)", prose)


def linked_files(page: Path) -> list[Path]:
    """The files in the repository that `page` links to (anchors dropped; web addresses skipped)."""
    targets = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if path.is_file():
            targets.append(path)
    return targets


def prose(text: str) -> str:
    """What a reader reads as text: code removed except the comments of shell commands, links without their
    targets, versions and the README's notebook table (its rows are checked against their own notebook)."""
    comments = [line.split(" # ", 1)[1] for language, body in fences(text) if language in ("bash", "sh")
                for line in body.splitlines() if " # " in line]
    text = COMMENT.sub("", FENCE.sub("", text)) + "\n" + "\n".join(comments)
    text = "\n".join(line for line in text.splitlines() if not TABLE_ROW.match(line))
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"<?https?://[^\s>)]+>?", " ", text)
    return VERSION.sub(" ", text)


def figures(text: str) -> list[str]:
    """Every figure a page's prose quotes, as written (each end of a range on its own)."""
    found = []
    for match in FIGURE.finditer(prose(text)):
        found += [number for number in match.groups() if number]
    return found


def current_results() -> str:
    """benchmarks/RESULTS.md without its History part (measurements a newer one superseded) and without the lines
    that label a figure as history."""
    current = RESULTS.read_text(encoding="utf-8").split("\n## History\n", 1)[0]
    return "\n".join(line for line in current.splitlines() if "history" not in line)


def sources(page: Path) -> str:
    """The text a figure on `page` may be quoted from: the stored outputs of the notebooks it links to,
    RESULTS.md or results.json if it links to them, and the output blocks on the page and on the pages it links
    to."""
    text = page.read_text(encoding="utf-8")
    parts = [output_blocks(text)]
    for path in linked_files(page):
        if path.suffix == ".ipynb":
            parts.append(stored_output_text(load(path)))
        elif path == RESULTS:
            parts.append(current_results())
        elif path == RESULTS_JSON:
            parts.append(path.read_text(encoding="utf-8"))
        elif path.suffix == ".md":
            parts.append(output_blocks(path.read_text(encoding="utf-8")))
    return "\n".join(parts)


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
def test_the_readme_table_gives_the_time_the_notebook_states(path):
    cells = readme_notebook_rows().get(path.name)
    assert cells is not None and len(cells) == 4, f"{path.name}: a row of notebook | teaches | time | key result"
    stated = time_line(load(path))
    assert NUMBER.findall(cells[2]), f"the README gives {path.name} no time"
    missing = [number for number in NUMBER.findall(cells[2]) if number not in NUMBER.findall(stated)]
    assert not missing, f"the README gives {path.name} a time of {cells[2]!r}; the notebook says {stated!r}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_figure_in_the_prose_is_in_a_source_the_page_names(page):
    known = values(sources(page))
    cited = CITED.get(page.relative_to(ROOT).as_posix(), {})
    missing = sorted({figure for figure in figures(page.read_text(encoding="utf-8"))
                      if figure not in cited and float(figure.replace(",", "")) not in known})
    assert not missing, (f"{page.relative_to(ROOT)} quotes {missing}, which neither the notebooks it links to, "
                         "benchmarks/RESULTS.md (if linked) nor an output block (```text after ```bash) says")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_output_block_stands_beside_the_command_that_printed_it(page):
    blocks = fences(page.read_text(encoding="utf-8"))
    orphans = [body[:60] for index, (language, body) in enumerate(blocks)
               if language == "text" and (index == 0 or blocks[index - 1][0] != "bash")]
    assert not orphans, f"{page.relative_to(ROOT)}: ```text blocks without a ```bash command before them: {orphans}"


def test_the_figure_finder_sees_figures_and_skips_structure():
    text = ("Reaches 99.22% (99.19–99.28%) in 10.5 s at 3.9x; 12 epochs of 28x28 images, batch 128, "
            "notebook 03, 5,000 images, torch 2.14.1, Python 3.11, temperature 1.27, 757 MB, 10–13% more, "
            "`--lr 0.05`, [a link](notebooks/07_x.ipynb), <https://arxiv.org/abs/1803.09820>.\n"
            "```bash\nmake benchmark   # about 7 min\n```\n```text\n99.0%\n```\n")
    assert figures(text) == ["99.22", "99.19", "99.28", "10.5", "3.9", "1.27", "757", "10", "13", "7"]
    assert values(output_blocks(text)) == {99.0}


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


MACHINE_PATH = re.compile(r"(?<![\w.~:/])/(?:[\w.-]+/){2,}")  # /home/me/lenet/... : a folder of the machine that ran it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_stored_outputs_show_no_path_of_the_machine_and_no_object_repr(path):
    texts = [output.get("text", "") if output["output_type"] == "stream" else
             {kind: data for kind, data in output.get("data", {}).items() if kind.startswith("text/")}
             for cell in load(path)["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", [])]
    outputs = json.dumps(texts)  # what a reader sees as text; pictures are base64, where any run of letters occurs
    assert not MACHINE_PATH.search(outputs), f"{path.name} prints {MACHINE_PATH.search(outputs).group()}"
    assert "object at 0x" not in outputs, f"{path.name} shows an object's repr instead of the object"


def exercise_cells(cells: list[dict]) -> list[dict] | None:
    """The cells after the "## Try it yourself" heading and before "## What we learned" (None without the heading)."""
    start = next((i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
                  and re.search(r"^## Try it yourself", source(cell), re.M)), None)
    if start is None:
        return None
    end = next((i for i, cell in enumerate(cells) if i > start and cell["cell_type"] == "markdown"
                and re.search(r"^## What we learned", source(cell), re.M)), len(cells))
    return cells[start:end]


def solutions_link(path: Path) -> str:
    """Where a lesson's solutions notebook is, relative to the lesson."""
    return f"solutions/{path.stem}_solutions.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_answer_sits_under_a_prompt_the_exercises_hold_no_code_cell(path):
    section = exercise_cells(load(path)["cells"])
    assert section is not None, f"{path.name} has no '## Try it yourself' section"
    code = [source(cell)[:60] for cell in section if cell["cell_type"] == "code"]
    assert not code, (f"{path.name}: code cells under 'Try it yourself' show their answers (a code host renders "
                      f"collapsed cells open); move them to {solutions_link(path)}: {code}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_lesson_links_its_solutions_notebook_which_exists(path):
    section = exercise_cells(load(path)["cells"]) or []
    text = "\n".join(source(cell) for cell in section if cell["cell_type"] == "markdown")
    target = solutions_link(path)
    assert re.search(rf"\]\({re.escape(target)}(?:#[^)]*)?\)", text), \
        f"{path.name}: link to {target} under the exercises"
    assert (path.parent / target).is_file(), f"{path.name} links to {target}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_lesson_offers_a_recall_question_a_change_and_predict_and_a_stretch(path):
    section = exercise_cells(load(path)["cells"]) or []
    text = "\n".join(source(cell) for cell in section if cell["cell_type"] == "markdown")
    missing = [kind for kind, label in EXERCISE_KINDS.items() if not re.search(label, text, re.I)]
    assert not missing, f"{path.name}: label an exercise of each kind, e.g. '**1. (recall) ...**'; missing: {missing}"


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda path: path.stem)
def test_solutions_notebooks_answer_a_lesson_and_are_stored_without_outputs(path):
    lesson = ROOT / "notebooks" / f"{path.stem.removesuffix('_solutions')}.ipynb"
    assert lesson in NOTEBOOKS, f"{path.name} answers no lesson: there is no notebooks/{lesson.name}"
    cells = load(path)["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code), \
        f"{path.name}: clear its outputs and execution counts (nbval runs it; a stored answer could be stale)"
    # Jupyter runs it in notebooks/solutions/, two levels below the repository.
    assert 'notebook_settings(root="../..")' in source(code[0])
    assert any(f"](../{lesson.name})" in source(cell) for cell in cells if cell["cell_type"] == "markdown"), \
        f"{path.name}: link back to its lesson, ../{lesson.name}"
    code_text = "\n".join(source(cell) for cell in code)
    assert not re.search(r"runs_dir\s*=\s*(?!settings\.runs_dir\b)", code_text), "use runs_dir=settings.runs_dir"


# Figures a lesson's prose may state that no cell prints: settings the lesson chose, or constants it explains,
# not measurements. Lesson -> figure as written -> why it is not measured.
SETTINGS: dict[str, dict[str, str]] = {
    "02_network_and_training_loop": {"0.01": "the learning rate the written-out loop uses", "0.9": "SGD's momentum",
                                     "2.3": "ln 10, the loss of a uniform guess over ten digits",
                                     "2.4": "the square root of 6, by which PyTorch's default init shrinks a layer"},
    "04_tensorboard": {"30": "OneCycleLR's warm-up: the first 30% of the steps (its pct_start)"},
    "07_augmentation": {"30": "the share of training images thickened (Config.thicken)",
                        "20": "the share thinned (Config.thin)"},
    "08_lr_range_test_and_1cycle": {"30": "OneCycleLR's warm-up: the first 30% of the steps (its pct_start)",
                                    "0.95": "the top of the beta1 cycle OneCycleLR runs for Adam",
                                    "0.85": "the bottom of that cycle",
                                    "90": "'90% sure', the phrase notebook 09 examines, in the Next: line"},
    "03_adam_vs_sgd": {"0.05": "SGD's peak learning rate", "0.01": "the ends of the usual ranges of rates",
                       "0.1": "the end of SGD's usual range of rates"},
}
RECORDED = re.compile(r"\((\d[\d,]*) s when these outputs were recorded")


def printed_match(figure: str, printed: set[float]) -> bool:
    """Whether a figure as written is one of the printed values, rounded to the digits it is written with."""
    value, decimals = float(figure.replace(",", "")), len(figure.split(".", 1)[1]) if "." in figure else 0
    return any(abs(value - number) <= 0.5 * 10 ** -decimals + 1e-9 for number in printed)


def recorded_seconds(notebook: dict) -> float | None:
    """How long the stored run took, from the first cell's start to the last cell's reply (nbclient's timings)."""
    from datetime import datetime
    times = [cell["metadata"]["execution"] for cell in notebook["cells"]
             if cell["cell_type"] == "code" and "execution" in cell.get("metadata", {})]
    if not times:
        return None
    start, end = times[0]["iopub.execute_input"], times[-1]["shell.execute_reply"]
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_figure_in_a_lessons_prose_is_one_of_its_own_outputs(path):
    notebook = load(path)
    printed = values(stored_output_text(notebook))
    allowed = SETTINGS.get(path.stem, {})
    stray = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = source(cell)
        if index == 0:  # the Time line's recorded seconds are checked against the run's own timings below
            text = re.sub(r"\*\*Time:\*\*[^\n]*", "", text)
        stray += [f"cell {index}: {figure}" for figure in figures(text)
                  if figure not in allowed and not printed_match(figure, printed)]
    assert not stray, f"{path.name} states figures none of its cells printed: {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_seconds_a_lesson_states_are_what_its_stored_run_took(path):
    notebook = load(path)
    stated = RECORDED.search(time_line(notebook))
    took = recorded_seconds(notebook)
    assert stated and took is not None, "say '(N s when these outputs were recorded ...)' in the Time line"
    assert abs(float(stated.group(1).replace(",", "")) - took) <= max(2.0, 0.05 * took), \
        f"{path.name} says {stated.group(1)} s; its stored run took {took:.0f} s"


def test_a_prose_figure_matches_a_printed_value_only_as_rounded():
    assert printed_match("80", {79.8}) and printed_match("79.8", {79.8}) and printed_match("1,200", {1200.0})
    assert not printed_match("79.7", {79.8}) and not printed_match("81", {79.8})
