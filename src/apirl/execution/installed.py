"""Importing installed library modules safely, for static checks that need to know what a name really is.

The mutant builder and the tools judge ask "does module m have attribute a?" about code they never run. They
import only modules that are built in or live in the standard library / site-packages (never a file in the
working directory that shadows a library), never modules with side effects on import (`antigravity` opens a
browser), and each lookup once.
"""

from __future__ import annotations

import importlib
import importlib.util
import site
import sysconfig
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

NEVER_IMPORT = frozenset({"antigravity", "this", "__hello__", "__phello__", "turtle", "turtledemo", "tkinter",
                          "idlelib", "webbrowser"})


@cache
def install_roots() -> tuple[Path, ...]:
    """Where installed modules live: the standard library and the site-packages (not the working directory)."""
    roots = {sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except Exception:
        pass
    return tuple(Path(root).resolve() for root in roots if root)


@cache
def is_installed(top: str) -> bool:
    """Whether a top-level module is built in or installed, so that importing it runs no code of the project."""
    try:
        spec = importlib.util.find_spec(top)
    except Exception:
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
    return any(Path(location).resolve().is_relative_to(root) for location in locations for root in install_roots())


@cache
def import_installed(module: str) -> ModuleType | None:
    """The module, imported once (warnings silenced); None when it is not installed or fails to import."""
    top = module.split(".")[0]
    if top in NEVER_IMPORT or not is_installed(top):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(module)
        except (Exception, SystemExit):
            return None
