"""AST sub-tree matching of API calls against the API database, as Gorilla evaluates its HF split.

Gorilla mode reproduces the documented behaviour of Gorilla's `ast_eval_hf.py` (rewritten for the
tree-sitter >= 0.22 API; quirks included on purpose, so published numbers are comparable):

1. The call is cut out of the response: what follows the first `api_call`, up to `api_provider`, from two
   characters after its first `:` to its last `)` inclusive; the whole text when `api_call` is absent.
2. Each database `api_call` gives an API name (the call's function text) and argument strings (a keyword
   argument's value, or the positional argument's text; single quotes at the ends stripped). Rows whose
   call has no arguments never match.
3. The candidate's sub-trees are listed by a stack-based depth-first walk (root first; only children that
   have children are pushed). For each database row in file order, the first sub-tree whose first child's
   text is the API name is taken (none: the walk's last sub-tree, Gorilla's fall-through quirk), and the row
   matches when every argument string is a substring of that sub-tree's text. The first matching row wins.
4. No row matches: hallucination. The row's domain equals the question's gold domain: correct. Else: error.

Strict mode keeps the extraction but has no fall-through, compares argument values exactly (quotes of either
kind stripped, not substrings), and counts a response correct only when the gold API itself is among the
matching rows: a row with the gold `api_name` or loading the same hub model id.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import tree_sitter_python
from tree_sitter import Language, Node, Parser

from apirl.data.apidb import ApiDatabase

Outcome = Literal["correct", "error", "hallucination"]
Mode = Literal["gorilla", "strict"]

_PARSER = Parser(Language(tree_sitter_python.language()))
_PUNCTUATION = {b"(", b")", b","}


def parse_python(code: str) -> Node:
    """The tree-sitter root node of a Python text (tree-sitter never fails: bad code gives ERROR nodes)."""
    return _PARSER.parse(code.encode("utf-8")).root_node


def extract_api_call(text: str) -> str:
    """Gorilla's extraction of the call from a response (step 1), kept byte for byte."""
    parts = text.split("api_call")
    if len(parts) == 1:
        return text
    section = parts[1].split("api_provider")[0]
    start = section.index(":") if ":" in section else 0
    end = section.rindex(")") if ")" in section else -2
    return section[start + 2:end + 1]


@dataclass(frozen=True)
class ReferenceCall:
    """A database row reduced to what the matcher needs."""

    row_index: int
    api_name: bytes
    gorilla_args: tuple[str, ...]
    strict_args: tuple[str, ...]


def _gorilla_args(argument_list: Node) -> list[str]:
    args = []
    for child in argument_list.children:
        text = child.text or b""
        if b"=" in text:
            value = child.children[2].text if child.child_count > 2 else text
            args.append(value.decode("utf-8", "replace"))
        elif text not in _PUNCTUATION:
            args.append(text.decode("utf-8", "replace"))
    return [arg.lstrip("'").rstrip("'") for arg in args]


def _strip_quotes(value: str) -> str:
    value = value.strip()
    for prefix in ("f", "r", "b", "u", "rb", "br"):
        if value.lower().startswith(prefix) and value[len(prefix):len(prefix) + 1] in {"'", '"'}:
            value = value[len(prefix):]
            break
    if len(value) >= 2 and value[0] == value[-1] and value[0] in {"'", '"'}:
        return value.strip("'\"")
    return value


def call_argument_values(call: Node) -> list[str]:
    """Argument values of a call node (keyword values and positional texts), quotes stripped."""
    arguments = call.child_by_field_name("arguments")
    if arguments is None:
        return []
    values = []
    for child in arguments.named_children:
        if child.type == "comment":
            continue
        node = child.child_by_field_name("value") if child.type == "keyword_argument" else child
        if node is not None and node.text:
            values.append(_strip_quotes(node.text.decode("utf-8", "replace")))
    return values


