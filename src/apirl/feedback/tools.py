"""The tools judge: program analysis answers the questions it can decide, and abstains on the rest.

An LLM judge is slow, costs tokens and can be wrong about facts a program checks exactly: does the code parse,
is every name it uses defined or imported, does `from transformers import X` resolve in the installed
libraries, is the model id in the API database, does `pipeline()` take this keyword. This judge answers those
questions deterministically and leaves the rest ("task") to an LLM: `value` None means "cannot decide", never
a guess, so that a hybrid judge can ask the LLM exactly where the tools abstain.

Nothing the snippet contains is executed. Installed library modules are imported to check that a module,
attribute or submodule exists and to read signatures (only modules that live in the standard library or the
site-packages, never the working directory; each lookup is cached). The one library code run with the
snippet's values is a transformers pipeline class's `_sanitize_parameters`, on a bare instance, with the
literal keyword values of the call: the same probe the sandbox's kwarg audit makes (see `kwarg_audit.py`).

Each check is a small pure function of the code (and the API database or the harness's verdict) that returns
a `Decision`; `ToolsJudge` only dispatches. Where a check abstains:

- imports: a module that is not installed (a library we do not have), a star import from one.
- defined_names: names a star import from an uninstalled module might define.
- api_exists: the model id is loaded only through a tokenizer/processor, or the pipeline task is not a literal,
  or the database row's call names neither a task nor a class to compare with.
- arguments: a keyword that lands in a `**kwargs` (except transformers pipelines, probed), a keyword that a
  decorator may translate (a deprecated name), an API call whose callee cannot be imported; no API call at all.
- task: always (an LLM question).
- logic: without the harness's verdict, or when the verdict says nothing about logic (the run stopped on an
  import, a model id, a gap of the harness).

The executability verdict also fills two abstentions when it exists: imports (`import_error` -> no, `ok` ->
yes) and arguments (`bad_arguments` -> no, `ok` -> yes). A static decision is never overridden.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import io
import re
import tokenize
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from apirl.code_facts import (
    AUXILIARY_RE,
    CLASS_LOADERS,
    MODULE_ALIASES,
    ApiCall,
    api_calls,
    dotted_name,
    free_variables,
    imported,
    parse,
    pipeline_tasks,
)
from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.execution.executor import ExecVerdict, runnable_code
from apirl.execution.installed import NEVER_IMPORT, import_installed, is_installed
from apirl.execution.kwarg_audit import ignored_pipeline_kwargs
from apirl.feedback.questions import QUESTIONS, Question
from apirl.feedback.types import Answer, Sample

JUDGE = "tools"

# Hub downloads: a snippet's download fits a row's download whatever the function.
_DOWNLOADERS = frozenset({"hf_hub_download", "snapshot_download", "hf_hub_url", "cached_download"})
_ROW_CLASS_RE = re.compile(r"\b([A-Z]\w*)\s*\.\s*(?:from_pretrained|from_hparams|load_from_hub|from_single_file)\b")
_ROW_CALLEE_RE = re.compile(r"\b([A-Za-z_][\w.]*)\s*\(")
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


# ------------------------------------------------------------------------------------------------------------
# Parsing and looking things up in the installed libraries.


class _Lookup(NamedTuple):
    status: str  # found | missing | unknown
    obj: Any = None
    detail: str = ""


@cache
def _lookup(dotted: str) -> _Lookup:
    """Resolve `a.b.c` in the installed libraries: attributes and submodules of modules, attributes of classes.

    `missing` only when a module or class that exists lacks the name; `unknown` when the top module is not
    installed or cannot be imported, or the chain goes through something else (an instance, a function).
    """
    parts = dotted.split(".")
    top = parts[0]
    if top in NEVER_IMPORT:
        return _Lookup("unknown", detail=f"{top} is never imported (side effects)")
    if not is_installed(top):
        return _Lookup("unknown", detail=f"module {top!r} is not installed")
    obj: Any = import_installed(top)
    if obj is None:
        return _Lookup("unknown", detail=f"module {top!r} fails to import")
    for index, part in enumerate(parts[1:], start=2):
        prefix = ".".join(parts[:index])
        if not (isinstance(obj, ModuleType) or inspect.isclass(obj)):
            return _Lookup("unknown", detail=f"{'.'.join(parts[:index - 1])} is neither a module nor a class")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if hasattr(obj, part):
                    obj = getattr(obj, part)
                    continue
            except Exception as exc:  # a lazy attribute that fails to load: exists, but we cannot look at it
                return _Lookup("unknown", detail=f"{prefix}: {type(exc).__name__}")
        if not isinstance(obj, ModuleType):
            return _Lookup("missing", detail=f"{'.'.join(parts[:index - 1])} has no attribute {part!r}")
        try:
            found = importlib.util.find_spec(prefix) is not None
        except Exception:
            found = False
        if not found:
            return _Lookup("missing", detail=f"module {'.'.join(parts[:index - 1])!r} has no {part!r}")
        obj = import_installed(prefix)
        if obj is None:
            return _Lookup("unknown", detail=f"module {prefix!r} fails to import")
    return _Lookup("found", obj)


# ------------------------------------------------------------------------------------------------------------
# Facts about the code shared by the checks.


# ------------------------------------------------------------------------------------------------------------
# The checks.


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
        found = [_lookup(f"{module}.{name}").status for module in stars]
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
                found = _lookup(alias.name)
                if found.status == "found" and not isinstance(found.obj, ModuleType):
                    wrong.append(f"import {alias.name}: not a module")
                elif found.status != "found":
                    (wrong if found.status == "missing" else unknown).append(f"import {alias.name}: {found.detail}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = _lookup(node.module)
            if module.status != "found" or not isinstance(module.obj, ModuleType):
                problem = module.detail or f"{node.module} is not a module"
                (unknown if module.status == "unknown" else wrong).append(f"from {node.module}: {problem}")
                continue
            for alias in node.names:
                if alias.name == "*":
                    continue
                found = _lookup(f"{node.module}.{alias.name}")
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
        module = _lookup(target)
        if module.status == "found" and isinstance(module.obj, ModuleType):
            found = _lookup(f"{target}.{node.attr}")
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


# --- api_exists ---------------------------------------------------------------------------------------------


def _strip_framework(name: str) -> str:
    """TFBertModel / FlaxBertModel -> BertModel: the same API in another framework."""
    return re.sub(r"^(TF|Flax)(?=[A-Z])", "", name)


@cache
def _auto_families() -> dict[str, frozenset[str]]:
    """transformers model class -> the Auto classes that load it (BertForMaskedLM -> {AutoModelForMaskedLM})."""
    transformers = import_installed("transformers")
    families: dict[str, set[str]] = {}
    if transformers is None:
        return {}
    for auto_name in dir(transformers):
        if not auto_name.startswith("AutoModel"):
            continue
        try:
            mapping = getattr(transformers, auto_name)._model_mapping._model_mapping
        except Exception:
            continue
        for classes in mapping.values():
            for name in classes if isinstance(classes, list | tuple) else (classes,):
                families.setdefault(name, set()).add(auto_name)
    return {name: frozenset(autos) for name, autos in families.items()}


def _families(class_name: str) -> frozenset[str]:
    """The Auto classes a class belongs to; an Auto class is its own family."""
    name = _strip_framework(class_name)
    if name.startswith("AutoModel"):
        return frozenset({name})
    return _auto_families().get(name, frozenset())


@cache
def _normalize_task(task: str) -> str | None:
    """transformers' name of a pipeline task ('sentiment-analysis' -> 'text-classification'); None if unknown."""
    if import_installed("transformers.pipelines") is None:
        return None
    from transformers.pipelines import check_task

    try:
        return check_task(task)[0]
    except Exception:
        return None


