"""Mutants of gold snippets: code that is wrong in one known way, to check the verdicts of a judge.

Why: the sandbox harness (and later the AI-feedback judges) decides whether a generated snippet is right. To
trust those verdicts we need snippets whose truth we know: a gold snippet that runs is good, and a *mutant* of
it, changed in exactly one way that must make it fail, is bad. A judge that accepts a mutant is wrong about it,
and the mutant's kind says which check it lacks:

- `unknown_model_id`: the hub id, every occurrence, replaced by a plausible id outside the known ids
  (loading it must fail on an offline hub that holds only the known models).
- `unknown_name`: a name imported from a library renamed, in the import and at every use, to a plausible
  name the library does not have (ImportError / AttributeError).
- `unknown_kwarg`: a plausible but bogus keyword argument added to the main API call.
- `missing_import`: the import providing a name the main API call uses removed (NameError).
- `syntax_error`: the main API call's closing parenthesis deleted, so the code no longer parses.

The *main API call* is the first call that receives the model id (the literal, or a variable assigned it);
without one, the last call whose callee is an imported name.

Design rules:

- Pure and deterministic: nothing is executed. The one side effect is importing the library a name comes from
  (installed libraries only, cached per module), to confirm that a candidate name really does not exist there.
  The same code, known ids, seed and installed libraries give the same mutants.
- Minimal edits: each mutation is a few source edits placed with the AST's node offsets (UTF-8 byte columns
  converted to characters), never an `ast.unparse` of the module, so comments, quotes and layout are kept and
  a diff of gold and mutant shows only the fault.
- Checked: kinds 1-4 must still parse and differ from the gold code, kind 5 must raise SyntaxError. A mutation
  that fails its check, or any unforeseen input, makes that kind absent; `make_mutants` never raises on a str.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import io
import keyword
import random
import re
import tokenize
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cache

from apirl.code_facts import (
    dotted_name,
    root_name,
    strip_revision,
)
from apirl.execution.installed import import_installed
from apirl.execution.mutant_context import Context, Edit, Import, Source, apply_edits, node_end, node_pos, shorten

__all__ = ["MUTANT_KINDS", "Mutant", "make_mutants"]

MUTANT_KINDS: tuple[str, ...] = ("unknown_model_id", "unknown_name", "unknown_kwarg", "missing_import", "syntax_error")

_ID_SUFFIXES = ("-v2", "-finetuned", "-large-v3", "-base-v2", "-distilled", "-instruct", "-xl", "-small-v2")
_SIZE_RE = re.compile(r"(?<![a-z])(tiny|small|base|medium|large|xl|xxl)(?![a-z])")
_ORG_SUFFIXES = ("-ai", "-research", "-labs")
# Hallucination-style renames of library names: (suffix, replacement) applied at the end of the name.
_SUFFIX_SWAPS = (
    ("Classification", "Classifier"), ("Generation", "Generator"), ("Segmentation", "Segmenter"),
    ("Detection", "Detector"), ("Recognition", "Recognizer"), ("Answering", "Answerer"),
    ("Estimation", "Estimator"), ("TokenizerFast", "FastTokenizer"), ("Tokenizer", "Tokeniser"),
    ("Processor", "Processer"), ("FeatureExtractor", "FeaturesExtractor"), ("Extractor", "Extracter"),
    ("Pipeline", "Pipelines"), ("Model", "Models"), ("Config", "Configuration"), ("Transformer", "Transformers"),
    ("Scheduler", "Schedular"), ("Encoder", "Encoders"), ("Decoder", "Decoders"),
)
# Plausible-sounding keyword arguments that no Hugging Face API takes, with the value passed.
_BOGUS_KWARGS = (
    ("use_cache_dir", "True"), ("low_memory_mode", "True"), ("return_logits_only", "True"),
    ("model_revision_tag", "'main'"), ("enable_fast_tokenize", "True"), ("use_fast_attention_kernel", "True"),
    ("auto_select_device", "True"), ("force_legacy_loading", "True"),
)
_HF_LIBRARIES = ("transformers", "diffusers", "sentence_transformers", "huggingface_hub", "datasets", "torch", "PIL")
_BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class Mutant:
    """A gold snippet changed in one specific way that must make it fail."""

    kind: str  # one of MUTANT_KINDS
    code: str  # the mutated snippet
    description: str  # what was changed, e.g. "model id 'a/b' -> 'a/b-v2'"


def make_mutants(code: str, *, known_model_ids: Collection[str], seed: int = 0) -> list[Mutant]:
    """At most one mutant per kind, in MUTANT_KINDS order; a kind that does not apply to this code is absent.

    Code that does not parse, or has no statement at all, gets no mutants. `known_model_ids` are the hub ids
    that exist (compared case-insensitively, as the hub does): they mark the literals that are model ids, and a
    generated id is never one of them. `seed` picks among the plausible replacements; each kind draws from its
    own generator so that the kinds do not depend on each other.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    try:
        ctx = Context.build(code, known_model_ids)
    except Exception:  # does not parse (SyntaxError, null bytes, surrogates, nesting too deep)
        return []
    if ctx is None:
        return []
    mutants: list[Mutant] = []
    for kind, builder in zip(MUTANT_KINDS, _BUILDERS, strict=True):
        try:
            # Seeded by the code too, so that one seed still varies the choices across snippets.
            mutant = builder(ctx, random.Random(f"{seed}:{kind}:{code}"))
            if mutant is not None and _is_valid(mutant, code):
                mutants.append(mutant)
        except Exception:  # an input nobody foresaw costs this kind only, never the caller
            continue
    return mutants


