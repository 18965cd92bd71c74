"""Every ``>>>`` example in the library's docstrings runs, and gives what it shows.

One test per module of ``learnable_fusion_loss`` and of the TDFusion project's
package (the public-API examples are
kornia-style documentation; this keeps them true). Run in-process with
:mod:`doctest` rather than ``--doctest-modules``, so that no project module is
imported twice under two names (which would register its classes twice).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import learnable_fusion_loss
import projects.tdfusion.tdfusion as tdfusion

MODULES = sorted(
    [info.name for info in pkgutil.walk_packages(learnable_fusion_loss.__path__, "learnable_fusion_loss.")]
    + [info.name for info in pkgutil.walk_packages(tdfusion.__path__, "projects.tdfusion.tdfusion.")]
)


def test_the_walk_finds_the_library():
    assert {"learnable_fusion_loss.meta.guard", "learnable_fusion_loss.apis.tiling",
            "learnable_fusion_loss.metrics.table", "projects.tdfusion.tdfusion.fusion"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # each example sees a copy of its module's globals
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
