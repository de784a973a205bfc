"""What a snippet is made of, read statically: what it loads from the hub, the names it leaves free, the modules
it imports. One answer for every reader (the executability harness, the tools judge, the mutants, the offline
hub), so that they cannot disagree about what a snippet loads. Nothing here runs the snippet.

- Hub ids: `HUB_ID_RE` ('org/name', 'org/name@revision', never a data file), the loader calls (`api_calls`: a
  pipeline, `X.from_pretrained`, `SentenceTransformer`, `hf_hub_download`, or any library call whose model
  argument is an 'org/name' literal), the repositories a snippet asks for (`loaded_ids`: its API calls and the
  datasets it loads), the known ids it names (`model_ids_in_code`), the pipeline tasks of a text
  (`pipeline_tasks`, also for database rows whose call does not parse).
- Names: the free variables, scope-aware, with how each is used (`free_uses`, `free_variables`), what imports
  bind (`imported`), strings assigned once (`string_variables`), the short names that stand for modules
  (`MODULE_ALIASES`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

BUILTINS = frozenset(dir(builtins))

# A hub repository: 'org/name' (or 'org/name@revision'), not a file path with a data extension.
HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?")
FILE_EXT_RE = re.compile(r"\.(jpe?g|png|gif|bmp|tiff?|webp|wav|mp3|flac|ogg|m4a|mp4|avi|mov|csv|tsv|json|jsonl|txt|md|"
                         r"pdf|html?|xml|ya?ml|pt|pth|bin|ckpt|safetensors|onnx|h5|pkl|pickle|npy|npz|parquet|zip|"
                         r"tar|gz|py|joblib)$", re.IGNORECASE)
# Loaders of a model's helpers: they load the id too, but they are not the API a database row describes.
AUXILIARY_RE = re.compile(r"Tokeni[sz]er|Processor|FeatureExtractor|Config|Scheduler")
# Calls that load an API from the hub: the model id is their first argument (pipeline: the second), or one of
# MODEL_KEYWORDS.
CLASS_LOADERS = frozenset({"from_pretrained", "from_hparams", "load_from_hub", "from_single_file"})
FUNCTION_LOADERS = frozenset({"pipeline", "SentenceTransformer", "CrossEncoder", "hf_hub_download",
                              "snapshot_download", "hf_hub_url", "load_from_hub"})
DATASET_LOADERS = frozenset({"load_dataset", "load_from_disk"})  # 'org/name' there is a dataset, not an API
# Downloads of a repository's files: a snippet's download fits a database row's download whatever the function.
HUB_DOWNLOADERS = frozenset({"hf_hub_download", "snapshot_download", "hf_hub_url", "cached_download"})
MODEL_KEYWORDS = ("model", "repo_id", "pretrained_model_name_or_path", "model_name_or_path", "model_id", "source",
                  "model_name")
# `pipeline('task', ...)` or `pipeline(task='task', ...)`; two database rows write the task without quotes
# (`pipeline(sentiment-analysis, ...)`): a hyphenated bare word counts, a variable (`pipeline(task, ...)`) not.
_PIPELINE_TASK_RE = re.compile(r"pipeline\(\s*(?:task\s*=\s*)?(?:['\"]([\w-]+)['\"]|([A-Za-z]+(?:-[A-Za-z]+)+)\s*[,)])")
_ID_LITERAL_RE = re.compile(r"""['"]([A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)['"]""")
# Short names that stand for modules (`np.zeros` with no `import numpy as np` is a missing import, and a free
# `np` is not an input value to bind).
MODULE_ALIASES = frozenset({
    "np", "pd", "torch", "tf", "plt", "nn", "F", "os", "sys", "json", "cv2", "transformers", "requests", "sf",
    "librosa", "joblib", "sklearn", "io", "re", "math", "random", "time", "datetime", "scipy", "torchaudio",
    "torchvision", "transforms", "datasets", "sns", "tqdm", "glob", "shutil", "pickle", "csv", "wave",
    "base64", "urllib", "itertools", "collections", "functools", "keras", "jax", "jnp", "optim",
    "tokenizers", "diffusers", "sentence_transformers", "gym", "st", "gr", "ipd", "np_", "mpimg", "skimage",
    "imageio", "PIL", "tfhub", "hub", "hf_hub", "huggingface_hub", "accelerate", "peft", "onnxruntime", "ort",
    "timm", "spacy", "nltk", "yaml", "logging", "argparse", "pathlib", "typing", "np_utils", "cuda", "display",
})


# ------------------------------------------------------------------------------------------------------------
# Parsing.


