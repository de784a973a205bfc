"""Catalog-grounded decoding (`generate.grounding = "catalog"`): an answer that cannot name an API that is not in
the API database.

The answer is in Gorilla's tagged format, so the domain comes first and the call second. Under grounding:

- the answer opens with ` <<<domain>>>:` and the domain is one of the database's domains, then `<<<api_call>>>:`;
- the call is one of the database's calls of the rows of that domain, written as the row writes it;
- in `<<<code>>>`, a string literal that the code passes to a hub loader (`Openers`: the loaders of
  `apirl.code_facts` and the callees of the catalog's own calls, first argument or model keyword) is a database id
  (`hub_ids`), closed by its quote; every other token is free. An id stored in a variable first is not seen.

The model still chooses, by its own probabilities: each step only masks the tokens that would leave the catalog.
The allowed strings are kept as token tries of their canonical tokenizations (what SFT trained on: the tagged
format tokenized as one text), so a step costs a dictionary lookup per row, not a scan of the vocabulary. We use
our own trie rather than a grammar library: the constraint is a choice among ~900 fixed strings at three places
of a free text, which a trie states directly; xgrammar would need the whole answer as a grammar with free-text
holes and triggers, and measured on the domain-and-call part alone it saves 0.3 ms per step of 32 rows
(`benchmarks/grounding_libraries.py`).

A call that does not parse as Python is allowed as the row writes it when the evaluation still recognises it
(a trailing period, an unquoted id: 8 of the 15); the calls it cannot recognise at all are left out
(`groundable_rows`). RL rollouts are not grounded: PPO's and GRPO's log-probabilities are those of the unmasked
policy, so a masked rollout would make their ratios wrong.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apirl.code_facts import CLASS_LOADERS, FUNCTION_LOADERS, MODEL_KEYWORDS, looks_like_hub_id
from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.errors import InputError

OPENING = " <<<domain>>>:"
AFTER_DOMAIN = "\n<<<api_call>>>:"
AFTER_CALL = "\n"
CODE_TAG = "<<<code>>>:"
# Callees whose first argument is commonly not a hub id, or not one of the catalog's: their first-argument form
# is not an opener (`torch.load(path)`, `from_single_file(url)`); keywords still are where they name a model.
_NOT_FIRST_ARGUMENT = frozenset({"pipeline", "from_single_file", "load", "create_model", "get_prediction"})
# Which characters may follow an id's closing quote in the token that closes it.
_AFTER_CLOSING = frozenset(")],:;} \t\n")
_QUOTED = re.compile(r"""['"]([^'"\s]+)['"]""")
_MERGED_QUOTE = re.compile(r"""['"][\w.\-/]""")
_TAIL_CHARS = 160  # enough text to see any opener


def _ids(tokens: list[int]) -> Any:
    import torch

    return torch.tensor(tokens, dtype=torch.long)


@dataclass
class TokenTrie:
    """The canonical token sequences of a set of strings; `value` is the string a node completes."""

    children: dict[int, TokenTrie] = field(default_factory=dict)
    value: str | None = None
    _allowed: Any = None
    _closing: dict[str, Any] = field(default_factory=dict)

    def add(self, tokens: Sequence[int], value: str) -> None:
        node = self
        for token in tokens:
            node = node.children.setdefault(token, TokenTrie())
        node.value = value

    @property
    def allowed(self) -> Any:
        """The next tokens, as a 1-D tensor made once (the mask is built from tensors, not lists)."""
        if self._allowed is None:
            self._allowed = _ids(list(self.children))
        return self._allowed

    def allowed_or_closing(self, quote: str, closers: list[int]) -> Any:
        """The next tokens of an id, or a token that closes it with `quote`."""
        if quote not in self._closing:
            self._closing[quote] = _ids(list(self.children) + closers)
        return self._closing[quote]

    def strings(self) -> list[str]:
        """Every string the trie holds (for tests and checks)."""
        out = [self.value] if self.value is not None else []
        for child in self.children.values():
            out += child.strings()
        return out


def groundable_rows(catalog: ApiDatabase) -> list[ApiRow]:
    """The rows whose call, written as the row writes it, the evaluation recognises as that API (Gorilla's
    matcher): 921 of 936. The other 15 are left out of the grammar, since an answer naming them would be scored
    a hallucination: 8 calls without arguments (`SentimentModel()`, which Gorilla's matcher never matches) and 7
    shell commands (`./run.sh ...`, `mlagents-load-from-hf ...`)."""
    from apirl.evaluate.ast_match import AstMatcher, extract_api_call

    matcher = AstMatcher(catalog)
    return [row for row in catalog.rows
            if matcher.match_gorilla(extract_api_call(f"{AFTER_DOMAIN} {row.api_call}{AFTER_CALL}<<<api_provider>>>:"))
            is not None]


def hub_ids(catalog: ApiDatabase) -> set[str]:
    """The ids code may load under grounding: every row's 'org/name' hub id, and every string its call passes
    that is an 'org/name' (a call may pin a revision, 'pyannote/speaker-diarization@2.1') or the row's own id
    without an organisation ('t5-base', 'gpt2')."""
    ids = {row.model_id for row in catalog.rows if looks_like_hub_id(row.model_id)}
    for row in catalog.rows:
        ids |= {literal for literal in _QUOTED.findall(row.api_call)
                if looks_like_hub_id(literal) or (literal == row.model_id and "/" not in literal)}
    return ids


def _first_argument_forms(callee: str) -> list[str]:
    """The regexes of a callee whose first argument is a hub id: `Owner.load` as written (`SequenceTagger.load`,
    not `torch.hub.load`), a method (`.from_pretrained`) after any owner, a function (`YOLO`, also as
    `ultralytics.YOLO`) by its name, both for a name that is either (`load_from_hub`); none for the callees whose
    first argument is not an id (`pipeline`: the task; `torch.load`: a file)."""
    owner, _, name = callee.rpartition(".")
    if name == "load":
        return [rf"(?<!\w){re.escape(callee)}"] if owner and owner.split(".")[0] != "torch" else []
    if name in _NOT_FIRST_ARGUMENT:
        return []
    forms = []
    if owner or name in CLASS_LOADERS:
        forms.append(rf"\.{re.escape(name)}")
    if not owner or name in FUNCTION_LOADERS:
        forms.append(rf"(?<!\w){re.escape(name)}")
    return forms


@dataclass(frozen=True)
class Openers:
    """Where code is about to write a hub id: the loaders of `apirl.code_facts` and every callee that passes one of
    the catalog's ids in the catalog's own calls (`YOLO('...')`, `SequenceTagger.load('...')`), as a first
    argument; a pipeline's second argument; a model keyword (`model=`, `repo_id=`, `source=`...) of a call to
    one of those callees. `state(tail)` says whether `tail` ends right after an opener's quote, or where one may
    come next."""

    first_argument: re.Pattern[str]
    keyword: re.Pattern[str]
    callees: frozenset[str]

    @classmethod
    def of(cls, catalog: ApiDatabase, ids: set[str]) -> Openers:
        """The openers of `catalog`, whose hub ids are `ids` (`hub_ids`)."""
        first = set(CLASS_LOADERS | FUNCTION_LOADERS)
        keywords = set(MODEL_KEYWORDS)
        for row in catalog.rows:
            try:
                tree = ast.parse(row.api_call.rstrip(". "))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                callee = ast.unparse(node.func)
                if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in ids:
                    first.add(callee)
                keywords |= {keyword.arg for keyword in node.keywords if keyword.arg
                             and isinstance(keyword.value, ast.Constant) and keyword.value.value in ids}
        forms = sorted({form for callee in first for form in _first_argument_forms(callee)}, key=len, reverse=True)
        # Each form also matches where its quote is still to come (`due`): before the paren, the comma, the `=`.
        first_argument = re.compile(rf"(?:{'|'.join(forms)})(?:\(\s*(?P<quote>['\"])?)?$"
                                    rf"|\bpipeline\(\s*(?:task\s*=\s*)?(?P<tq>['\"])[^'\"\n]*(?P=tq)\s*"
                                    rf"(?:,\s*(?P<quote2>['\"])?)?$")
        keyword = re.compile(rf"(?<![\w.])(?P<callee>[\w.]+)\([^()]*?\b(?:{'|'.join(sorted(keywords))})\s*"
                             rf"(?:=\s*(?P<quote>['\"])?)?$")
        # A keyword's call: a loader by its name, or an `Owner.load` by its whole name (not `torch.hub.load`).
        callees = {callee if callee.endswith(".load") else callee.rpartition(".")[2] for callee in first}
        return cls(first_argument, keyword, frozenset(callees - {"load"}))

    def _match(self, tail: str) -> re.Match[str] | None:
        match = self.first_argument.search(tail)
        if match:
            return match
        match = self.keyword.search(tail)
        if match and {match.group("callee"), match.group("callee").rpartition(".")[2]} & self.callees:
            return match
        return None

    def state(self, tail: str) -> str | None:
        """The quote when `tail` ends with an opener and its quote, "" when it ends where one may come next (the
        paren, the comma or the `=` may still be missing), else None."""
        match = self._match(tail)
        if match is None:
            return None
        groups = match.groupdict()
        return groups.get("quote") or groups.get("quote2") or ""


class CatalogGrammar:
    """What the API database allows, tokenized once for one tokenizer. `grounding()` makes the per-decode state."""

    def __init__(self, catalog: ApiDatabase, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

        def encode(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        self.opening = TokenTrie()
        self.opening.add(encode(OPENING), OPENING)
        self.rows = groundable_rows(catalog)
        if not self.rows:
            raise InputError("the API database has no call the evaluation recognises: nothing to ground answers in",
                             path=catalog.path or "<api database>", field="generate.grounding")
        self.calls: dict[str, TokenTrie] = {}
        for row in self.rows:
            self.calls.setdefault(row.domain, TokenTrie()).add(encode(f" {row.api_call}{AFTER_CALL}"), row.api_call)
        self.domains = TokenTrie()
        for domain in self.calls:
            self.domains.add(encode(f" {domain}{AFTER_DOMAIN}"), domain)
        ids = hub_ids(catalog)
        self.ids = TokenTrie()
        for model_id in sorted(ids):
            self.ids.add(encode(model_id), model_id)
        self.openers = Openers.of(catalog, ids)
        size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        self.pieces = tokenizer.batch_decode([[token] for token in range(size)], clean_up_tokenization_spaces=False)
        # A hub id ends at its closing quote: the quote alone or followed by what may come after a string
        # argument (`')`, `',`), never by more string (`''`, `'+`, which would let an id go on).
        self.closers = {quote: frozenset(t for t, piece in enumerate(self.pieces) if piece.startswith(quote)
                                         and (len(piece) == 1 or piece[1] in _AFTER_CLOSING))
                        for quote in ("'", '"')}
        self.closer_lists = {quote: sorted(ids) for quote, ids in self.closers.items()}
        # Where an opener's quote is due, a token that writes the quote and the start of a string at once
        # (`'s`, `('t`) would carry an id past the trie: those are masked there.
        self.unmerged = _ids([t for t, piece in enumerate(self.pieces) if not _MERGED_QUOTE.search(piece)])

    def grounding(self) -> CatalogGrounding:
        return CatalogGrounding(self)


@dataclass
class _Row:
    """Where one row's answer stands: inside a trie (`node`, with `mode` saying which) or free text."""

    mode: str = "opening"  # opening | domain | call | id | free
    node: TokenTrie | None = None
    seen: int = 0  # tokens of the row already fed
    tail: str = ""  # the last characters of the text, to spot an opener
    in_code: bool = False
    opener_due: bool = False  # an opener's quote may come next: no token may write it merged with more text
    quote: str = "'"
    chosen: list[str] = field(default_factory=list)  # what the row took from the catalog, in order


class CatalogGrounding:
    """The engine's constraint for one decode: `allowed(row, tokens)` is the token ids the row may take next (a
    1-D tensor; None: any), given the tokens it has so far."""

    def __init__(self, grammar: CatalogGrammar) -> None:
        self.grammar = grammar
        self.rows: dict[int, _Row] = {}

    def allowed(self, row: int, tokens: Sequence[int]) -> Any:
        state = self.rows.get(row)
        if state is None:
            state = self.rows[row] = _Row(node=self.grammar.opening)
        for token in tokens[state.seen:]:
            self._feed(state, token)
        state.seen = len(tokens)
        if state.mode == "free":
            return self.grammar.unmerged if state.opener_due else None
        assert state.node is not None
        if state.mode == "id" and state.node.value is not None:
            return state.node.allowed_or_closing(state.quote, self.grammar.closer_lists[state.quote])
        return state.node.allowed

    def _feed(self, state: _Row, token: int) -> None:
        piece = self.grammar.pieces[token]
        if state.mode != "free":
            assert state.node is not None
            child = state.node.children.get(token)
            if child is not None:
                state.node = child
                if not child.children and state.mode != "id":  # an id ends at its closing quote, not before
                    self._finish(state, child.value)
            elif state.mode == "id" and state.node.value is not None and token in self.grammar.closers[state.quote]:
                self._finish(state, state.node.value)
            else:  # a token the mask did not allow (a caller that ignored it): the rest is free text
                state.mode, state.node = "free", None
        state.tail = (state.tail + piece)[-_TAIL_CHARS:]
        state.opener_due = False
        if state.mode == "free" and state.in_code:
            quote = self.grammar.openers.state(state.tail)
            if quote:
                state.mode, state.node, state.quote = "id", self.grammar.ids, quote
            state.opener_due = quote == ""
        elif state.mode == "free" and CODE_TAG in state.tail:
            state.in_code = True
            state.tail = state.tail[state.tail.index(CODE_TAG) + len(CODE_TAG):]

    def _finish(self, state: _Row, value: str | None) -> None:
        assert value is not None
        if state.mode == "opening":
            state.mode, state.node = "domain", self.grammar.domains
            return
        state.chosen.append(value)
        if state.mode == "domain":
            state.mode, state.node = "call", self.grammar.calls[value]
        else:
            state.mode, state.node = "free", None


def mask_logits(logits: Any, rows: Sequence[int], tokens: Sequence[Sequence[int]], constraint: Any) -> Any:
    """`logits` (one row per entry of `rows`) with every token the constraint forbids set to -inf. Only the
    constrained rows are computed: a step where every row writes free text costs nothing."""
    import torch

    if constraint is None:
        return logits
    constrained: list[int] = []
    places, columns = [], []  # per constrained row: its place among them, and its allowed tokens
    for position, (row, so_far) in enumerate(zip(rows, tokens, strict=True)):
        allowed = constraint.allowed(row, so_far)
        if allowed is not None:
            allowed = torch.as_tensor(allowed, dtype=torch.long)
            places.append(torch.full_like(allowed, len(constrained)))
            columns.append(allowed)
            constrained.append(position)
    if not constrained:
        return logits
    index = torch.tensor(constrained, device=logits.device)
    place, column = torch.cat(places).to(logits.device), torch.cat(columns).to(logits.device)
    masked = torch.full((len(constrained), logits.shape[-1]), float("-inf"), dtype=logits.dtype,
                        device=logits.device)
    masked[place, column] = logits[index[place], column]
    return logits.index_copy(0, index, masked)
