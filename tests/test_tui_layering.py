"""The engine never imports Textual: the headless services must run without it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import msi_tui.engine


def engine_modules() -> list[str]:
    """Every module under msi_tui/engine, found at test time (new modules are covered too)."""
    found = ["msi_tui.engine"]
    for info in pkgutil.walk_packages(msi_tui.engine.__path__, prefix="msi_tui.engine."):
        found.append(info.name)
    return found


def test_engine_imports_without_textual() -> None:
    modules = engine_modules()
    assert {"msi_tui.engine.events", "msi_tui.engine.stats", "msi_tui.engine.service"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not leaked, leaked[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