def _is_valid(mutant: Mutant, original: str) -> bool:
    """Kinds 1-4 must differ from the gold code and parse; kind 5 must raise SyntaxError."""
    if mutant.code == original:
        return False
    try:
        ast.parse(mutant.code)
    except SyntaxError:
        return mutant.kind == "syntax_error"
    except Exception:
        return False
    return mutant.kind != "syntax_error"


# --- 1. unknown_model_id --------------------------------------------------------------------------------


def _unknown_model_id(ctx: Context, rng: random.Random) -> Mutant | None:
    """Replace every literal of the (first) model id by a plausible id that is not known."""
    if not ctx.model_ids:
        return None
    old = ctx.model_ids[0]
    literals = {s.value.lower() for s in ctx.strings}
    candidates = _id_candidates(old)
    rng.shuffle(candidates)
    new = next((candidate for candidate in candidates if candidate.lower() not in literals
                and strip_revision(candidate).lower() not in ctx.known), None)
    if new is None:
        return None
    nodes = [s for s in ctx.strings if s.value == old]
    code = apply_edits(ctx.code, [_replace_literal(ctx.src, node, new) for node in nodes])
    times = f" ({len(nodes)} occurrences)" if len(nodes) > 1 else ""
    return Mutant("unknown_model_id", code, f"model id {old!r} -> {new!r}{times}")


def _id_candidates(model_id: str) -> list[str]:
    """Ids a model might plausibly hallucinate for this one: a suffix, a bumped version, another org.

    An '@revision' is kept: the repository is what must not exist.
    """
    base, at, revision = model_id.partition("@") if "/" in model_id else (model_id, "", "")
    return [candidate + at + revision for candidate in _base_id_candidates(base)]


def _base_id_candidates(model_id: str) -> list[str]:
    org, slash, name = model_id.rpartition("/")
    prefix = org + slash
    lowered = name.lower()
    sized = bool(_SIZE_RE.search(lowered))  # no '-base-v2' after '...-large': one size word is plausible, two not
    candidates = [prefix + name + suffix for suffix in _ID_SUFFIXES
                  if suffix.strip("-") not in lowered and not (sized and _SIZE_RE.search(suffix))]
    version = re.search(r"([-_]v)(\d{1,6})$", name, re.IGNORECASE)
    if version:
        candidates.append(prefix + name[:version.start(2)] + str(int(version.group(2)) + 1))
    if org:
        candidates += [f"{org}{suffix}/{name}" for suffix in _ORG_SUFFIXES if not org.endswith(suffix)]
    return candidates