@cache
def _task_families(task: str) -> frozenset[str]:
    """The Auto classes a pipeline task loads its model with (fill-mask -> {AutoModelForMaskedLM})."""
    if import_installed("transformers.pipelines") is None:
        return frozenset()
    from transformers.pipelines import SUPPORTED_TASKS

    entry = SUPPORTED_TASKS.get(task, {})
    return frozenset(_strip_framework(cls.__name__) for cls in (*entry.get("pt", ()), *entry.get("tf", ())))


@dataclass(frozen=True)
class _RowApi:
    """What a database row's call loads the model with, read from its text (15 rows' calls do not parse)."""

    tasks: tuple[str, ...]
    classes: tuple[str, ...]
    callees: frozenset[str]


def _row_api(row: ApiRow) -> _RowApi:
    classes = [name for name in _ROW_CLASS_RE.findall(row.api_call) if not AUXILIARY_RE.search(name)]
    return _RowApi(tuple(pipeline_tasks(row.api_call)), tuple(dict.fromkeys(classes)),
                   frozenset(_ROW_CALLEE_RE.findall(row.api_call)))


def _same_family(code_class: str, row_class: str) -> bool:
    """Same class (up to TF/Flax), one loading the other (AutoModelForX / XForY), or the same Auto family;
    in diffusers, `DiffusionPipeline` and `AutoPipelineFor*` load any pipeline."""
    a, b = _strip_framework(code_class), _strip_framework(row_class)
    if a == b or _families(a) & _families(b):
        return True
    generic = ("DiffusionPipeline", "AutoPipelineFor")
    diffusers = all(n.endswith("Pipeline") or n.startswith("AutoPipelineFor") for n in (a, b))
    return diffusers and (a.startswith(generic) or b.startswith(generic))


