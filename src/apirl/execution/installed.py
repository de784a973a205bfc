"""Importing installed library modules safely, for static checks that need to know what a name really is.

The mutant builder and the tools judge ask "does module m have attribute a?" about code they never run. They
import only modules that are built in or live in the standard library / site-packages (never a file in the
working directory that shadows a library), never modules with side effects on import (`antigravity` opens a
browser), and each lookup once.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import site
import sysconfig
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

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


class Lookup(NamedTuple):
    """Where a dotted name stands in the installed libraries."""

    status: str  # found | missing | unknown
    obj: Any = None
    detail: str = ""


@cache
def lookup(dotted: str) -> Lookup:
    """Resolve `a.b.c` in the installed libraries: attributes and submodules of modules, attributes of classes.

    `missing` only when a module or class that exists lacks the name; `unknown` when the top module is not
    installed or cannot be imported, or the chain goes through something else (an instance, a function).
    """
    parts = dotted.split(".")
    top = parts[0]
    if top in NEVER_IMPORT:
        return Lookup("unknown", detail=f"{top} is never imported (side effects)")
    if not is_installed(top):
        return Lookup("unknown", detail=f"module {top!r} is not installed")
    obj: Any = import_installed(top)
    if obj is None:
        return Lookup("unknown", detail=f"module {top!r} fails to import")
    for index, part in enumerate(parts[1:], start=2):
        prefix = ".".join(parts[:index])
        if not (isinstance(obj, ModuleType) or inspect.isclass(obj)):
            return Lookup("unknown", detail=f"{'.'.join(parts[:index - 1])} is neither a module nor a class")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if hasattr(obj, part):
                    obj = getattr(obj, part)
                    continue
            except Exception as exc:  # a lazy attribute that fails to load: exists, but we cannot look at it
                return Lookup("unknown", detail=f"{prefix}: {type(exc).__name__}")
        if not isinstance(obj, ModuleType):
            return Lookup("missing", detail=f"{'.'.join(parts[:index - 1])} has no attribute {part!r}")
        try:
            found = importlib.util.find_spec(prefix) is not None
        except Exception:
            found = False
        if not found:
            return Lookup("missing", detail=f"module {'.'.join(parts[:index - 1])!r} has no {part!r}")
        obj = import_installed(prefix)
        if obj is None:
            return Lookup("unknown", detail=f"module {prefix!r} fails to import")
    return Lookup("found", obj)
