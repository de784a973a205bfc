"""The tools judge's API checks: does the model the code loads exist in the API database and fit the row's call
(`check_api_exists`, `fits_row`), and do the calls pass arguments their signatures take (`check_arguments`, with
transformers pipelines probed the way the sandbox's kwarg audit probes them). Pure functions of the code and the
API database that return a `Decision`."""

from __future__ import annotations

import ast
import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from apirl.code_facts import (
    AUXILIARY_RE,
    CLASS_LOADERS,
    HUB_DOWNLOADERS,
    ApiCall,
    api_calls,
    dotted_name,
    imported,
    parse,
    pipeline_tasks,
)
from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.execution.installed import import_installed, lookup
from apirl.execution.kwarg_audit import ignored_pipeline_kwargs
from apirl.feedback.code_checks import Decision

# A database row's call as text (15 rows' calls do not parse): the classes it loads with, its callees.
_ROW_CLASS_RE = re.compile(r"\b([A-Z]\w*)\s*\.\s*(?:" + "|".join(sorted(CLASS_LOADERS)) + r")\b")
_ROW_CALLEE_RE = re.compile(r"\b([A-Za-z_][\w.]*)\s*\(")

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
        call.callee in HUB_DOWNLOADERS and any(name.rsplit(".", 1)[-1] in HUB_DOWNLOADERS for name in row_api.callees))
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
            found = lookup(target)
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