def _replace_literal(src: Source, node: ast.Constant, value: str) -> Edit:
    """Replace a str literal's value, keeping its prefix and quotes when the body is the value verbatim."""
    start, end = src.span(node)
    segment = src.text[start:end]
    match = re.fullmatch(r"([rRuU]?)('''|\"\"\"|'|\")(.*)\2", segment, re.DOTALL)
    if match and match.group(3) == node.value and not re.search(r"[\\'\"\r\n]", value):
        body_start = start + len(match.group(1)) + len(match.group(2))
        return body_start, body_start + len(match.group(3)), value
    return start, end, repr(value)  # implicit concatenation or escapes: a plain literal with the same value


# --- 2. unknown_name ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NameTarget:
    """A name some module provides to the code, with where it is written (import and uses)."""

    module: str
    name: str
    spans: tuple[tuple[int, int], ...]
    rank: tuple[int, ...]
    what: str


def _unknown_name(ctx: Context, rng: random.Random) -> Mutant | None:
    """Rename a used library name, in its import and at every use, to a name the library does not have."""
    for target in sorted(_name_targets(ctx), key=lambda t: t.rank):
        new = _missing_name(target.module, target.name, ctx, rng)
        if new is not None:
            code = apply_edits(ctx.code, [(start, end, new) for start, end in target.spans])
            return Mutant("unknown_name", code,
                          f"name {target.name!r} of {target.module} -> {new!r} ({target.what})")
    return None


def _library_rank(module: str) -> int:
    top = module.split(".")[0]
    return 0 if top == "transformers" else 1 if top in _HF_LIBRARIES else 2


def _name_targets(ctx: Context) -> Iterator[_NameTarget]:
    """From-imported names, then attributes of imported modules (`transformers.pipeline`), that the code uses.

    Ranked: the name the main call uses first, then transformers, the other HF libraries, any module.
    """
    main_root = root_name(ctx.main_call.func) if ctx.main_call is not None else None
    for order, imp in enumerate(ctx.imports):
        if not isinstance(imp.stmt, ast.ImportFrom) or ctx.bindings[imp.local] != 1:
            continue
        start = ctx.src.offset(imp.alias.lineno, imp.alias.col_offset)
        if ctx.code[start:start + len(imp.alias.name)] != imp.alias.name:
            continue
        uses = [node for node in ctx.loads(imp.local) if node_pos(node) >= node_end(imp.stmt)]
        if not uses:
            continue
        spans = [(start, start + len(imp.alias.name))]
        if imp.alias.asname is None:  # with `as`, the uses name the alias and stay as they are
            use_spans = [ctx.src.span(node) for node in uses]
            if any(ctx.code[s:e] != imp.local for s, e in use_spans):
                continue
            spans += use_spans
        in_main = main_root is not None and main_root.id == imp.local
        what = f"import and {len(uses)} use{'s' if len(uses) > 1 else ''}" if imp.alias.asname is None else "import"
        yield _NameTarget(imp.module, imp.alias.name, tuple(spans), (0 if in_main else 2, _library_rank(imp.module),
                                                                     order), what)
    yield from _attribute_targets(ctx)


