"""Loading a script that is not in a package (bench/*.py, the demo's plot script) as a module, by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def load_script(name: str, path: Path, siblings: bool = False) -> ModuleType:
    """`siblings`: put the script's folder on sys.path first, for a bench that imports its siblings (never
    for a folder whose file names shadow the standard library, like the demo's trace.py)."""
    if siblings and str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
