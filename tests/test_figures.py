"""Every measured figure the README and docs/ show is the current value in benchmarks/results.json.

A page ties a figure to results.json with a marker right before it (`<!--fig:default.mnist_test-->99.25%`),
which `python benchmarks/render_results.py` renders; RESULTS.md's current tables are rendered from it too.
These tests fail, naming the page, the line and the figure, when a marked figure is not its key's current value,
and when a figure with a unit (%, s, min, ms, MB, a ratio, a count "N of M", a decimal) is tied to no key and not
in the short allow-list below. History stays in RESULTS.md under headings that say so, and no page links to it.
Reads files only; nothing is trained or executed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.render_results import (FIGURE_MARKER, MARKED_FIGURE, RESULTS_JSON, RESULTS_MD, ROOT, TABLE_MARKER,
                                       anchor, dump, format_number, load_results, refresh, render, render_tables,
                                       section, source_text)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = load_results()

VALUE = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
UNIT = r"(?:%|x\b|\s?(?:ms|s|min|minutes?|seconds?|h|hours?|MB|GB|KB|GiB|MiB|images/s|requests/s|req/s)\b)"
# A figure: a number (or a range of two) with a unit, a count of a set ("181 of 1,000"), or any decimal number.
FIGURE = re.compile(rf"(?<![\w.,/+-])[-+]?(?:(?:{VALUE})(?:\s?[–-]\s?(?:{VALUE}))?{UNIT}"
                    rf"|\d[\d,]* of (?:the |these |its )?\d[\d,]*|\d+\.\d+(?![\w.]*\d))")
# Versions (torch 2.14.1, Starlette 0.44) and paper identifiers are names, not figures.
PACKAGES = ("python|torch|torchvision|numpy|scipy|pillow|cuda|chromium|fastapi|starlette|uvicorn|onnx|onnxscript|"
            "onnxruntime|pytest|hypothesis|playwright|httpx2?|nbval|tensorboard|tqdm|matplotlib|jupyterlab|ipywidgets|"
            "anywidget|python-multipart|v|arxiv:?")
VERSION = re.compile(rf"(?i)\b(?:{PACKAGES})\s*[<>=]*\s*\d+(?:\.\d+)+\+?|\b\d+\.\d+\.\d+\b")

# Figures with a unit that are not measurements, so no key holds them: page -> figure as found -> why.
ALLOWED = {
    "README.md": {
        "99.05%": "published: LeCun et al. 1998 report 0.95% test error for LeNet-5",
        "99.2%": "published: the same paper, 0.8% with distorted training images",
        "0.1": "a setting: the learning rate at which notebook 04 shows a dead network",
    },
    "docs/training.md": {
        "15%": "a setting: the default augmentation scales and shears by up to 15%",
        "0.05": "a setting: the weight of the non-digits' loss (--outlier-weight)",
        "90%": "the definition of calibration: of the answers given at 90%, 90% are right",
        "99%": "a setting: the share of validation digits the two thresholds keep",
        "0.02": "a setting: the peak rate of notebook 08's 1cycle run",
        "5,000 of the 60,000": "a setting: the training images held out for validation (--val-size)",
        "8 MB": "arithmetic: the features of 10,000 digits, 400 half-precision numbers each",
    },
    "docs/your-own-digits.md": {
        "94.9%": "printed by the command shown just above it, in its output block",
        "99%": "a setting: the share of validation digits the two thresholds keep",
        "8 MB": "arithmetic: the features of 10,000 digits, 400 half-precision numbers each",
    },
    "docs/export-and-serving.md": {
        "5.0 MB": "an API constant (MAX_BODY_BYTES), printed by the command shown above it",
        "170 KB": "the size of the test's input image, chosen, not measured",
        "3 s": "a setting: --queue-timeout's default",
    },
}


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, what a reader reads as a measured figure's context) for each line of a markdown page: code
    blocks dropped but for the comments of shell commands, and marked figures, other HTML comments, inline code,
    link targets, web addresses and versions blanked."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "text")
            continue
        if fence is not None:
            line = line.split(" # ", 1)[1] if fence in ("bash", "sh") and " # " in line else ""
        line = re.sub(FIGURE_MARKER.pattern + MARKED_FIGURE.pattern, " ", line)
        line = re.sub(r"<!--.*?-->", " ", line)
        line = re.sub(r"`[^`]*`", " ", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        line = re.sub(r"<?https?://[^\s>)]+>?", " ", line)
        lines.append((number, VERSION.sub(" ", line)))
    return lines


def untied_figures(text: str, allowed: dict[str, str]) -> list[tuple[int, str]]:
    """(line, figure) for each figure with a unit on a page that no marker ties to results.json and that is not
    allowed."""
    return [(number, match.group(0)) for number, line in prose_lines(text) for match in FIGURE.finditer(line)
            if match.group(0) not in allowed]


def stale_figures(text: str, results: dict, page: str) -> list[str]:
    """A sentence for each marked figure on a page that is not its key's current value in results.json."""
    problems = []
    for match in FIGURE_MARKER.finditer(text):
        key, line = match.group(1), text.count("\n", 0, match.start()) + 1
        shown = MARKED_FIGURE.match(text, match.end())
        shown = shown.group(0) if shown else text[match.end():match.end() + 12].split("\n")[0]
        if key not in results["figures"]:
            problems.append(f"{page}:{line}: {shown!r} is marked {key!r}, which benchmarks/results.json does not hold")
        elif shown != render(results["figures"][key]):
            problems.append(f"{page}:{line}: {shown!r} is not the current value of {key} "
                            f"({render(results['figures'][key])!r} in benchmarks/results.json)")
    return problems