def _attribute_targets(ctx: Context) -> Iterator[_NameTarget]:
    """`module.attr` accesses of modules bound by `import module` (or `import module as m`)."""
    modules: dict[str, str] = {}  # dotted text in the code -> module it names
    for imp in ctx.imports:
        if isinstance(imp.stmt, ast.ImportFrom) or ctx.bindings[imp.local] != 1:
            continue
        if imp.alias.asname:
            modules[imp.local] = imp.module
        else:
            parts = imp.module.split(".")
            modules.update({".".join(parts[:i]): ".".join(parts[:i]) for i in range(1, len(parts) + 1)})
    if not modules:
        return
    groups: dict[tuple[str, str], list[ast.Attribute]] = {}
    stored: set[tuple[str, str]] = set()
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Attribute) and (prefix := dotted_name(node.value)) in modules:
            key = (modules[prefix], node.attr)
            if isinstance(node.ctx, ast.Load):
                groups.setdefault(key, []).append(node)
            else:
                stored.add(key)
    main_nodes = set()
    if ctx.main_call is not None:
        main_nodes = {id(node) for node in ast.walk(ctx.main_call.func)}
    for (module, attr), nodes in groups.items():
        if (module, attr) in stored:
            continue
        spans = []
        for node in nodes:
            end = ctx.src.span(node)[1]
            if ctx.code[end - len(attr):end] != attr:
                break
            spans.append((end - len(attr), end))
        else:
            in_main = any(id(node) in main_nodes for node in nodes)
            first = min(node_pos(node) for node in nodes)
            uses = f"{len(nodes)} use{'s' if len(nodes) > 1 else ''}"
            yield _NameTarget(module, attr, tuple(spans), (1 if in_main else 3, _library_rank(module), *first),
                              f"attribute, {uses}")


def _name_candidates(name: str, rng: random.Random) -> list[str]:
    """Plausible wrong spellings of a library name, most plausible tier first, shuffled within each tier."""
    swaps = [name[:-len(old)] + new for old, new in _SUFFIX_SWAPS if name.endswith(old) and name != old]
    if name[:1].isupper() and not name.isupper():  # a class: SentenceTransformer, Image
        generic = [name + ("es" if name.endswith("s") else "s")]
        more = [name + "V2", name + "Base"] + ([] if name.startswith("Auto") else ["Auto" + name])
    elif name.isupper():  # a constant
        generic = [name + "_V2"]
        more = [name + "S", "DEFAULT_" + name]
    else:  # a function or module: pipeline, load_dataset
        generic = [] if name.endswith("s") else [name + "s"]
        more = ["make_" + name, "load_" + name, "get_" + name, name + "_v2"]
    typo = re.sub(r"[aeiou](?=[^aeiou]*$)", "", name)  # the last vowel dropped: AutoTokenizr
    tiers = [swaps, generic, more, [typo] if typo and typo != name else []]
    out: list[str] = []
    for tier in tiers:
        tier = list(dict.fromkeys(tier))
        rng.shuffle(tier)
        out += tier
    return out


def _missing_name(module: str, name: str, ctx: Context, rng: random.Random) -> str | None:
    for candidate in _name_candidates(name, rng):
        if (candidate == name or not candidate.isidentifier() or keyword.iskeyword(candidate)
                or candidate in ctx.words or candidate in _BUILTIN_NAMES):
            continue
        if not _module_has_name(module, candidate):
            return candidate
    return None


def _module_has_name(module: str, name: str) -> bool:
    """Whether `from module import name` could succeed: an attribute or a submodule of that name.

    A module that is not installed (or not importable) has no names we can confirm: False, so the candidate is
    accepted. When the module cannot tell (an attribute lookup that fails with another error), True: reject.
    """
    loaded = import_installed(module)
    if loaded is None:
        return False
    if name in _module_dir(module):
        return True
    try:
        if hasattr(loaded, name):
            return True
    except Exception:
        return True
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except Exception:  # not a package, or a broken one: no such submodule
        return False


@cache
def _module_dir(module: str) -> frozenset[str]:
    loaded = import_installed(module)
    try:
        return frozenset(dir(loaded)) if loaded is not None else frozenset()
    except Exception:
        return frozenset()


# --- 3. unknown_kwarg -----------------------------------------------------------------------------------


def _unknown_kwarg(ctx: Context, rng: random.Random) -> Mutant | None:
    """Add a plausible keyword argument that the callee does not take to the main call."""
    call = ctx.main_call
    if call is None:
        return None
    options = [(name, value) for name, value in _BOGUS_KWARGS if name not in ctx.words]
    if not options:
        return None
    name, value = rng.choice(options)
    edit = _insert_keyword(ctx, call, f"{name}={value}")
    if edit is None:
        return None
    return Mutant("unknown_kwarg", apply_edits(ctx.code, [edit]),
                  f"keyword {name}={value} added to {shorten(ctx.src.segment(call.func))}(...)")


