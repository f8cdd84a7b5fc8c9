"""One source for every measured figure: benchmarks/results.json, rendered into the pages that quote it.

    python benchmarks/render_results.py           # re-read what can be re-read, then rewrite the pages
    python benchmarks/render_results.py --check   # write nothing; exit 1 naming what is out of date

results.json holds each current figure once: its value, its unit, what it is, the command that measured it and
where that command's output is recorded (`source`: a section of benchmarks/RESULTS.md, or a notebook's stored
outputs), and the current tables of RESULTS.md. A page quotes a figure through a marker written right before it,
`<!--fig:default.mnist_test-->99.25%`, which a markdown viewer does not show; a table of RESULTS.md is rendered
whole after a line `<!--table:speed.pipelines-->`. This script

1. renders the tables into RESULTS.md;
2. re-reads each figure that has a `pattern` from its source (a notebook's stored outputs and its "Time:" line, or
   a section of RESULTS.md), and counts the reading path (`path.*`) from the notebooks the README lists;
3. rewrites every marked figure in README.md, docs/*.md and RESULTS.md.

So re-executing a notebook (or pasting a benchmark's new table into results.json) and running this script updates
every page that quotes the figure. tests/test_figures.py fails when a page and results.json disagree, and when a
page shows a figure with a unit that no marker ties to results.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results.json"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
README = ROOT / "README.md"

# A key is lower-case words joined by dots (default.mnist_test), so that a page can write `<!--fig:KEY-->` in prose.
FIGURE_MARKER = re.compile(r"<!--fig:([a-z0-9_]+(?:\.[a-z0-9_]+)+)-->")
TABLE_MARKER = re.compile(r"^<!--table:([a-z0-9_]+(?:\.[a-z0-9_]+)+)-->\n((?:\|[^\n]*\n)*)", re.M)
# How each unit is written after its number; a unit not listed (count, words, a learning rate) is not written.
UNIT_TEXT = {"%": "%", "x": "x", "s": " s", "ms": " ms", "min": " min", "MB": " MB", "GB": " GB", "KB": " KB",
             "requests/s": " requests/s"}
NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"
# The figure a marker stands before, as a page may hold it before it is rendered: a number or a range, and a unit.
MARKED_FIGURE = re.compile(rf"{NUMBER}(?:–{NUMBER})?(?:%|x\b|\s(?:ms|s|min|MB|GB|KB|requests/s)\b)?")
WORDS_PER_MINUTE = 200
NOTEBOOK_ROW = re.compile(r"^\|\s*\[[^\]]+\]\(notebooks/([^)]+\.ipynb)\)\s*\|", re.M)


def pages() -> list[Path]:
    """The pages whose figures come from results.json: the README, docs/*.md and RESULTS.md."""
    return [README, *sorted((ROOT / "docs").glob("*.md")), RESULTS_MD]


def load_results(path: Path = RESULTS_JSON) -> dict:
    """results.json as a dict: {"figures": {key: entry}, "tables": {key: table}}."""
    return json.loads(path.read_text(encoding="utf-8"))


def format_number(number: float, decimals: int) -> str:
    """A number as the pages write it: fixed decimals, thousands separated by commas."""
    return f"{number:,.{decimals}f}"


def render(entry: dict) -> str:
    """A figure as the pages show it: its value (or range, with an en dash) and its unit."""
    value, decimals = entry["value"], entry.get("decimals", 0)
    if isinstance(value, list):
        text = "–".join(format_number(end, decimals) for end in value)
    else:
        text = format_number(value, decimals)
    return text + UNIT_TEXT.get(entry["unit"], "")


def render_table(table: dict) -> str:
    """A table of results.json as markdown: its header, the rule and its rows."""
    lines = ["| " + " | ".join(table["header"]) + " |", "|" + "---|" * len(table["header"])]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def render_tables(text: str, results: dict, page: str = "") -> tuple[str, list[str]]:
    """`text` with every table marker's table rendered from results.json; and the problems met."""
    problems = []

    def table(match: re.Match) -> str:
        key = match.group(1)
        if key not in results["tables"]:
            problems.append(f"{page}: a table marker names {key!r}, which results.json does not hold")
            return match.group(0)
        return f"<!--table:{key}-->\n" + render_table(results["tables"][key])

    return TABLE_MARKER.sub(table, text), problems


def render_figures(text: str, results: dict, page: str = "") -> tuple[str, list[str]]:
    """`text` with the figure after every marker rendered from results.json; and the problems met."""
    problems, parts, position = [], [], 0
    for match in FIGURE_MARKER.finditer(text):
        key, start = match.group(1), match.end()
        line = text.count("\n", 0, start) + 1
        old = MARKED_FIGURE.match(text, start)
        if key not in results["figures"]:
            problems.append(f"{page}:{line}: a marker names {key!r}, which results.json does not hold")
            continue
        if old is None:
            problems.append(f"{page}:{line}: no figure after the marker of {key!r}")
            continue
        parts += [text[position:start], render(results["figures"][key])]
        position = old.end()
    parts.append(text[position:])
    return "".join(parts), problems


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def section(text: str, wanted: str) -> str | None:
    """The text of the section of a markdown page whose heading has the anchor `wanted`, up to the next heading of
    the same or a higher level; None when there is no such heading."""
    # Lines of code that start with # (shell comments) are no headings; blanked to the same length, so that
    # positions in `prose` are positions in `text`.
    prose = re.sub(r"^```.*?^```", lambda m: re.sub(r"^#", "~", m.group(0), flags=re.M), text, flags=re.M | re.S)
    headings = list(re.finditer(r"^(#{1,6}) +(.+?) *$", prose, re.M))
    for index, heading in enumerate(headings):
        if anchor(heading.group(2)) == wanted:
            level = len(heading.group(1))
            end = next((later.start() for later in headings[index + 1:] if len(later.group(1)) <= level), len(text))
            return text[heading.start():end]
    return None


def stored_output_text(notebook: dict) -> str:
    """Everything a notebook's code cells printed or returned as text, as one string."""
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                parts.append("".join(output["text"]))
            elif output["output_type"] in ("execute_result", "display_data"):
                parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def notebook_text(path: Path) -> str:
    """What a notebook shows as measured: the "**Time:**" line of its first cell and its stored text outputs."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"])
    return "\n".join([line for line in first.splitlines() if "**Time:**" in line] + [stored_output_text(notebook)])


def source_text(source: str, results_md: str | None = None) -> str | None:
    """The recorded output a figure's `source` names: a page or a section of one (`benchmarks/RESULTS.md#anchor`),
    or a notebook's stored outputs (`notebooks/NAME.ipynb`); None when it does not exist."""
    path, _, wanted = source.partition("#")
    if path.endswith(".md") and (ROOT / path).is_file():
        text = (ROOT / path).read_text(encoding="utf-8")
        if path == "benchmarks/RESULTS.md" and results_md is not None:
            text = results_md
        return section(text, wanted) if wanted else text
    if path.endswith(".ipynb") and (ROOT / path).is_file():
        return notebook_text(ROOT / path)
    return None


def parse_number(text: str) -> int | float:
    """A number as a page or an output writes it (2,400 or +13.1), as JSON keeps it: an int when it has no point."""
    number = text.replace(",", "").replace("+", "")
    return float(number) if "." in number else int(number)


def readme_notebooks(readme: str) -> list[str]:
    """The notebooks the README's table lists, in order: the learner's path."""
    return NOTEBOOK_ROW.findall(readme)


def reading_path(readme: str, figures: dict) -> tuple[dict, list[str]]:
    """The words of the notebooks' text, the minutes to read them, the minutes they compute (their stated times)
    and the total, as results.json keeps them (`path.*`); and the problems met."""
    words, compute, problems = 0, 0.0, []
    for name in readme_notebooks(readme):
        path = ROOT / "notebooks" / name
        if not path.is_file():
            problems.append(f"README.md lists notebooks/{name}, which does not exist")
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        words += sum(len("".join(cell["source"]).split()) for cell in cells if cell["cell_type"] == "markdown")
        time = figures.get(f"notebook{name[:2]}.time")
        if time is None:
            problems.append(f"results.json has no notebook{name[:2]}.time, the time of notebooks/{name}")
            continue
        compute += time["value"] / 60 if time["unit"] == "s" else time["value"]
    reading = words / WORDS_PER_MINUTE
    found = {"path.words": round(words, -3), "path.reading_minutes": 5 * round(reading / 5),
             "path.compute_minutes": round(compute), "path.total_minutes": 10 * round((reading + compute) / 10)}
    return found, problems


def refresh(results: dict, results_md: str, readme: str) -> tuple[dict, list[str]]:
    """A copy of results.json with every figure that has a `pattern` re-read from its source, and the reading path
    counted again from the notebooks; and the problems met."""
    fresh, problems = copy.deepcopy(results), []
    for key, entry in fresh["figures"].items():
        if "pattern" not in entry:
            continue
        text = source_text(entry["source"], results_md)
        match = re.search(entry["pattern"], text, re.M) if text is not None else None
        if match is None:
            problems.append(f"{key}: its pattern {entry['pattern']!r} finds nothing in {entry['source']}: "
                            "update the pattern (or the value) in benchmarks/results.json")
            continue
        numbers = [parse_number(group) for group in match.groups()]
        entry["value"] = numbers if isinstance(entry["value"], list) else numbers[0]
    found, path_problems = reading_path(readme, fresh["figures"])
    problems += path_problems
    for key, value in found.items():
        if key in fresh["figures"]:
            fresh["figures"][key]["value"] = value
    return fresh, problems


def rendered_pages(results: dict) -> tuple[dict, dict[Path, str], list[str]]:
    """What this script would write: the refreshed results.json and every page's new text; and the problems."""
    results_md, problems = render_tables(RESULTS_MD.read_text(encoding="utf-8"), results, "benchmarks/RESULTS.md")
    fresh, refresh_problems = refresh(results, results_md, README.read_text(encoding="utf-8"))
    problems += refresh_problems
    texts = {}
    for page in pages():
        text = results_md if page == RESULTS_MD else page.read_text(encoding="utf-8")
        texts[page], page_problems = render_figures(text, fresh, page.relative_to(ROOT).as_posix())
        problems += page_problems
    return fresh, texts, problems


def dump(results: dict) -> str:
    """results.json as written: one figure or table row per line, so that a change shows as one line in a diff."""
    lines = ["{", '  "about": ' + json.dumps(results["about"]) + ",", '  "figures": {']
    figures = [f"    {json.dumps(key)}: {json.dumps(entry, ensure_ascii=False)}"
               for key, entry in results["figures"].items()]
    lines += [",\n".join(figures), "  },", '  "tables": {']
    tables = []
    for key, table in results["tables"].items():
        rows = ",\n".join(f"        {json.dumps(row, ensure_ascii=False)}" for row in table["rows"])
        fields = [f'      "{field}": {json.dumps(value, ensure_ascii=False)}' for field, value in table.items()
                  if field != "rows"]
        body = ",\n".join(fields) + f',\n      "rows": [\n{rows}\n      ]'
        tables.append(f"    {json.dumps(key)}: {{\n{body}\n    }}")
    lines += [",\n".join(tables), "  }", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page or results.json "
                                                             "is out of date (default: off, rewrite them)")
    args = parser.parse_args(argv)
    results = load_results()
    fresh, texts, problems = rendered_pages(results)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    stale = [RESULTS_JSON] if dump(fresh) != RESULTS_JSON.read_text(encoding="utf-8") else []
    stale += [page for page, text in texts.items() if text != page.read_text(encoding="utf-8")]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}: run python benchmarks/render_results.py", file=sys.stderr)
        return 1 if stale or problems else 0
    if problems:
        return 2
    RESULTS_JSON.write_text(dump(fresh), encoding="utf-8")
    for page, text in texts.items():
        page.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
