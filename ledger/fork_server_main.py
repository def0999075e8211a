"""Imported by the fork server alone (see `ledger.worker_start`): it takes on the name of
the caller's main module, so the workers forked from it do not run that script again.

A child process runs the parent's main script again unless its own main module already
has that file or module name. The fork server's main module is a ``-c`` command with
neither; this gives it the one the caller named in `MAIN_ENV`. Any other process (whose
main module is a file or a module) is left as it is.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec

from ledger.worker_start import MAIN_ENV


def stand_in() -> bool:
    """Give this process's main module the caller's path or name; True when it did."""
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None) is not None or getattr(main, "__spec__", None) is not None:
        return False  # a script or a module: not the fork server
    how, _, where = os.environ.get(MAIN_ENV, "").partition(":")
    if how == "path" and where:
        main.__file__ = where
    elif how == "name" and where:
        main.__spec__ = ModuleSpec(where, None)
    else:
        return False
    return True


stand_in()
