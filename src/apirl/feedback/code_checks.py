"""The tools judge's checks that need only the code (and the installed libraries): does it parse, does every
import resolve, is every name it reads defined, is it complete (no placeholders, calls an API). Each is a pure
function `code -> Decision` (None: cannot decide, never a guess); `apirl.feedback.tools` has the judge and what
each check abstains on. The API checks (api_exists, arguments) are in `apirl.feedback.api_checks`."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from types import ModuleType
from typing import NamedTuple

from apirl.code_facts import MODULE_ALIASES, api_calls, free_variables, imported, parse
from apirl.execution.installed import is_installed, lookup

# Placeholders: comments that say code is missing, `<...>` tokens and YOUR_KEY-style constants in strings.
_PLACEHOLDER_COMMENT_RE = re.compile(
    r"\b(TODO|FIXME)\b"
    r"|(?i:\byour\s+(own\s+)?(code|logic|implementation)\b"
    r"|\b(insert|add|put|write)\s+(the\s+|your\s+|some\s+)?(code|logic|implementation)\b"
    r"|\bimplement\s+(this|me|here)\b)")
_ANGLE_RE = re.compile(r"<([^<>\n]{1,60})>")
_SPECIAL_TOKEN_RE = re.compile(r"/?[a-z]+\d*|\|.*\||extra_id_\d+|(?i:mask|pad|unk|cls|sep|eos|bos|s|/s)")
_CONSTANT_PLACEHOLDER_RE = re.compile(r"(YOUR|INSERT|ENTER)_[A-Z0-9_]+")



class Decision(NamedTuple):
    """A check's answer: True/False when decided, None when it cannot tell; `detail` says why."""

    value: bool | None
    detail: str = ""


def check_syntax(code: str) -> Decision:
    """Whether the code parses: a snippet that does not cannot run at all."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(False, f"SyntaxError: {tree.msg} (line {tree.lineno})")
    return Decision(True, "parses")


def _name_roles(tree: ast.AST) -> dict[str, set[str]]:
    """How each name is read, where it matters: 'call' (`f(...)`) and 'attr' (`m.x`)."""
    roles: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            roles.setdefault(node.func.id, set()).add("call")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            roles.setdefault(node.value.id, set()).add("attr")
    return roles


def _star_modules(tree: ast.AST) -> list[str]:
    return [node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and any(a.name == "*" for a in node.names)]


def _undefined(tree: ast.Module, code: str) -> tuple[list[str], list[str]]:
    """Free names (read, never bound, not builtins) split into (undefined, maybe defined by a star import
    from a module we cannot look into). A star import from an installed module defines what the module has."""
    free = free_variables(code)
    stars = _star_modules(tree)
    undefined, maybe = [], []
    for name in free:
        found = [lookup(f"{module}.{name}").status for module in stars]
        if "found" in found:
            continue
        (maybe if "unknown" in found else undefined).append(name)
    return undefined, maybe


def _looks_imported(name: str, roles: set[str]) -> bool:
    """Whether a free name stands for a module, class or function (which must be imported), rather than an
    input value the snippet assumes (`review_text`, which is a missing definition, not a missing import)."""
    if "call" in roles:
        return True
    if name[:1].isupper() and any(c.islower() for c in name) and "_" not in name:  # CamelCase: a class
        return True
    return "attr" in roles and (name in MODULE_ALIASES or is_installed(name))


def _import_problems(tree: ast.Module) -> tuple[list[str], list[str]]:
    """(wrong, undecidable) imports: each import must name an installed module (and `from m import a` an
    attribute or submodule of it); a module that is not installed is undecidable, not wrong."""
    wrong, unknown = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            wrong.append(f"relative import {'.' * node.level}{node.module or ''} (a snippet has no package)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found = lookup(alias.name)
                if found.status == "found" and not isinstance(found.obj, ModuleType):
                    wrong.append(f"import {alias.name}: not a module")
                elif found.status != "found":
                    (wrong if found.status == "missing" else unknown).append(f"import {alias.name}: {found.detail}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = lookup(node.module)
            if module.status != "found" or not isinstance(module.obj, ModuleType):
                problem = module.detail or f"{node.module} is not a module"
                (unknown if module.status == "unknown" else wrong).append(f"from {node.module}: {problem}")
                continue
            for alias in node.names:
                if alias.name == "*":
                    continue
                found = lookup(f"{node.module}.{alias.name}")
                if found.status != "found":
                    (wrong if found.status == "missing" else unknown).append(
                        f"from {node.module} import {alias.name}: {found.detail}")
    return wrong, unknown


def _module_attribute_problems(tree: ast.Module) -> list[str]:
    """`m.x` where `m` is an imported module that has no `x` (attribute or submodule): `transformers.Pipelin`."""
    through_imports = imported(tree)
    wrong = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        target = through_imports.get(node.value.id)
        if target is None or not isinstance(node.ctx, ast.Load):
            continue
        module = lookup(target)
        if module.status == "found" and isinstance(module.obj, ModuleType):
            found = lookup(f"{target}.{node.attr}")
            if found.status == "missing":
                wrong.append(f"{node.value.id}.{node.attr}: {found.detail}")
    return list(dict.fromkeys(wrong))


def check_imports(code: str) -> Decision:
    """Whether the code imports every module, class and function it uses, and every import resolves in the
    installed environment. A library that is not installed here cannot be checked: unknown, not wrong."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(None, "does not parse")
    roles = _name_roles(tree)
    undefined, maybe = _undefined(tree, code)
    missing = [name for name in undefined if _looks_imported(name, roles.get(name, set()))]
    wrong, unknown = _import_problems(tree)
    wrong += _module_attribute_problems(tree)
    if missing:
        wrong.insert(0, f"used but never imported: {', '.join(missing)}")
    if wrong:
        return Decision(False, "; ".join(wrong))
    maybe_missing = [name for name in maybe if _looks_imported(name, roles.get(name, set()))]
    if maybe_missing:
        unknown.append(f"maybe from a star import: {', '.join(maybe_missing)}")
    if unknown:
        return Decision(None, "; ".join(unknown))
    return Decision(True, "every import resolves")


