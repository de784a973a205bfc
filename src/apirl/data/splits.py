"""Train / val / test splits, as committed lists of question ids, and the guard against test leakage.

Without Gorilla's training file (as on the project's machines) the 904 eval questions are split 60/10/30,
stratified by gold domain, with a seeded shuffle per domain, so every machine gets the same ids. The ids are
committed in `data/splits/{train,val,test}.txt`; runs read those files and never re-split on the fly.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from apirl.errors import InputError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def make_splits(domain_of: dict[int, str], *, seed: int, val_fraction: float,
                test_fraction: float) -> dict[str, list[int]]:
    """Split question ids stratified by domain; deterministic in (ids, domains, seed, fractions).

    Each domain is shuffled with its own seeded generator (string seeds are hashed deterministically by
    `random`), then cut into test, val and train by rounding the fractions; a domain keeps at least one
    training example when it has two or more questions.
    """
    by_domain: dict[str, list[int]] = defaultdict(list)
    for qid, domain in domain_of.items():
        by_domain[domain].append(qid)
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    for domain in sorted(by_domain):
        ids = sorted(by_domain[domain])
        random.Random(f"apirl-split:{seed}:{domain}").shuffle(ids)
        n_test = round(len(ids) * test_fraction)
        n_val = round(len(ids) * val_fraction)
        while len(ids) >= 2 and n_test + n_val >= len(ids):
            if n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        splits["test"].extend(ids[:n_test])
        splits["val"].extend(ids[n_test:n_test + n_val])
        splits["train"].extend(ids[n_test + n_val:])
    return {name: sorted(ids) for name, ids in splits.items()}


def write_splits(split_dir: str | Path, splits: dict[str, list[int]], header: str) -> None:
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        body = "\n".join(str(qid) for qid in splits[name])
        (split_dir / f"{name}.txt").write_text(f"# {header}\n{body}\n", encoding="utf-8")


def read_split(split_dir: str | Path, name: str) -> list[int]:
    """Question ids of one committed split; lines starting with '#' are comments."""
    if name not in SPLITS:
        raise InputError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    path = Path(split_dir) / f"{name}.txt"
    if not path.is_file():
        raise InputError("split file not found (create it with `apirl data split`)", path=path)
    ids: list[int] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not (line.isascii() and line.isdigit()):
            raise InputError(f"expected a question id, got {line!r}", path=path, line=line_number)
        ids.append(int(line))
    return ids


def scored_question_ids(split: str, split_dir: str | Path, every_id: Iterable[int], limit: int = 0) -> list[int]:
    """The eval questions a split scores: `every_id` for "all", else the committed split's ids; the first
    `limit` of them when `limit` > 0."""
    ids = list(every_id) if split == "all" else read_split(split_dir, split)
    return ids[:limit] if limit else ids


def read_splits(split_dir: str | Path) -> dict[str, list[int]]:
    splits = {name: read_split(split_dir, name) for name in SPLITS}
    check_disjoint(splits)
    return splits


def check_disjoint(splits: dict[str, list[int]]) -> None:
    """No id may appear in two splits, nor twice in one."""
    seen: dict[int, str] = {}
    for name, ids in splits.items():
        for qid in ids:
            if qid in seen:
                raise InputError(f"question id {qid} is in split {seen[qid]!r} and in split {name!r}")
            seen[qid] = name


def normalize_instruction(text: str) -> str:
    """Lower-cased words only: two instructions equal under this are the same question."""
    return " ".join(re.findall(r"\w+", text.lower()))


def assert_no_test_leak(train_texts: Iterable[tuple[str, str]], test_texts: Iterable[tuple[str, str]]) -> None:
    """Fail loudly when any training (id, text) shares an id or a normalised text with a test (id, text).

    Texts are instructions or gold code; the ids are example ids. Called on every dataset build.
    """
    test_ids: set[str] = set()
    test_norm: dict[str, str] = {}
    for example_id, text in test_texts:
        test_ids.add(example_id)
        norm = normalize_instruction(text)
        if norm:
            test_norm[norm] = example_id
    for example_id, text in train_texts:
        if example_id in test_ids:
            raise AssertionError(f"test example {example_id} is in the training data")
        norm = normalize_instruction(text)
        if norm and norm in test_norm:
            raise AssertionError(f"training example {example_id} repeats test example {test_norm[norm]}")


# Two requests are near-duplicates when the Jaccard similarity of their sets of word trigrams is at least this.
# A copy of a test request with a sentence as long as a third of it added, or a sixth of its words changed,
# scores above it. Measured on the 272 test requests: no synthesized request (10 per API) exceeds 0.29 and no
# APIBench train or val request 0.24, so the limit leaves a wide margin on both sides.
NEAR_DUPLICATE_OVERLAP = 0.5


def word_trigrams(text: str) -> set[tuple[str, str, str]]:
    words = normalize_instruction(text).split()
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}  # type: ignore[misc]


@dataclass(frozen=True)
class Overlap:
    """The test request closest to a training request, by the Jaccard similarity of their word trigrams."""

    score: float
    test_id: str


class TrigramIndex:
    """The word trigrams of every test request, indexed so that a training request is compared only with the
    test requests it shares a trigram with."""

    def __init__(self, test_texts: Iterable[tuple[str, str]]) -> None:
        self._grams: dict[str, set[tuple[str, str, str]]] = {}
        self._by_gram: dict[tuple[str, str, str], list[str]] = {}
        for example_id, text in test_texts:
            grams = word_trigrams(text)
            self._grams[example_id] = grams
            for gram in grams:
                self._by_gram.setdefault(gram, []).append(example_id)

    def closest(self, text: str) -> Overlap:
        grams = word_trigrams(text)
        shared: dict[str, int] = {}
        for gram in grams:
            for example_id in self._by_gram.get(gram, ()):
                shared[example_id] = shared.get(example_id, 0) + 1
        best = Overlap(0.0, "")
        for example_id, count in shared.items():
            score = count / (len(grams) + len(self._grams[example_id]) - count)
            if score > best.score:
                best = Overlap(score, example_id)
        return best


def assert_no_near_duplicates(train_texts: Iterable[tuple[str, str]], test_texts: Iterable[tuple[str, str]],
                              threshold: float = NEAR_DUPLICATE_OVERLAP) -> None:
    """Fail loudly when a training (id, request) and a test request have a Jaccard similarity of word trigrams
    of `threshold` or more. Called on every dataset build after the near-duplicates were dropped, so it fails
    only if the drop was bypassed."""
    index = TrigramIndex(test_texts)
    for example_id, text in train_texts:
        overlap = index.closest(text)
        if overlap.score >= threshold:
            raise AssertionError(f"training example {example_id} is a near-duplicate of test example "
                                 f"{overlap.test_id} (word-trigram Jaccard {overlap.score:.2f}, limit "
                                 f"{threshold})")
