"""The README is a front page and the pages under docs/ can be followed: every link resolves, nothing points
into the development set-up, and the layout page names every module. Reads files only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_notebooks_readme import FENCE, PAGES, ROOT, links

README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The pages the README sends a reader to, one topic each.
TOPICS = ["install", "training", "your-own-digits", "export-and-serving", "speed", "troubleshooting", "tests",
          "layout"]
COMMANDS = ["lenet-train", "make tensorboard", "lenet-predict", "lenet-score", "lenet-serve", "lenet-export"]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_the_readme_is_a_front_page_of_at_most_1200_words():
    words = len(README.read_text(encoding="utf-8").split())  # what `wc -w` counts
    assert words <= 1200, f"README.md has {words} words: move detail to a page under docs/"


def test_every_topic_has_its_page_and_the_readme_links_it():
    targets = {target.split("#", 1)[0] for target in links(README.read_text(encoding="utf-8"))}
    for topic in TOPICS:
        assert (DOCS / f"{topic}.md").is_file(), f"docs/{topic}.md is missing"
        assert f"docs/{topic}.md" in targets, f"the README does not link docs/{topic}.md"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_resolves_to_a_file_and_heading(page):
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page_id(page)} links to {broken}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_internal_issue_numbers_or_development_paths(page):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(?i)\bissues?\s+#?\d|(?<![\w/])#\d+\b", text), "a reader cannot look up internal issues"
    assert "shared/" not in text and "/work/" not in text, "a path of the development machine"


def test_the_readme_offers_the_cpu_only_install_before_any_install():
    readme = README.read_text(encoding="utf-8")
    first_install = min(readme.find(command) % (len(readme) + 1)
                        for command in ("make install", "make train", "make lab", "pip install"))
    assert readme.index("TORCH_INDEX=https://download.pytorch.org/whl/cpu") <= first_install + len("make install ")


def test_the_readme_commands_table_links_each_command_to_its_page():
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for command in COMMANDS:
        row = next((line for line in rows if command in line), None)
        assert row is not None, f"the README's commands table has no row for {command}"
        assert re.search(r"\]\(docs/[\w-]+\.md(#[\w-]+)?\)", row), f"the row for {command} links no page"


def test_the_layout_page_names_every_module_and_benchmark():
    layout = (DOCS / "layout.md").read_text(encoding="utf-8")
    modules = [path.relative_to(ROOT / "lenet").as_posix() for path in (ROOT / "lenet").rglob("*.py")
               if path.name != "__init__.py"]
    scripts = [path.name for path in (ROOT / "benchmarks").glob("*.py") if path.name != "__init__.py"]
    missing = [name for name in modules + scripts if f"`{name}`" not in layout]
    assert not missing, f"docs/layout.md does not describe {missing}"