def check_defined_names(code: str) -> Decision:
    """Whether every name the code reads is bound somewhere (assigned, imported, a parameter...) or a builtin.
    Gorilla-style fragments often read inputs they never define (`classifier(text)`): that is a "no"."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(None, "does not parse")
    undefined, maybe = _undefined(tree, code)
    if undefined:
        return Decision(False, f"undefined: {', '.join(undefined)}")
    if maybe:
        return Decision(None, f"maybe from a star import: {', '.join(maybe)}")
    return Decision(True, "every name is defined")


# --- complete and logic -------------------------------------------------------------------------------------


def _is_stub_body(body: list[ast.stmt]) -> bool:
    """A block that only says "to be written": `pass` alone, after an optional docstring (`...` and `raise
    NotImplementedError` are found wherever they are)."""
    statements = body[1:] if body and _is_docstring(body[0]) and len(body) > 1 else body
    return len(statements) == 1 and isinstance(statements[0], ast.Pass)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_ellipsis(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis


def _raises_not_implemented(node: ast.AST) -> bool:
    if not isinstance(node, ast.Raise) or node.exc is None:
        return False
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _is_angle_placeholder(inner: str) -> bool:
    """`<your_model_id>`, `<image path>`, `<API_KEY>` are placeholders; `<mask>`, `</s>`, `<extra_id_0>`,
    `<|endoftext|>`, `<START>` (Pygmalion's dialogue marker) and HTML tags are real tokens of the text."""
    if _SPECIAL_TOKEN_RE.fullmatch(inner):
        return False
    return bool(re.fullmatch(r"[A-Za-z][\w .'-]*", inner)) and (
        " " in inner or "_" in inner or "your" in inner.lower())


def placeholders(code: str, tree: ast.Module) -> list[str]:
    """What marks the code as unfinished: stub blocks, `...` statements, `raise NotImplementedError`, TODO-style
    comments, `<...>` tokens and YOUR_KEY-style constants in strings. Example inputs the snippet assumes
    ('path/to/image.jpg') are not placeholders: the binding mode of the harness supplies them."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.For | ast.While | ast.If | ast.With) \
                and _is_stub_body(node.body):
            found.append(f"`pass` as the only body on line {node.lineno}")
        if isinstance(node, ast.stmt) and _is_ellipsis(node):
            found.append(f"'...' on line {node.lineno}")
        if _raises_not_implemented(node):
            found.append(f"raise NotImplementedError on line {node.lineno}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            tokens = [m.group(0) for m in _ANGLE_RE.finditer(node.value) if _is_angle_placeholder(m.group(1))]
            tokens += [m.group(0) for m in _CONSTANT_PLACEHOLDER_RE.finditer(node.value)]
            found += [f"placeholder {token} on line {node.lineno}" for token in tokens]
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT and _PLACEHOLDER_COMMENT_RE.search(token.string):
                found.append(f"comment {token.string.strip()!r} on line {token.start[0]}")
    except (tokenize.TokenError, SyntaxError):
        pass
    return list(dict.fromkeys(found))


def check_complete(code: str) -> Decision:
    """Whether the code is a finished program: it parses, has no placeholders and calls an API."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(False, "does not parse")
    found = placeholders(code, tree)
    if found:
        return Decision(False, "; ".join(found))
    if not api_calls(tree):
        return Decision(False, "calls no API (no pipeline, from_pretrained or other hub loader)")
    return Decision(True, "no placeholders, calls an API")


