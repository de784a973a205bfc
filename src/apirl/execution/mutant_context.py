"""What a mutant needs to know about a gold snippet: its source with character offsets and the edits a mutation
makes (`Source`, `Edit`, `apply_edits`), and what the code contains (`Context`: its strings, calls, imports,
bindings, model ids and main API call). Used by `apirl.execution.mutants` only."""

from __future__ import annotations

import ast
import bisect
import re
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from apirl.code_facts import (
    AUXILIARY_RE,
    MODEL_KEYWORDS,
    looks_like_hub_id,
    root_name,
    strip_revision,
)

# --- source positions and edits -------------------------------------------------------------------------


class Source:
    """The text with line starts, to turn AST positions (line, UTF-8 byte column) into string offsets.

    Lines are split on '\\r\\n', '\\r' and '\\n' only, as the Python tokenizer does (str.splitlines would also
    split on form feeds and other separators and shift every later line).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [match.end() for match in re.finditer(r"\r\n|\r|\n", text)]

    def offset(self, lineno: int, col: int) -> int:
        start = self.starts[lineno - 1]
        end = self.starts[lineno] if lineno < len(self.starts) else len(self.text)
        line = self.text[start:end]
        if line.isascii():
            return start + col
        return start + len(line.encode("utf-8")[:col].decode("utf-8"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def line_of(self, offset: int) -> int:
        """The 1-based line number holding a string offset."""
        return bisect.bisect_right(self.starts, offset)

    def line_span(self, lineno: int) -> tuple[int, int]:
        """Start of the line and start of the next one (the end of the text for the last line)."""
        end = self.starts[lineno] if lineno < len(self.starts) else len(self.text)
        return self.starts[lineno - 1], end


Edit = tuple[int, int, str]  # replace text[start:end] by the string


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits; overlapping ones are a bug of the caller."""
    ordered = sorted(edits, reverse=True)
    for (_, end, _), (next_start, _, _) in zip(ordered[1:], ordered, strict=False):
        if end > next_start:
            raise ValueError("overlapping edits")
    for start, end, replacement in ordered:
        text = text[:start] + replacement + text[end:]
    return text


