"""The package layering, read from the import graph: data -> reward_model -> policy -> pipelines -> bench.

A module imports only from its own layer or the ones before it; `bench/` (measurements) uses library code and
never a stage driver (`pipelines.stages`); the simulator (`data.sim`) is read only by the pipeline, the
benchmarks and itself, so the data rules also hold for real Reddit; stage drivers (`@register(...)`) live in
`pipelines/stages/`; and no source file grows past 600 lines. The checker is run on a small tree with one
violation of each kind first, so a checker that finds nothing fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("data", "reward_model", "policy", "pipelines", "bench")
SIM_READERS = ("data/sim/", "pipelines/", "bench/")  # path prefixes that may import data.sim
MAX_LINES = 600


def _imports(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `tree`; relative imports resolved against `module`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            # `from pkg import sub` may name a submodule: record both, the rules look at prefixes
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _registers_a_stage(tree: ast.Module) -> list[int]:
    """Lines of functions decorated with `register(...)` (pipelines.stages.register: a stage driver)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                func = dec.func if isinstance(dec, ast.Call) else dec
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name == "register":
                    lines.append(node.lineno)
    return lines


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_violations(root: Path) -> list[str]:
    """Every breach of the rules above in the source tree under `root`, one line each."""
    out = []
    for layer, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            text = path.read_text()
            n_lines = len(text.splitlines())
            if n_lines > MAX_LINES:
                out.append(f"{rel}: {n_lines} lines (at most {MAX_LINES}: split it)")
            tree = ast.parse(text, filename=rel)
            module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            seen: set[tuple[int, str]] = set()  # one report per import statement and rule

            def report(line: int, rule: str, message: str) -> None:
                if (line, rule) not in seen:
                    seen.add((line, rule))
                    out.append(f"{rel}:{line}: {message}")

            for line, name in _imports(tree, module):
                top = name.split(".")[0]
                if top in LAYERS and LAYERS.index(top) > layer:
                    report(line, "up", f"imports {name} from a higher layer ({package} < {top})")
                if package == "bench" and _is_under(name, "pipelines.stages"):
                    report(line, "stages", f"bench imports the stage driver {name} (move what it needs to a library)")
                if _is_under(name, "data.sim") and not rel.startswith(SIM_READERS):
                    report(line, "sim", f"imports the simulator ({name}); only {', '.join(SIM_READERS)} may")
            if not rel.startswith("pipelines/stages/"):
                out += [f"{rel}:{line}: a stage driver (@register) outside pipelines/stages/"
                        for line in _registers_a_stage(tree)]
    return out


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    _write(tmp_path, "data/pairs.py", "from data.sim.world import PairRule\n")
    _write(tmp_path, "reward_model/model.py", "from policy.models import PAD_TOKEN\n")
    _write(tmp_path, "policy/ok.py", "from reward_model import scoring\nimport data.prompts\n")
    _write(tmp_path, "policy/goals/suite.py", "from pipelines import config\n" + "x = 1\n" * MAX_LINES)
    _write(tmp_path, "pipelines/demo.py", "from pipelines.stages import register\n\n@register('x', 'y')\ndef f(ctx):\n"
                                          "    return {}\n")
    _write(tmp_path, "pipelines/stages/rl.py",
           "from data.sim.gold import gold_score\nfrom pipelines.stages import register\n\n@register('ppo', 'help')\n"
           "def ppo(ctx):\n    return {}\n")
    _write(tmp_path, "bench/ppo_settings.py",
           "from pipelines.stages.rl import load_held_out\nfrom pipelines import build\n")
    _write(tmp_path, "bench/all.py", "import pipelines.stages.all\nfrom data.sim import gold\n")
    found = "\n".join(layer_violations(tmp_path))
    assert "data/pairs.py:1: imports the simulator" in found
    assert "reward_model/model.py:1: imports policy.models from a higher layer" in found
    assert "policy/goals/suite.py:1: imports pipelines from a higher layer" in found
    assert f"policy/goals/suite.py: {MAX_LINES + 1} lines" in found
    assert "pipelines/demo.py:4: a stage driver (@register) outside pipelines/stages/" in found
    assert "bench/ppo_settings.py:1: bench imports the stage driver pipelines.stages.rl" in found
    assert "bench/all.py:1: bench imports the stage driver pipelines.stages.all" in found
    assert "policy/ok.py" not in found and "pipelines/stages/rl.py" not in found and "bench/all.py:2" not in found
    assert "from pipelines import build" not in found and "bench/ppo_settings.py:2" not in found
    assert len(layer_violations(tmp_path)) == 7


def test_no_upward_imports_no_stage_drivers_outside_stages_no_long_files() -> None:
    violations = layer_violations(ROOT)
    assert not violations, "layering broken:\n" + "\n".join(violations)