def _insert_keyword(ctx: Context, call: ast.Call, keyword_text: str) -> Edit | None:
    """The edit that adds `keyword_text` as the call's last argument, in the call's own layout."""
    text = ctx.code
    close = ctx.src.span(call)[1] - 1
    if text[close] != ")":
        return None
    arguments: list[ast.AST] = [*call.args, *call.keywords]
    if not arguments:
        return close, close, keyword_text
    last_end = max(ctx.src.span(node)[1] for node in arguments)
    # Between the last argument and ')': only spaces, comments, a trailing comma and the ')' of parenthesized
    # arguments. Find the comma, and the end of the last code character (after any such ')').
    comma = None
    code_end = last_end
    i = last_end
    while i < close:
        char = text[i]
        if char == "#":
            while i < close and text[i] not in "\r\n":
                i += 1
            continue
        if char == ",":
            comma = i
        elif char == ")":
            code_end = i + 1
        i += 1
    if comma is None:
        return code_end, code_end, ", " + keyword_text
    line_start = ctx.src.line_span(ctx.src.line_of(close))[0]
    close_starts_line = text[line_start:close].strip() == "" and "\n" in text[comma:close]
    if close_starts_line:  # one argument a line with a trailing comma: a new line in the same style
        arg_line = ctx.src.line_span(max(arguments, key=node_end).lineno)  # type: ignore[attr-defined]
        indent = re.match(r"[ \t]*", text[arg_line[0]:arg_line[1]]).group()  # type: ignore[union-attr]
        return line_start, line_start, f"{indent}{keyword_text},\n"
    return comma + 1, comma + 1, f" {keyword_text},"


# --- 4. missing_import ----------------------------------------------------------------------------------


def _missing_import(ctx: Context, rng: random.Random) -> Mutant | None:
    """Remove the import of a name the main call uses (else of another used name), so that name is undefined."""
    del rng  # nothing to choose: the name is the main call's
    if any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names) for node in ast.walk(ctx.tree)):
        return None  # a star import might provide the name again
    providers: dict[str, Import] = {}
    for imp in ctx.imports:
        providers.setdefault(imp.local, imp)
    names = ctx.main_call_names() + [imp.local for imp in ctx.imports]
    for name in dict.fromkeys(names):
        imp = providers.get(name)
        if imp is None or ctx.bindings[name] != 1 or name in _BUILTIN_NAMES:
            continue
        if not any(node_pos(node) >= node_end(imp.stmt) for node in ctx.loads(name)):
            continue
        edit = _remove_alias(ctx, imp)
        if edit is None:
            continue
        statement = shorten(ctx.src.segment(imp.stmt))
        return Mutant("missing_import", apply_edits(ctx.code, [edit]), f"import of {name!r} removed from {statement!r}")
    return None


def _remove_alias(ctx: Context, imp: Import) -> Edit | None:
    """Remove one alias from its import; the whole statement when it is the only one."""
    aliases = imp.stmt.names
    if len(aliases) == 1:
        return _remove_statement(ctx, imp.stmt)
    index = next(i for i, alias in enumerate(aliases) if alias is imp.alias)
    start, end = ctx.src.span(imp.alias)
    line_start, next_line = ctx.src.line_span(imp.alias.lineno)
    parenthesized = "(" in ctx.code[ctx.src.span(imp.stmt)[0]:ctx.src.span(aliases[0])[0]]
    rest = ctx.code[end:next_line]
    if (parenthesized and imp.alias.lineno == imp.alias.end_lineno and not ctx.code[line_start:start].strip()
            and re.fullmatch(r"[ \t]*,?[ \t]*(#.*)?(\r\n|\r|\n)?", rest)):  # one alias a line: delete its line
        return line_start, next_line, ""
    if index < len(aliases) - 1:  # up to the next alias: the comma and spaces after it go too
        return ctx.src.span(imp.alias)[0], ctx.src.span(aliases[index + 1])[0], ""
    return ctx.src.span(aliases[index - 1])[1], ctx.src.span(imp.alias)[1], ""  # from the previous alias's end