def reference_call(row_index: int, api_call: str) -> ReferenceCall | None:
    """Step 2 for one database call; None when it cannot take part in matching (no call, no arguments)."""
    root = parse_python(api_call)
    try:
        head = root.children[0].children[0]
        if head.child_count == 0:
            return None
        api_name = head.children[0].text or b""
        gorilla_args = _gorilla_args(head.children[1])
    except IndexError:
        return None
    if not gorilla_args:
        return None
    strict_args = tuple(call_argument_values(head)) if head.type == "call" else ()
    return ReferenceCall(row_index, api_name, tuple(gorilla_args), strict_args)


@lru_cache(maxsize=8)
def _references_cached(calls: tuple[str, ...]) -> tuple[ReferenceCall | None, ...]:
    return tuple(reference_call(index, call) for index, call in enumerate(calls))


def reference_calls(api_db: ApiDatabase) -> tuple[ReferenceCall | None, ...]:
    return _references_cached(tuple(row.api_call for row in api_db))


def subtrees(root: Node) -> list[Node]:
    """Step 3's walk: pop from a stack, record the node, push its children that have children."""
    stack = [root]
    out = []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(child for child in node.children if child.child_count != 0)
    return out


class AstMatcher:
    """Matches candidate calls against one API database; build it once, call it per response."""

    def __init__(self, api_db: ApiDatabase) -> None:
        self.api_db = api_db
        self.references = reference_calls(api_db)

    def _candidates(self, call_text: str) -> tuple[list[Node], dict[bytes, Node]]:
        nodes = subtrees(parse_python(call_text))
        first_by_head: dict[bytes, Node] = {}
        for node in nodes:
            if node.child_count:
                first_by_head.setdefault(node.children[0].text or b"", node)
        return nodes, first_by_head

    def match_gorilla(self, call_text: str) -> int | None:
        """Index of the first matching database row (Gorilla's rule), or None."""
        nodes, first_by_head = self._candidates(call_text)
        for ref in self.references:
            if ref is None:
                continue
            node = first_by_head.get(ref.api_name, nodes[-1])
            text = (node.text or b"").decode("utf-8", "replace")
            if all(arg in text for arg in ref.gorilla_args):
                return ref.row_index
        return None

    def match_strict(self, call_text: str) -> list[int]:
        """Indices of every database row matched exactly: same function, every argument value present."""
        nodes, _ = self._candidates(call_text)
        calls: dict[bytes, list[set[str]]] = {}
        for node in nodes:
            if node.type == "call":
                function = node.child_by_field_name("function")
                if function is not None:
                    calls.setdefault(function.text or b"", []).append(set(call_argument_values(node)))
        matches = []
        for ref in self.references:
            if ref is None or not ref.strict_args:
                continue
            for values in calls.get(ref.api_name, []):
                if all(arg in values for arg in ref.strict_args):
                    matches.append(ref.row_index)
                    break
        return matches

    def judge(self, text: str, *, gold_domain: str, gold_api_name: str, mode: Mode = "gorilla") -> AstVerdict:
        """The outcome of one response in one mode."""
        call = extract_api_call(text)
        if mode == "gorilla":
            index = self.match_gorilla(call)
            if index is None:
                return AstVerdict("hallucination", None, call)
            outcome: Outcome = "correct" if self.api_db.rows[index].domain == gold_domain else "error"
            return AstVerdict(outcome, index, call)
        indices = self.match_strict(call)
        if not indices:
            return AstVerdict("hallucination", None, call)
        gold_ids = {gold_api_name.lower()} | {row.model_id.lower() for row in self.api_db.by_model_id(gold_api_name)}
        for index in indices:
            row = self.api_db.rows[index]
            if row.api_name.lower() in gold_ids or row.model_id.lower() in gold_ids:
                return AstVerdict("correct", index, call)
        return AstVerdict("error", indices[0], call)


@dataclass(frozen=True)
class AstVerdict:
    outcome: Outcome
    row_index: int | None
    extracted_call: str