def node_pos(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset  # type: ignore[attr-defined]


def node_end(node: ast.AST) -> tuple[int, int]:
    return node.end_lineno, node.end_col_offset  # type: ignore[attr-defined]


def shorten(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- what the code contains -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One name bound by an import: `local` is the name the code uses."""

    stmt: ast.Import | ast.ImportFrom
    alias: ast.alias
    local: str
    module: str  # from-import: the module the name comes from; import: the module bound (a.b for `import a.b`)


@dataclass
class Context:
    """Everything the mutation builders need, computed once per snippet."""

    code: str
    tree: ast.Module
    src: Source
    known: frozenset[str]  # lower-cased known model ids
    strings: list[ast.Constant]  # str literals outside f-strings, in source order
    calls: list[ast.Call]  # in source order
    imports: list[Import]
    bindings: Counter[str]  # how many times each name is bound anywhere (imports, assignments, defs, args...)
    words: frozenset[str]  # every word of the text: a new name must not collide with any
    assigned: dict[str, set[str]] = field(default_factory=dict)  # variable -> str literals assigned to it
    model_ids: list[str] = field(default_factory=list)  # the model ids the code uses, preferred first
    main_call: ast.Call | None = None

    @classmethod
    def build(cls, code: str, known_model_ids: Collection[str]) -> Context | None:
        tree = ast.parse(code)
        if not tree.body:
            return None
        in_fstring = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                      for sub in ast.walk(node) if sub is not node}
        strings = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Constant)
                          and isinstance(node.value, str) and id(node) not in in_fstring), key=node_pos)
        calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)),
                       key=lambda node: (node_pos(node), tuple(-x for x in node_end(node))))
        ctx = cls(code=code, tree=tree, src=Source(code),
                  known=frozenset(str(item).lower() for item in known_model_ids),
                  strings=strings, calls=calls, imports=list(_imports(tree)), bindings=_bindings(tree),
                  words=frozenset(re.findall(r"\w+", code)), assigned=_assigned_strings(tree))
        ctx.model_ids = ctx._find_model_ids()
        ctx.main_call = ctx._find_main_call()
        return ctx

    def passed_strings(self, call: ast.Call, *, model_slots_only: bool = False) -> Iterator[str]:
        """The str values a call receives as literals or through a variable assigned a literal."""
        args: list[ast.expr] = []
        if model_slots_only:
            args += call.args[:1]
            args += [kw.value for kw in call.keywords if kw.arg in MODEL_KEYWORDS]
        else:
            args += call.args
            args += [kw.value for kw in call.keywords]
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value
            elif isinstance(arg, ast.Name):
                yield from sorted(self.assigned.get(arg.id, ()))

    def _find_model_ids(self) -> list[str]:
        """Literals equal to a known id (those passed to a call first); else `org/name` literals a call loads."""
        known_hits = list(dict.fromkeys(
            s.value for s in self.strings if strip_revision(s.value).lower() in self.known))
        if known_hits:
            passed = [v for call in self.calls for v in self.passed_strings(call) if v in known_hits]
            return list(dict.fromkeys(passed + known_hits))
        literals = {s.value for s in self.strings}
        return list(dict.fromkeys(
            value for call in self.calls for value in self.passed_strings(call, model_slots_only=True)
            if value in literals and looks_like_hub_id(value)))

    def _find_main_call(self) -> ast.Call | None:
        """The first call loading the model id (a model, not its tokenizer, when both are loaded); else the last
        call of an imported name."""
        if self.model_ids:
            receiving = [call for call in self.calls if self.model_ids[0] in set(self.passed_strings(call))]
            models = [call for call in receiving if not AUXILIARY_RE.search(self.src.segment(call.func))]
            if models or receiving:
                return (models or receiving)[0]
        imported = {imp.local for imp in self.imports}
        candidates = [call for call in self.calls if (root := root_name(call.func)) and root.id in imported]
        return candidates[-1] if candidates else None

    def loads(self, name: str) -> list[ast.Name]:
        return [node for node in ast.walk(self.tree)
                if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)]

    def main_call_names(self) -> list[str]:
        """Names the main call uses: its callee's root first, then the names in its arguments."""
        if self.main_call is None:
            return []
        names = []
        root = root_name(self.main_call.func)
        if root is not None:
            names.append(root.id)
        names += [node.id for node in sorted(self.loads_in(self.main_call), key=node_pos)]
        return list(dict.fromkeys(names))

    @staticmethod
    def loads_in(node: ast.AST) -> list[ast.Name]:
        return [sub for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)]


def _imports(tree: ast.Module) -> Iterator[Import]:
    nodes = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)), key=node_pos)
    for stmt in nodes:
        for alias in stmt.names:
            if isinstance(stmt, ast.ImportFrom):
                if alias.name == "*" or stmt.level or not stmt.module or stmt.module == "__future__":
                    continue
                yield Import(stmt, alias, alias.asname or alias.name, stmt.module)
            elif alias.asname:
                yield Import(stmt, alias, alias.asname, alias.name)
            else:
                yield Import(stmt, alias, alias.name.split(".")[0], alias.name)


def _bindings(tree: ast.Module) -> Counter[str]:
    """How often each name is bound anywhere in the code, all scopes together (a conservative count)."""
    counts: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            counts[node.id] += 1
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            counts[node.name] += 1
        elif isinstance(node, ast.arg):
            counts[node.arg] += 1
        elif isinstance(node, ast.alias):
            counts[node.asname or node.name.split(".")[0]] += 1
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            counts[node.name] += 1
        elif isinstance(node, ast.MatchMapping) and node.rest:
            counts[node.rest] += 1
        elif isinstance(node, ast.Global | ast.Nonlocal):
            counts.update(node.names)
    return counts


def _assigned_strings(tree: ast.Module) -> dict[str, set[str]]:
    """Variables assigned a str literal (`model_id = 'org/name'`), with the literals."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, set()).add(value.value)
    return out


