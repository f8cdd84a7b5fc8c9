"""The package's layout keeps the lesson readable: no import circles, commands only in lenet/cli, the loop short and
free of non-digits, and the run folder's file names spelled in one module. Read from the source, not imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lenet"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The lenet modules `name` imports anywhere in its file (lazy imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lenet"):
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(candidate for candidate in candidates if candidate in MODULES and candidate != name)
    return found


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target] if target in path else [node, target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_module_of_the_package_imports_itself_back_through_others():
    # A package __init__ importing its own submodules is how a package exposes them, not a circle.
    graph = {name: {target for target in imports_of(name) if not name.startswith(target + ".")} for name in MODULES}
    assert cycle_through(graph) is None, f"import circle: {' -> '.join(cycle_through(graph))}"


def test_the_cycle_finder_finds_a_circle():
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": set()}) is None


def test_only_lenet_cli_defines_a_main_and_the_library_never_imports_the_command_line():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
        if not name.startswith("lenet.cli"):
            assert not mains, f"{name} defines main(): commands live in lenet/cli/"
            assert not any(target.startswith("lenet.cli") for target in imports_of(name)), \
                f"{name} imports the command line"


def test_the_training_loop_is_short_and_knows_nothing_of_non_digits():
    source = (PACKAGE / "train.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 200
    tree = ast.parse(source)
    loop = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train_one_epoch")
    text = ast.get_source_segment(source, loop).lower()
    for word in ("digit", "scribble", "outlier", "refus", "familiar", "evidence"):
        assert word not in text, f"train_one_epoch mentions {word!r}"


@pytest.mark.parametrize("file_name", ["config.json", "metrics.json", "best.pt", "last.pt", "epoch_"])
def test_the_run_folders_file_names_are_spelled_in_lenet_runs_alone(file_name):
    spelled = [name for name, path in MODULES.items()
               if re.search(rf"[\"']{re.escape(file_name)}", path.read_text(encoding="utf-8"))]
    assert spelled == ["lenet.runs"], f"{file_name} is spelled in {spelled}"


def test_the_refusal_rule_is_written_once():
    # Comparing a score with its threshold happens in Refusal.refuses and nowhere else in the package.
    rule = re.compile(r"<\s*(self\.|predictor\.|refusal\.)?(familiarity_below|evidence_below)")
    written = [name for name, path in MODULES.items() if rule.search(path.read_text(encoding="utf-8"))]
    assert written == ["lenet.refusal.rule"], written