def _same_call(call: ApiCall, row_callee: str) -> bool:
    """The same function, and the same owner when both name one (`SequenceTagger.load` is not `joblib.load`;
    `sentence_transformers.SentenceTransformer` is the row's `SentenceTransformer`)."""
    parts = row_callee.split(".")
    return parts[-1] == call.callee and (call.owner is None or len(parts) < 2 or parts[-2] == call.owner)


def fits_row(call: ApiCall, row: ApiRow) -> Decision:
    """Whether the call loads the row's model the way the row's `api_call` does: the same pipeline task, the
    same class, or classes of the same Auto family (a pipeline task's Auto classes included)."""
    row_api = _row_api(row)
    if call.callee == "pipeline":
        if call.task is None:
            if not call.node.args and not any(k.arg == "task" for k in call.node.keywords):
                return Decision(True, "pipeline without a task: the hub gives the model's own task")
            return Decision(None, "the pipeline task is not a literal")
        task = _normalize_task(call.task)
        if task is None:
            return Decision(False, f"unknown pipeline task {call.task!r}")
        if row_api.tasks:
            ok = any((_normalize_task(t) or t) == task for t in row_api.tasks)
            return Decision(ok, f"pipeline task {call.task!r} {'matches' if ok else 'differs from'} "
                                f"the row's {row_api.tasks[0]!r}")
        if row_api.classes:
            ok = any(_task_families(task) & _families(c) for c in row_api.classes)
            return Decision(ok, f"pipeline task {call.task!r} {'loads' if ok else 'does not load'} "
                                f"the row's {row_api.classes[0]}")
        return Decision(None, f"the row's call {row.api_call!r} names no task or class")
    if call.owner is not None and call.owner[:1].isupper() and call.callee in CLASS_LOADERS:
        if row_api.classes:
            ok = any(_same_family(call.owner, c) for c in row_api.classes)
            return Decision(ok, f"{call.owner} {'fits' if ok else 'does not fit'} the row's {row_api.classes[0]}")
        if row_api.tasks:
            ok = any(_families(call.owner) & _task_families(_normalize_task(t) or t) for t in row_api.tasks)
            return Decision(ok, f"{call.owner} {'fits' if ok else 'does not fit'} the row's pipeline task "
                                f"{row_api.tasks[0]!r}")
        return Decision(None, f"the row's call {row.api_call!r} names no task or class")
    # Any other loader: the same call as the row's (`SequenceTagger.load`, `YOLO`), or both hub downloads.
    ok = any(_same_call(call, name) for name in row_api.callees) or (
        call.callee in _DOWNLOADERS and any(name.rsplit(".", 1)[-1] in _DOWNLOADERS for name in row_api.callees))
    return Decision(ok, f"{call.loader} {'is' if ok else 'is not'} what the row's call uses")


