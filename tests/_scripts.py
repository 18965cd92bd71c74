"""Load a script of the repository (``tools/*.py``, a project's tool) as a module, in-process.

The tools are scripts, not package modules; tests import them this way to call
their functions or to inject a fault into them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The module of the script at ``path`` (named ``_tool_<stem>`` unless ``name``)."""
    spec = importlib.util.spec_from_file_location(name or f"_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
