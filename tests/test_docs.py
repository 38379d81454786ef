"""Docs and docstrings cite only files in this repository.

Three rules, over the files git tracks (a fresh clone has exactly these):

1. No tracked text file cites the notes kept outside the repository (the design map, style guide and
   trap list by their file names) or a path into the sibling `shared` folder: a reader of a clone cannot
   open them. Say the point inline instead.
2. Every repository path that README.md or a Markdown file under docs/ mentions exists. A "path" is a
   slash-separated name ending in a file extension (`policy/ppo.py`, `docs/gpu.md`, `configs/demo.yaml`),
   not preceded by a word character, '.', '/', '~' or '-' (so `/data/RS_2023-01.zst`, `~/x/y.py` and
   `.venv/...` are not read as repository paths). It is checked when its first folder is a top-level
   folder of the repository (resolved from the repository root) or a folder beside the document itself
   (resolved from the document's folder: docs/demo-report/REPORT.md shows its own `steer/sensitivity.png`).
   Any other first folder (`runs/<name>/...`, a stage's `eval-policy/...` output) names something a run
   writes, and is not checked. Placeholders are not citations: a path with `*`, `<...>` or a one-letter
   capital file stem (`configs/X.yaml`) is skipped. Markdown link targets (`](...)`) are checked too,
   relative to the document, unless they are URLs or anchors.
3. Every call written in backticks in those documents (`load_causal_lm(name_or_path)`,
   `RewardScorer.score(...)`) names a function or class that a tracked .py file defines or imports, or a
   Python builtin (`max(...)`): a renamed or never-written function is caught.
"""

from __future__ import annotations

import ast
import builtins
import posixpath
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from parts so that this file does not match its own rule.
OUTSIDE_NOTES = re.compile(r"\b(?:" + "|".join(["TRAPS", "DESIGN", "STYLE"]) + r")\.md\b")
SHARED_PATH = re.compile(re.escape("..") + r"/shared\b")
EXTENSIONS = "py|md|yaml|yml|toml|sh|json|png|txt|cfg|ini"
REPO_PATH = re.compile(r"(?<![\w./~-])((?:[\w.-]+/)+[\w.-]+\.(?:" + EXTENSIONS + r"))(?![\w/])")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER_STEM = re.compile(r"^[A-Z]$")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked-file rules need `git ls-files`")
    return [p for p in out.split("\0") if p]


def text_of(rel: str) -> str | None:
    try:
        return (ROOT / rel).read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return None  # binary (png) or removed in the working tree