def check_api_exists(code: str, api_db: ApiDatabase) -> Decision:
    """Whether the code loads API database models (every model id it loads is known) with a class or pipeline
    task that fits the database row. Code that names no model id calls no API: "no"."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(None, "does not parse")
    calls = [call for call in api_calls(tree) if call.model_id]
    if not calls:
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                   and isinstance(node.value, str)}
        if any(api_db.by_model_id(s) for s in strings):
            return Decision(None, "a database model id is named but no loading call takes it directly")
        return Decision(False, "no API call: the code loads no model id")
    unknown = list(dict.fromkeys(call.model_id for call in calls if not api_db.by_model_id(call.model_id or "")))
    if unknown:
        return Decision(False, f"model id not in the API database: {', '.join(unknown)}")
    main = [call for call in calls if not call.auxiliary]
    if not main:
        return Decision(None, f"{calls[0].model_id} is loaded only by {calls[0].loader}")
    verdicts = []
    for call in main:
        decisions = [fits_row(call, row) for row in api_db.by_model_id(call.model_id or "")]
        best = max(decisions, key=lambda d: {True: 2, None: 1, False: 0}[d.value])  # any row it fits will do
        verdicts.append(Decision(best.value, f"{call.model_id} via {call.loader}: {best.detail}"))
    return _combine(verdicts)


def _combine(decisions: list[Decision]) -> Decision:
    """All yes -> yes; any no -> no (with the no's details); else unknown."""
    if any(d.value is False for d in decisions):
        return Decision(False, "; ".join(d.detail for d in decisions if d.value is False))
    if any(d.value is None for d in decisions):
        return Decision(None, "; ".join(d.detail for d in decisions if d.value is None))
    return Decision(True, "; ".join(d.detail for d in decisions))


# --- arguments ----------------------------------------------------------------------------------------------


def _is_transformers_pipeline(obj: Any) -> bool:
    return getattr(obj, "__name__", "") == "pipeline" and getattr(obj, "__module__", "") == "transformers.pipelines"


def _literal(expr: ast.expr) -> Any:
    """The keyword's value for a probe: the literal when it is one, else a stand-in that is not None (None
    would read as "not given" to the code being probed)."""
    try:
        value = ast.literal_eval(expr)
    except Exception:
        return object()
    return object() if value is None else value


def _placeholder_call(call: ast.Call) -> tuple[list[object], dict[str, object]] | None:
    """Stand-in arguments with the call's shape; None when it unpacks `*args` or `**kwargs` (shape unknown)."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    return [object() for _ in call.args], {k.arg: object() for k in call.keywords if k.arg}


def _check_signature(obj: Any, call: ast.Call, name: str) -> Decision:
    """Bind the call's positional count and keyword names to the callee's signature. A keyword that lands in a
    `**kwargs` may be used or silently dropped: unknown."""
    shape = _placeholder_call(call)
    if shape is None:
        return Decision(None, f"{name}(...) unpacks its arguments")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return Decision(None, f"{name} has no readable signature")
    try:
        bound = signature.bind(*shape[0], **shape[1])
    except TypeError as exc:
        rejected = [k for k in shape[1] if k not in signature.parameters]
        if _decorator_may_accept(obj, signature, rejected):
            return Decision(None, f"{name}: {exc}, but its decorator may accept it")
        return Decision(False, f"{name}(...): {exc}")
    var_keyword = next((p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD),
                       None)
    extra = sorted(bound.arguments.get(var_keyword, {})) if var_keyword else []
    if extra:
        return Decision(None, f"{name} takes **{var_keyword}: cannot tell whether it uses {', '.join(extra)}")
    return Decision(True, f"{name}(...) binds")


@cache
def _source_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _decorator_may_accept(obj: Any, signature: inspect.Signature, rejected: list[str]) -> bool:
    """Whether a decorator in front of the signature we read may take what the signature rejects.

    `inspect.signature` follows `__wrapped__`, but a wrapper that takes `**kwargs` may translate deprecated
    names (huggingface_hub's `use_auth_token`, sentence-transformers' `tokenizer_kwargs`, transformers'
    `deprecate_kwarg`). Such a wrapper names what it translates in its closure or in its module's source: a
    rejected keyword written in neither is rejected by the wrapper too. Without keywords to look for (too many
    positional arguments) a wrapper taking `*args` may accept them.
    """
    try:
        outer = inspect.signature(obj, follow_wrapped=False)
    except (TypeError, ValueError):
        return False
    if outer == signature or not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in outer.parameters.values()):
        return False
    if not rejected:
        return True
    function = obj.__init__ if inspect.isclass(obj) else obj
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code is None:
        return True
    written: set[str] = set()
    for cell in function.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        items = [*value, *value.values()] if isinstance(value, dict) else \
            list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        written.update(item for item in items if isinstance(item, str))
    source = _source_text(code.co_filename)
    return any(name in written or re.search(rf"['\"]{re.escape(name)}['\"]", source) for name in rejected)


def _pipeline_probe(pipeline_class: type) -> Any | None:
    """A bare instance of a pipeline class to probe `_sanitize_parameters` on, or None when the probe cannot
    run without a model. A class whose `_sanitize_parameters` takes no `**kwargs` uses exactly the names it
    lists: its probe reports those names (a real call with another name would raise, not drop it)."""
    instance = pipeline_class.__new__(pipeline_class)
    try:
        parameters = inspect.signature(pipeline_class._sanitize_parameters).parameters
    except (TypeError, ValueError, AttributeError):
        return None
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        named = set(parameters) - {"self"}
        instance._sanitize_parameters = lambda **kwargs: sorted(k for k in kwargs if k in named)
        return instance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            instance._sanitize_parameters()
        except Exception:
            return None
    return instance


def _check_pipeline(pipeline: Callable[..., Any], call: ast.Call) -> Decision:
    """`pipeline(task, ...)`: the explicit parameters by signature; the other keywords must be used by the
    task's pipeline class (its `__init__` or `_sanitize_parameters`), as the sandbox's kwarg audit requires."""
    shape = _placeholder_call(call)
    if shape is None:
        return Decision(None, "pipeline(...) unpacks its arguments")
    signature = inspect.signature(pipeline)
    try:
        signature.bind(*shape[0], **shape[1])
    except TypeError as exc:
        return Decision(False, f"pipeline(...): {exc}")
    explicit = set(signature.parameters) - {"kwargs"}
    others = {k.arg: k.value for k in call.keywords if k.arg and k.arg not in explicit}
    if not others:
        return Decision(True, "pipeline(...) binds")
    task_expr = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "task"), None)
    task = task_expr.value if isinstance(task_expr, ast.Constant) and isinstance(task_expr.value, str) else None
    if task is None:
        return Decision(None, f"pipeline without a literal task: cannot tell whether it uses {', '.join(others)}")
    if _normalize_task(task) is None:
        return Decision(None, f"unknown pipeline task {task!r}: cannot tell whether it uses {', '.join(others)}")
    from transformers.pipelines import check_task

    pipeline_class = check_task(task)[1]["impl"]
    probe = _pipeline_probe(pipeline_class)
    if probe is None:
        return Decision(None, f"{pipeline_class.__name__} cannot be probed without a model: cannot tell whether "
                              f"it uses {', '.join(others)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ignored = ignored_pipeline_kwargs(probe, {name: _literal(value) for name, value in others.items()},
                                          explicit)
    if ignored:
        return Decision(False, f"pipeline({task!r}) does not take {', '.join(ignored)} "
                               f"({pipeline_class.__name__} ignores it)")
    return Decision(True, f"pipeline({task!r}) uses {', '.join(others)}")


def check_arguments(code: str) -> Decision:
    """Whether the calls to imported callables pass arguments their signatures take; "yes" needs every API
    (hub-loading) call decided, so a code without API calls or with an undecidable one is unknown."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return Decision(None, "does not parse")
    through_imports = imported(tree)
    api_nodes = {id(call.node) for call in api_calls(tree)}
    wrong, api_decisions = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func)
        root = name.split(".")[0] if name else None
        decision = Decision(None, f"{name or 'the callee'} cannot be imported")
        if name and root in through_imports:
            target = through_imports[root] + name[len(root):]
            found = _lookup(target)
            if found.status == "found" and callable(found.obj):
                if _is_transformers_pipeline(found.obj):
                    decision = _check_pipeline(found.obj, node)
                else:
                    decision = _check_signature(found.obj, node, name)
        if decision.value is False:
            wrong.append(decision.detail)
        if id(node) in api_nodes:
            api_decisions.append(decision)
    if wrong:
        return Decision(False, "; ".join(dict.fromkeys(wrong)))
    if not api_decisions:
        return Decision(None, "no API call")
    return _combine(api_decisions)


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