def check_page(path: Path, results: dict, allowed: dict[str, str], name: str) -> list[str]:
    """Every problem of one page: marked figures that are not current, and figures tied to no key."""
    text = path.read_text(encoding="utf-8")
    problems = stale_figures(text, results, name)
    problems += [f"{name}:{line}: {figure!r} is tied to no key of benchmarks/results.json: mark it "
                 "<!--fig:KEY--> (python benchmarks/render_results.py renders it) or allow it in tests/test_figures.py"
                 for line, figure in untied_figures(text, allowed)]
    return problems


@pytest.mark.parametrize("page", DOCS, ids=page_id)
def test_every_figure_on_the_page_is_a_current_value_of_results_json(page):
    problems = check_page(page, RESULTS, ALLOWED.get(page_id(page), {}), page_id(page))
    assert not problems, "\n".join(problems)


def test_every_allowed_figure_is_still_on_its_page():
    unused = [f"{name}: {figure!r}" for name, allowed in ALLOWED.items() for figure in allowed
              if figure not in {found for _, found in untied_figures((ROOT / name).read_text(encoding="utf-8"), {})}]
    assert not unused, f"allowed but no longer on the page; drop them from ALLOWED: {unused}"


def test_the_marked_figures_of_results_md_are_current():
    problems = stale_figures(RESULTS_MD.read_text(encoding="utf-8"), RESULTS, "benchmarks/RESULTS.md")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_wrong_value_and_an_untied_figure(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    marker = "<!--fig:default.mnist_test-->"
    text = readme.read_text(encoding="utf-8")
    assert marker + render(RESULTS["figures"]["default.mnist_test"]) in text
    line = text[:text.index(marker)].count("\n") + 1
    readme.write_text(text.replace(marker + render(RESULTS["figures"]["default.mnist_test"]), marker + "99.22%", 1)
                      + "\nOne epoch takes 12.5 s on a laptop.\n", encoding="utf-8")
    problems = check_page(readme, RESULTS, ALLOWED["README.md"], "README.md")
    assert f"README.md:{line}: '99.22%' is not the current value of default.mnist_test ('99.25%' in " \
           "benchmarks/results.json)" in problems
    last = len(readme.read_text(encoding="utf-8").splitlines())
    assert any(problem.startswith(f"README.md:{last}: '12.5 s' is tied to no key") for problem in problems)
    assert len(problems) == 2, problems


def test_the_finder_sees_figures_with_units_and_skips_structure_and_code():
    text = ("Reaches <!--fig:default.mnist_test-->99.25% (99.19–99.28%) in 10.5 s at 3.9x; 181 of the 1,000; "
            "12 epochs of 28x28 images, batch 128, notebook 03, torch 2.14.1, Starlette 0.44, T 1.27, 757 MB, "
            "`--lr 0.05`, [a link](notebooks/07_x.ipynb), <https://arxiv.org/abs/1803.09820>.\n"
            "```bash\nmake benchmark   # about 7 min\nlenet-train --lr 0.5\n```\n```text\n99.0%\n```\n")
    assert [figure for _, figure in untied_figures(text, {})] == [
        "99.19–99.28%", "10.5 s", "3.9x", "181 of the 1,000", "1.27", "757 MB", "7 min"]


def test_every_figure_has_a_value_a_unit_what_it_is_the_command_and_a_source():
    for key, entry in RESULTS["figures"].items():
        assert set(entry) >= {"value", "unit", "what", "command", "source"}, key
        value = entry["value"]
        assert isinstance(value, (int, float)) or (
            isinstance(value, list) and len(value) == 2 and all(isinstance(end, (int, float)) for end in value)), key
        assert source_text(entry["source"]) is not None, f"{key}: its source {entry['source']} does not exist"
    for key, table in RESULTS["tables"].items():
        assert set(table) >= {"what", "command", "source", "header", "rows"}, key
        assert all(len(row) == len(table["header"]) for row in table["rows"]), key


def test_every_figure_is_what_its_source_recorded():
    """A figure re-read by a pattern is checked below; any other must appear, as written, where it was recorded."""
    missing = []
    for key, entry in RESULTS["figures"].items():
        if "pattern" in entry or entry["source"].startswith("README.md"):
            continue
        text = source_text(entry["source"])
        ends = entry["value"] if isinstance(entry["value"], list) else [entry["value"]]
        shown = [format_number(end, entry.get("decimals", 0)) for end in ends]
        if not all(re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) for number in shown):
            missing.append(f"{key}: {render(entry)} is not in {entry['source']}")
    assert not missing, "\n".join(missing)


