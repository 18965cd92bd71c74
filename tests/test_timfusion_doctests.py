"""Every ``>>>`` example in the TIMFusion project's package runs and gives what it shows.

``tests/test_doctests.py`` collects the library's and TDFusion's modules by an
explicit list; this file does the same for ``projects.timfusion.timfusion`` (run
in-process with :mod:`doctest`, so no module is imported twice under two names).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import projects.timfusion.timfusion as timfusion

MODULES = sorted(info.name for info in pkgutil.walk_packages(timfusion.__path__, "projects.timfusion.timfusion."))


def test_the_walk_finds_the_package():
    assert {"projects.timfusion.timfusion.operations", "projects.timfusion.timfusion.cells",
            "projects.timfusion.timfusion.networks", "projects.timfusion.timfusion.pipeline"} <= set(MODULES)


@pytest.mark.parametrize("name", ["projects.timfusion.timfusion"] + MODULES)
def test_docstring_examples_run(name: str):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