# What a run's outcome says about the code's logic. Other statuses stopped the run before the logic ran (syntax,
# imports, model ids: other questions) or are the harness's limits (gaps, timeouts, network): unknown.
# early_exit is "no": a snippet that leaves before its last line (sys.exit in an except clause) has not shown that
# its logic runs, and must not turn a failure into an abstention.
_LOGIC_BY_STATUS = {"ok": True, "runtime_error": False, "bad_arguments": False, "unknown_attribute": False,
                    "early_exit": False}
# Where a static check abstains, the run's outcome can still decide.
_FILL_BY_STATUS = {"imports": {"import_error": False, "ok": True}, "arguments": {"bad_arguments": False, "ok": True}}


def check_logic(verdict: ExecVerdict | None) -> Decision:
    """From the executability harness: ran to the end -> yes; a runtime error, bad arguments or an unknown
    attribute -> no; no verdict, or one that stopped before the logic ran -> unknown."""
    if verdict is None:
        return Decision(None, "no executability verdict")
    value = _LOGIC_BY_STATUS.get(verdict.status)
    detail = f"executability ({verdict.mode}): {verdict.status}"
    if verdict.message and value is False:
        detail += f": {verdict.message[:200]}"
    return Decision(value, detail)


# ------------------------------------------------------------------------------------------------------------
# The judge.


