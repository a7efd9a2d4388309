"""The ``mgbench`` command line: a thin shell over the library.

One module per topic registers its commands on the group :data:`cli` of :mod:`mgbench.cli.common`
(``core``: run, train, results, models, suites; ``attack``; ``corruptions``; ``mgnet``; ``report``;
``validate``); :func:`main` is the console entry point. The command modules import
:mod:`mgbench.cli.common` (never this package), so the imports run one way.
"""

from mgbench.cli import attack, core, corruptions, mgnet, report, validate  # noqa: F401  (register their commands)
from mgbench.cli.common import cli, main

__all__ = ["cli", "main"]