@lru_cache(maxsize=256)
def parse(code: str) -> ast.Module | SyntaxError:
    """The module, or the SyntaxError that stops it (cached: every reader of a sample parses the same code)."""
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes (3.11), absurdly deep nesting
        return SyntaxError(f"{type(exc).__name__}: {exc}")


def parse_or_raise(code: str) -> ast.Module:
    """The module; SyntaxError when the code does not parse (whatever stopped it)."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        raise tree
    return tree


def dotted_name(expr: ast.expr) -> str | None:
    """'a.b.c' for a chain of attributes on a name; None for anything else."""
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([expr.id, *reversed(parts)])


def root_name(expr: ast.expr) -> ast.Name | None:
    """The name at the root of `a.b(c)[0].d`: `a`."""
    while True:
        if isinstance(expr, ast.Attribute | ast.Subscript):
            expr = expr.value
        elif isinstance(expr, ast.Call):
            expr = expr.func
        else:
            return expr if isinstance(expr, ast.Name) else None


def literal_strings(code: str) -> set[str]:
    """The string constants of the code (not its comments): where a model id the code uses can be."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return set()
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


# ------------------------------------------------------------------------------------------------------------
# Free variables: a scope tree, each expression evaluated in the scope Python evaluates it in.

class _Scope:
    """One Python scope: what it binds, what it declares global/nonlocal, and the names it reads."""

    def __init__(self, kind: str, parent: _Scope | None) -> None:
        self.kind, self.parent = kind, parent  # kind: module, function, class or comprehension
        self.bound: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.loads: list[tuple[int, int, str, str]] = []  # (line, column, name, role)


