"""The layers only point down (.importlinter): page | building > calibration > runtime >
backends > model, and no package imports a command. Checked by import-linter on the real tree,
and shown to fail on a copy of the tree with one upward import added."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("twostream", "engines", "realtime", "calibration", "building", "ui", "benchmarks")
COMMANDS = ("app", "bench", "build_engine", "train", "cli")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(command), "--config", str(tree / ".importlinter")], cwd=tree,
                          capture_output=True, text=True, timeout=120)


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("twostream/preprocess.py", "from realtime import sources"),  # the model package imports the runtime
    ("engines/auto.py", "from building import builder"),  # opening a model reaches export and calibration
    ("calibration/scoring.py", "import building.parity"),  # a cycle between building and calibration
])
def test_an_upward_import_breaks_it(tmp_path, module, upward):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{upward}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout.upper(), result.stdout


def test_no_package_imports_a_command():
    for name in PACKAGES:
        for path in (ROOT / name).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found = [(node.module or "").split(".")[0]]
                else:
                    continue
                assert not set(found) & set(COMMANDS), f"{path.relative_to(ROOT)} imports a command: {found}"