def _remove_statement(ctx: Context, stmt: ast.stmt) -> Edit | None:
    """Delete a statement: its whole lines when alone on them, `pass` when its block would be left empty."""
    siblings = _siblings(ctx.tree, stmt)
    if siblings is None:
        return None
    text = ctx.code
    start, end = ctx.src.span(stmt)
    if len(siblings) == 1:
        return start, end, "pass"
    first_line, _ = ctx.src.line_span(stmt.lineno)
    _, next_line = ctx.src.line_span(stmt.end_lineno)  # type: ignore[arg-type]
    before = text[first_line:start]
    after = text[end:next_line]
    if not before.strip() and (not after.strip() or after.lstrip().startswith("#")):
        return first_line, next_line, ""
    semicolon_after = re.match(r"[ \t]*;[ \t]*", after)
    if semicolon_after:
        return start, end + semicolon_after.end(), ""
    semicolon_before = re.search(r";[ \t]*$", before)
    if semicolon_before:
        return first_line + semicolon_before.start(), end, ""
    return start, end, "pass"


def _siblings(tree: ast.Module, stmt: ast.stmt) -> list[ast.stmt] | None:
    """The statement list (a block) that holds this statement."""
    for node in ast.walk(tree):
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and any(item is stmt for item in value):
                return value
    return None


# --- 5. syntax_error ------------------------------------------------------------------------------------


def _syntax_error(ctx: Context, rng: random.Random) -> Mutant | None:
    """Delete the main call's closing parenthesis (else the last call's, a block's colon, or add a '(')."""
    del rng  # deterministic: the first edit that breaks the parse
    for code, description in _syntax_edits(ctx):
        try:
            ast.parse(code)
        except SyntaxError:
            return Mutant("syntax_error", code, description)
        except Exception:
            continue
    return None


def _syntax_edits(ctx: Context) -> Iterator[tuple[str, str]]:
    text = ctx.code
    calls = [ctx.main_call] if ctx.main_call is not None else []
    calls += [call for call in reversed(ctx.calls) if call is not ctx.main_call][:1]
    for call in calls:
        close = ctx.src.span(call)[1] - 1
        if text[close] == ")":
            yield (apply_edits(text, [(close, close + 1, "")]),
                   f"closing parenthesis of {shorten(ctx.src.segment(call.func))}(...) on line {call.end_lineno} "
                   "deleted")
    compound = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While, ast.If,
                ast.With, ast.AsyncWith, ast.Try)
    blocks = sorted((node for node in ast.walk(ctx.tree) if isinstance(node, compound)), key=node_pos)
    for block in blocks[:1]:
        body_start = ctx.src.span(block.body[0])[0]
        colon = _header_colon(ctx, block, body_start)
        if colon is not None:
            yield apply_edits(text, [(colon, colon + 1, "")]), f"colon of the block on line {block.lineno} deleted"
    first_end = ctx.src.span(ctx.tree.body[0])[1]
    yield apply_edits(text, [(first_end, first_end, "(")]), f"unmatched '(' added on line {ctx.tree.body[0].end_lineno}"


def _header_colon(ctx: Context, block: ast.stmt, body_start: int) -> int | None:
    """The offset of the ':' that ends a block's header: the last ':' token before the body."""
    header = ctx.code[ctx.src.span(block)[0]:body_start]
    colon = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(header).readline):
            if token.type == tokenize.OP and token.string == ":":
                colon = token.start
    except (tokenize.TokenError, SyntaxError):
        pass  # the header alone ends inside a bracket only when there is no colon token after it
    if colon is None:
        return None
    lines = io.StringIO(header).readlines()  # the lines exactly as the tokenizer read them
    offset = ctx.src.span(block)[0] + sum(len(line) for line in lines[:colon[0] - 1]) + colon[1]
    return offset if ctx.code[offset] == ":" else None


_BUILDERS: tuple[Callable[[Context, random.Random], Mutant | None], ...] = (
    _unknown_model_id, _unknown_name, _unknown_kwarg, _missing_import, _syntax_error)