_CHECKED = frozenset(q.key for q in QUESTIONS)


class ToolsJudge:
    """Answers the questions program analysis can decide (see the module docstring); deterministic, no LLM."""

    name = JUDGE

    def __init__(self, api_db: ApiDatabase, exec_verdicts: dict[str, ExecVerdict] | None = None) -> None:
        self.api_db = api_db
        self.exec_verdicts = exec_verdicts or {}

    def answer(self, sample: Sample, question: Question) -> Answer:
        """The answer to one question; the harness's verdict fills an abstention where it decides."""
        if question.key not in _CHECKED:
            raise KeyError(f"the tools judge has no check for question {question.key!r}")
        code = runnable_code(sample.completion)
        verdict = self.exec_verdicts.get(sample.sample_id)
        try:
            decision = self._decide(question.key, code, verdict)
        except Exception as exc:  # a snippet nobody foresaw costs this answer only, never the judging run
            decision = Decision(None, f"the {question.key} check failed: {type(exc).__name__}: {exc}"[:500])
        fill = _FILL_BY_STATUS.get(question.key, {})
        if decision.value is None and verdict is not None and verdict.status in fill:
            decision = Decision(fill[verdict.status], f"executability ({verdict.mode}): {verdict.status}; "
                                                      f"statically: {decision.detail}")
        p_yes = None if decision.value is None else float(decision.value)
        return Answer(question.key, decision.value, p_yes, self.name, decision.detail)

    def _decide(self, key: str, code: str, verdict: ExecVerdict | None) -> Decision:
        match key:
            case "imports":
                return check_imports(code)
            case "syntax":
                return check_syntax(code)
            case "defined_names":
                return check_defined_names(code)
            case "api_exists":
                return check_api_exists(code, self.api_db)
            case "arguments":
                return check_arguments(code)
            case "task":
                return Decision(None, "needs an LLM")
            case "complete":
                return check_complete(code)
            case "logic":
                return check_logic(verdict)
        raise AssertionError(key)  # answer() admits only the keys in _CHECKED

    def answer_all(self, sample: Sample) -> list[Answer]:
        """The answers to all eight questions, in QUESTIONS order."""
        return [self.answer(sample, question) for question in QUESTIONS]