class _ScopeBuilder(ast.NodeVisitor):
    """Builds the scope tree, evaluating each expression in the scope Python evaluates it in (decorators,
    defaults and the first comprehension iterable in the enclosing one)."""

    def __init__(self, roles: dict[int, str]) -> None:
        self.roles = roles
        self.module = _Scope("module", None)
        self.scope = self.module
        self.scopes = [self.module]

    @contextlib.contextmanager
    def _inside(self, kind: str) -> Iterator[_Scope]:
        scope = _Scope(kind, self.scope)
        self.scopes.append(scope)
        outer, self.scope = self.scope, scope
        try:
            yield scope
        finally:
            self.scope = outer

    def _visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.scope.loads.append((node.lineno, node.col_offset, node.id, self.roles.get(id(node), "value")))
        else:  # Store and Del both make the name local to this scope
            self.scope.bound.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        target = self.scope
        while target.kind == "comprehension" and target.parent is not None:  # walrus binds outside the comp
            target = target.parent
        target.bound.add(node.target.id)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.scope.bound.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":  # a star import binds what it binds at run time: its names stay free here
                self.scope.bound.add(alias.asname or alias.name)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.nonlocals.update(node.names)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._visit_all([node.type])
        if node.name:
            self.scope.bound.add(node.name)
        self._visit_all(node.body)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._visit_all([node.pattern])
        if node.name:
            self.scope.bound.add(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.scope.bound.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._visit_all(node.keys)
        self._visit_all(node.patterns)
        if node.rest:
            self.scope.bound.add(node.rest)

    def _visit_signature(self, args: ast.arguments) -> None:
        """Defaults and annotations run in the enclosing scope, when the def runs."""
        self._visit_all([*args.defaults, *args.kw_defaults])
        every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
        self._visit_all([a.annotation for a in every if a is not None])

    @staticmethod
    def _bind_parameters(args: ast.arguments, scope: _Scope) -> None:
        for arg in [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]:
            if arg is not None:
                scope.bound.add(arg.arg)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._visit_all(node.decorator_list)
        self._visit_signature(node.args)
        self._visit_all([node.returns])
        self.scope.bound.add(node.name)
        with self._inside("function") as scope:
            self._bind_parameters(node.args, scope)
            self._visit_all(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_signature(node.args)
        with self._inside("function") as scope:
            self._bind_parameters(node.args, scope)
            self.visit(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_all([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
        self.scope.bound.add(node.name)
        with self._inside("class"):
            self._visit_all(node.body)

    def _visit_comprehension(self, generators: list[ast.comprehension], results: list[ast.expr]) -> None:
        self.visit(generators[0].iter)
        with self._inside("comprehension"):
            for index, generator in enumerate(generators):
                if index:
                    self.visit(generator.iter)
                self.visit(generator.target)
                self._visit_all(generator.ifs)
            self._visit_all(results)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node.generators, [node.key, node.value])


def _resolves(scope: _Scope, name: str, module: _Scope) -> bool:
    """Whether a read of `name` in `scope` finds a binding (class scopes are visible only to their own body)."""
    current: _Scope | None = scope
    while current is not None:
        if name in current.globals:
            return name in module.bound
        visible = current is scope or current.kind != "class"
        if visible and name in current.bound and name not in current.nonlocals:
            return True
        current = current.parent
    return False


# Calls whose first argument is a file path, and the extension the file gets: `Image.open(image)` wants a
# path even though `image` alone would be a PIL image. '' means: from the variable's name (plain `open`).
_PATH_LOADERS = {
    ("Image", "open"): "jpg", ("cv2", "imread"): "jpg", ("plt", "imread"): "jpg", ("mpimg", "imread"): "jpg",
    ("imageio", "imread"): "jpg", ("librosa", "load"): "wav", ("torchaudio", "load"): "wav", ("sf", "read"): "wav",
    ("soundfile", "read"): "wav", ("wavfile", "read"): "wav", ("pd", "read_csv"): "csv",
    ("pandas", "read_csv"): "csv", ("pd", "read_json"): "json", ("np", "load"): "npy", ("joblib", "load"): "joblib",
    (None, "open"): "", (None, "load_image"): "jpg", (None, "imread"): "jpg", (None, "read_csv"): "csv",
}


def _loader_ext(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return _PATH_LOADERS.get((None, func.id))
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return _PATH_LOADERS.get((func.value.id, func.attr))
    return None


def free_uses(tree: ast.AST) -> dict[str, set[str]]:
    """Free names in first-use order, each with how it is used: 'call' (`f(...)`), 'attr' (`obj.x`),
    'path:<ext>' (first argument of a file loader, see _PATH_LOADERS) or 'value' (anything else)."""
    roles: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            roles[id(node.func)] = "call"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            roles[id(node.value)] = "attr"
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            ext = _loader_ext(node)
            if ext is not None:
                roles[id(node.args[0])] = f"path:{ext}"
    builder = _ScopeBuilder(roles)
    builder.visit(tree)
    module = builder.module
    for scope in builder.scopes:  # `global x; x = 1` inside a function binds x at module level
        module.bound |= scope.globals & scope.bound
    free = sorted((line, column, name, role) for scope in builder.scopes
                  for line, column, name, role in scope.loads
                  if name not in BUILTINS and not _resolves(scope, name, module))
    uses: dict[str, set[str]] = {}
    for _, _, name, role in free:
        uses.setdefault(name, set()).add(role)
    return uses



def free_variables(code: str) -> list[str]:
    """Names the code reads but never binds anywhere (assignment, import, def/class, for/with/except targets,
    comprehension variables, function parameters, global/nonlocal, walrus, match captures, del), excluding
    builtins; in first-use order.

    Scope-aware enough for Gorilla snippets: a name bound anywhere at module level counts as bound (even if
    used before assignment: that is the code's own bug, not a missing input); names bound only inside a
    function are not free inside that function; class bodies are not visible from their methods. Names a
    star import might define stay free (the star import runs after the prelude and rebinds them).
    Raises SyntaxError when the code does not parse.
    """
    return list(free_uses(parse_or_raise(code)))


# ------------------------------------------------------------------------------------------------------------
# Names bound by the code, and what they stand for.



def stored_names(tree: ast.AST) -> Iterator[str]:
    """Every name bound other than by an import (assignments, defs, parameters, loop and except targets)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            yield node.id
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.arg):
            yield node.arg
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name


def imported(tree: ast.AST) -> dict[str, str]:
    """Local names bound by imports of one thing and nothing else, with what they stand for
    (`from transformers import pipeline` -> {'pipeline': 'transformers.pipeline'})."""
    targets: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                targets.setdefault(local, []).append(alias.name if alias.asname else local)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name != "*":
                    targets.setdefault(alias.asname or alias.name, []).append(f"{node.module}.{alias.name}")
    rebound = set(stored_names(tree))
    return {name: values[0] for name, values in targets.items() if len(set(values)) == 1 and name not in rebound}


def string_variables(tree: ast.AST) -> dict[str, str]:
    """Names assigned a string literal once and bound nowhere else (`model_id = 'a/b'`): their value."""
    values: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            values.setdefault(node.targets[0].id, []).append(node.value.value)
    stores: dict[str, int] = {}
    for name in stored_names(tree):
        stores[name] = stores.get(name, 0) + 1
    return {name: found[0] for name, found in values.items() if len(found) == 1 and stores.get(name) == 1}


def string_value(expr: ast.expr | None, variables: dict[str, str]) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name):
        return variables.get(expr.id)
    return None


@dataclass(frozen=True)
class ApiCall:
    """A call that loads an API from the hub: `pipeline(...)`, `X.from_pretrained(...)`, `YOLO('org/name')`."""

    node: ast.Call
    callee: str  # pipeline, from_pretrained, SentenceTransformer, hf_hub_download, load ...
    owner: str | None  # what the callee is an attribute of (`X` of `X.from_pretrained`), without its module path
    model_id: str | None  # the repository it loads, when a literal (or a variable assigned one) says it
    task: str | None  # pipeline only: the task literal

    @property
    def auxiliary(self) -> bool:
        """A tokenizer, processor, config or scheduler: it loads the id, but it is not the API itself."""
        return self.owner is not None and bool(AUXILIARY_RE.search(self.owner))

    @property
    def loader(self) -> str:
        return f"{self.owner}.{self.callee}" if self.owner else self.callee




def looks_like_hub_id(value: str | None) -> bool:
    """'org/name' (or 'org/name@revision'), and not a file path with a data extension."""
    return value is not None and bool(HUB_ID_RE.fullmatch(value)) and not FILE_EXT_RE.search(value)


def strip_revision(value: str) -> str:
    """'org/name' for 'org/name@revision'."""
    return value.split("@", 1)[0] if "/" in value else value


def api_calls(tree: ast.AST) -> list[ApiCall]:
    """The hub-loading calls of the code, in source order: the known loaders (`pipeline`, `from_pretrained`,
    `SentenceTransformer`, `hf_hub_download`...), and any other library call whose model argument is an
    'org/name' literal (`YOLO('keremberke/yolov8m-table-extraction')`, `SequenceTagger.load('flair/ner')`).
    Names are seen through imports (`from transformers import AutoModel as M; M.from_pretrained(...)` is
    AutoModel's loader); a callee that is a variable of the code (`pipeline = DDPMPipeline...; pipeline()`)
    or a builtin or standard-library function is not a loader."""
    variables = string_variables(tree)
    through_imports = imported(tree)
    stored = set(stored_names(tree))
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func)
        if name is None:
            continue
        root, _, rest = name.partition(".")
        if root in stored or (root not in through_imports and root in BUILTINS):
            continue
        parts = (through_imports.get(root, root) + ("." + rest if rest else "")).split(".")
        if parts[0] in sys.stdlib_module_names:
            continue
        callee, owner = parts[-1], parts[-2] if rest else None  # `from m import f; f()` has no owner
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        task = None
        if callee == "pipeline":
            task = string_value(positional[0] if positional else keywords.get("task"), variables)
            model_expr = positional[1] if len(positional) > 1 else keywords.get("model")
        else:
            model_expr = positional[0] if positional else next(
                (keywords[k] for k in MODEL_KEYWORDS if k in keywords), None)
        model_id = string_value(model_expr, variables)
        known_loader = callee in FUNCTION_LOADERS or (owner is not None and callee in CLASS_LOADERS)
        if known_loader or (looks_like_hub_id(model_id) and callee not in DATASET_LOADERS):
            calls.append(ApiCall(node, callee, owner, model_id, task))
    return sorted(calls, key=lambda call: (call.node.lineno, call.node.col_offset))


def loaded_ids(code: str) -> list[str]:
    """Every repository the code asks the hub for, as literals say it: the model id of each API call and each
    dataset it loads; in first-use order. Empty when the code does not parse."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return []
    variables = string_variables(tree)
    ids = [call.model_id for call in api_calls(tree) if call.model_id]
    for node in ast.walk(tree):
        name = dotted_name(node.func) if isinstance(node, ast.Call) else None
        if name is not None and name.rsplit(".", 1)[-1] in DATASET_LOADERS:
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            first = node.args[0] if node.args else keywords.get("path")
            if (value := string_value(first, variables)) is not None:
                ids.append(value)
    return list(dict.fromkeys(ids))


def model_ids_in_code(code: str, known: Iterable[str]) -> list[str]:
    """The known model ids a snippet's text names as quoted strings, in first-use order (text, not syntax: it
    works on code that does not parse)."""
    known = set(known)
    return list(dict.fromkeys(m.group(1) for m in _ID_LITERAL_RE.finditer(code) if m.group(1) in known))


def pipeline_tasks(text: str) -> list[str]:
    """The pipeline tasks a text names (`pipeline('fill-mask', ...)`), in order: a snippet's code or a database
    row's call (text, not syntax: some rows' calls do not parse)."""
    return [quoted or bare for quoted, bare in _PIPELINE_TASK_RE.findall(text)]
