"""The layout's import rules hold, and the check that enforces them fails when broken."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "policy", "security", "iot_gateway", "streams", "devstack", "iotctl")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The production packages and the contract configuration, in a folder of their own."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_every_import_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported", "broken"),
    [
        ("security/hooks.py", "devstack.clients", "security is not allowed to import devstack"),
        ("streams/query/api.py", "iot_gateway.config", "streams is not allowed to import"),
        ("contracts/topics.py", "policy", "contracts is not allowed to import policy"),
        ("streams/store/port.py", "streams.worker.runtime", "No cycles are allowed in streams"),
    ],
)
def test_a_forbidden_import_breaks_the_check(
    tree_copy: Path, module: str, imported: str, broken: str
) -> None:
    with (tree_copy / module).open("a") as file:
        file.write(f"\nimport {imported}  # noqa: E402, F401\n")
    result = _lint_imports(tree_copy)
    assert result.returncode == 1, result.stdout
    assert broken in result.stdout


@pytest.mark.parametrize(
    "module",
    [
        "security.hooks",
        "iot_gateway.app",
        "streams.worker.app",
        "streams.query",
        "streams.replay.rebuild",
    ],
)
def test_production_modules_load_no_dev_stack_code(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('devstack', 'iotctl'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} loads {result.stdout.strip()}"


@pytest.mark.parametrize(
    "init",
    sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")),
)
def test_every_package_declares_its_public_surface(init: str) -> None:
    """A deliberate ``__all__`` (ruff keeps it sorted) whose names all exist."""
    module = importlib.import_module(init.removesuffix("/__init__.py").replace("/", "."))
    assert isinstance(module.__all__, list)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