def cited_paths(text: str) -> list[str]:
    """Repository-looking paths in `text` (REPO_PATH) and relative Markdown link targets."""
    found = [m.group(1) for m in REPO_PATH.finditer(text)]
    for m in MD_LINK.finditer(text):
        target = m.group(1).split("#")[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # not http:, mailto:, ...
            found.append(target)
    return list(dict.fromkeys(found))  # a link's target is also matched as a path: once is enough


def is_placeholder(path: str) -> bool:
    return "*" in path or "<" in path or bool(PLACEHOLDER_STEM.match(Path(path).stem))


def missing_paths(doc: str, text: str, files: set[str], top_folders: set[str]) -> list[str]:
    """Paths `doc` cites (rule 2) that exist neither from the repository root nor from the doc's folder."""
    folder = posixpath.dirname(doc)
    known = set(files)
    for f in files:  # folders count too: a link may point at one
        while (f := posixpath.dirname(f)):
            known.add(f)
    inside = [posixpath.relpath(f, folder or ".") for f in files if not folder or f.startswith(folder + "/")]
    beside = {f.split("/")[0] for f in inside if "/" in f}
    missing = []
    for path in cited_paths(text):
        first = path.split("/")[0]
        if is_placeholder(path) or not (first in top_folders or first in beside or first == ".."):
            continue
        from_root, from_doc = posixpath.normpath(path), posixpath.normpath(posixpath.join(folder, path))
        if from_root not in known and from_doc not in known:
            missing.append(path)
    return missing


def python_names(files: list[str]) -> set[str]:
    """Functions and classes the tracked .py files define, and the names they import."""
    names: set[str] = set()
    for rel in files:
        if rel.endswith(".py") and (text := text_of(rel)) is not None:
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names.update((a.asname or a.name).split(".")[-1] for a in node.names)
    return names


def unknown_calls(text: str, names: set[str]) -> list[str]:
    """Calls in `text`'s code spans (rule 3) whose last name is neither in `names` nor a builtin."""
    calls = [c.group(1) for span in CODE_SPAN.finditer(text) for c in CALL.finditer(span.group(1))]
    last = lambda call: call.split(".")[-1]  # noqa: E731
    return [c for c in dict.fromkeys(calls) if last(c) not in names and not hasattr(builtins, last(c))]


def test_no_file_cites_notes_outside_the_repository() -> None:
    offenders = []
    for rel in tracked_files():
        text = text_of(rel)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_NOTES.search(line) or SHARED_PATH.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not offenders, "cite only files in the repository; state the point inline:\n" + "\n".join(offenders)


def test_paths_in_readme_and_docs_exist() -> None:
    files = tracked_files()
    file_set = set(files)
    top_folders = {Path(f).parts[0] for f in files if len(Path(f).parts) > 1}
    docs = [f for f in files if f == "README.md" or (f.startswith("docs/") and f.endswith(".md"))]
    assert "README.md" in docs and "docs/architecture.md" in docs
    problems = []
    for doc in docs:
        problems += [f"{doc}: {p}" for p in missing_paths(doc, text_of(doc) or "", file_set, top_folders)]
    assert not problems, "docs cite files that are not in the repository:\n" + "\n".join(problems)


def test_functions_named_in_readme_and_docs_exist() -> None:
    files = tracked_files()
    names = python_names(files)
    docs = [f for f in files if f == "README.md" or (f.startswith("docs/") and f.endswith(".md"))]
    problems = [f"{doc}: {call}(...)" for doc in docs for call in unknown_calls(text_of(doc) or "", names)]
    assert not problems, "docs name functions that no tracked .py file defines or imports:\n" + "\n".join(problems)


def test_the_rules_catch_what_they_are_for() -> None:
    """The checks themselves: a missing module, a missing doc and an outside note are found; run outputs,
    absolute paths, placeholders and paths beside a document are not."""
    files = {"policy/ppo.py", "docs/gpu.md", "docs/demo-report/REPORT.md", "docs/demo-report/steer/map.png"}
    tops = {"policy", "docs"}
    text = ("see `policy/ppo.py`, `policy/missing.py` and [gpu](docs/gpu.md), [old](docs/old.md); "
            "outputs in runs/demo/REPORT.md and eval-policy/policy_table.json; /data/RS_2023-01.zst; "
            "`python -m pipelines sft --config configs/X.yaml`, bench/<name>.py, pipelines/stages/*.py")
    assert missing_paths("README.md", text, files, tops) == ["policy/missing.py", "docs/old.md"]
    report = "![map](steer/map.png) ![gone](steer/gone.png) [up](../gpu.md) [top](../../policy/ppo.py)"
    assert missing_paths("docs/demo-report/REPORT.md", report, files, tops) == ["steer/gone.png"]
    assert OUTSIDE_NOTES.search("as " + "TRAPS" + ".md says") and SHARED_PATH.search("see " + ".." + "/shared/x")
    assert not OUTSIDE_NOTES.search("TRAPS_md, MYDESIGN.mdx")
    text = "`load_policy(path)`, `policy.models.load_causal_lm(p)`, `max(a, 1) / len(b)`, `PartialState()`"
    assert unknown_calls(text, {"load_causal_lm", "PartialState"}) == ["load_policy"]
