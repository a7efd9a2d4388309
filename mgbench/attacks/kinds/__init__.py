"""The registered attacks, one module each. Importing this package imports them in the order of
``MODULES`` (the order ``--help``, errors and ``attack = "all"`` list them in), and each module
registers its attack; the attack registry imports the package on its first lookup. A new attack:
a module here and its name in ``MODULES``."""

import importlib

MODULES = ("fgsm", "pgd", "apgd", "autoattack", "noise", "square")

for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