def test_results_json_holds_what_its_sources_and_the_notebooks_give_now():
    results_md = RESULTS_MD.read_text(encoding="utf-8")
    fresh, problems = refresh(RESULTS, results_md, (ROOT / "README.md").read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)
    changed = [f"{key}: results.json says {render(entry)}, its source now gives {render(fresh['figures'][key])}"
               for key, entry in RESULTS["figures"].items() if entry != fresh["figures"][key]]
    assert not changed, "run python benchmarks/render_results.py:\n" + "\n".join(changed)


def test_the_current_tables_of_results_md_are_rendered_from_results_json():
    text = RESULTS_MD.read_text(encoding="utf-8")
    rendered, problems = render_tables(text, RESULTS, "benchmarks/RESULTS.md")
    assert not problems, "\n".join(problems)
    shown = dict(TABLE_MARKER.findall(text))
    stale = [key for key, body in TABLE_MARKER.findall(rendered) if shown[key] != body]
    assert not stale, f"RESULTS.md's tables {stale} differ from results.json: run python benchmarks/render_results.py"
    assert sorted(shown) == sorted(RESULTS["tables"]), "every table of results.json is shown in RESULTS.md, once"


def history_part(text: str) -> str:
    return text.split("\n## History\n", 1)[1] if "\n## History\n" in text else ""


def test_history_sits_under_headings_that_say_so_and_every_dated_heading_is_history():
    text = RESULTS_MD.read_text(encoding="utf-8")
    assert history_part(text), "RESULTS.md keeps what newer measurements replaced under '## History'"
    for heading in re.findall(r"^#{2,6} +(.+)$", history_part(text), re.M):
        assert "History" in heading, f"RESULTS.md: {heading!r} sits in the History part; its heading says so"
    current = text.split("\n## History\n", 1)[0]
    for heading in re.findall(r"^#{1,6} +(.+)$", current, re.M):
        assert not re.search(r"\d{4}-\d\d-\d\d", heading), f"RESULTS.md: {heading!r} is dated: move it to History"
    for key, entry in RESULTS["figures"].items():
        wanted = entry["source"].partition("#")[2]
        if entry["source"].startswith("benchmarks/RESULTS.md") and wanted:
            assert section(current, wanted), f"{key}: its source {entry['source']} is not a current section"


@pytest.mark.parametrize("page", DOCS, ids=page_id)
def test_no_page_links_to_history_or_dates_a_figure(page):
    text = page.read_text(encoding="utf-8")
    history = {anchor(heading) for heading in
               re.findall(r"^#{2,6} +(.+?) *$", history_part(RESULTS_MD.read_text(encoding="utf-8")), re.M)}
    linked = [target for target in re.findall(r"RESULTS\.md#([\w-]+)", text)
              if target in history or "history" in target]
    assert not linked, f"{page_id(page)} links to History in RESULTS.md as if current: {linked}"
    dated = re.findall(r"\b20\d\d-\d\d-\d\d\b", text)
    assert not dated, f"{page_id(page)} carries dates {dated}: quote the current figure; history stays in RESULTS.md"
    earlier = re.findall(r"(?i)\ban? earlier (?:measurement|run|default)\b", text)
    assert not earlier, f"{page_id(page)} quotes {earlier}: only current figures belong on a page"


def test_results_json_is_written_as_render_results_writes_it():
    assert RESULTS_JSON.read_text(encoding="utf-8") == dump(json.loads(RESULTS_JSON.read_text(encoding="utf-8")))
