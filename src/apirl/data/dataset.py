"""The Gorilla data, loaded once, and the examples of each split that every later stage reads.

Two schemes, picked by what the data directory holds:
- `paper`: Gorilla's `huggingface_train.json` exists. Train is that file (less a seeded `val_fraction`
  for validation), test is every eval question: the paper's setting.
- `eval-split`: no training file (as on the project's machines). The eval questions are split by the
  committed id lists in `data/splits/`, and one synthesized example per API database row joins train.
In both, a test question can never reach training: `assert_no_test_leak` runs on every build.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apirl.data.apidb import ApiDatabase, ApiRow, load_api_database
from apirl.data.config import DataConfig
from apirl.data.paths import GorillaPaths, resolve_data_dir
from apirl.data.prompts import PROMPT_INPUT, PROMPT_INSTRUCTION, format_prompt, format_target
from apirl.data.questions import load_questions
from apirl.data.records import ApiBenchRecord, ParseIssue, load_apibench
from apirl.data.splits import (
    SPLITS,
    TrigramIndex,
    assert_no_near_duplicates,
    assert_no_test_leak,
    normalize_instruction,
    read_splits,
)
from apirl.data.synth import synthesize_instructions, synthesize_output
from apirl.errors import InputError

PROVENANCE_EVAL = "apibench-eval"
PROVENANCE_TRAIN = "apibench-train"
PROVENANCE_SYNTH = "synthetic-apidb"


@dataclass(frozen=True)
class Example:
    """One (prompt, target) pair of a split, with where it came from."""

    example_id: str
    split: str
    provenance: str
    question_id: int | None
    prompt: str
    target: str
    domain: str
    api_name: str
    api_call: str | None
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GorillaData:
    """Everything read from the data directory, parsed and checked."""

    paths: GorillaPaths
    records: dict[int, ApiBenchRecord]
    skipped: list[ParseIssue]
    api_db: ApiDatabase
    question_ids: list[int]
    train_records: list[ApiBenchRecord] | None
    train_skipped: list[ParseIssue]

    @property
    def scheme(self) -> str:
        return "paper" if self.train_records is not None else "eval-split"


def load_gorilla(config: DataConfig) -> GorillaData:
    """Read the eval file, the API database, the questions (when present) and the training file (when present)."""
    paths = resolve_data_dir(config.data_dir)
    loaded = load_apibench(paths.eval, strict=config.strict, source=PROVENANCE_EVAL)
    records = {record.question_id: record for record in loaded.records}
    api_db = load_api_database(paths.api_db)
    questions_path = paths.questions()
    if questions_path.is_file():
        question_ids = [q.question_id for q in load_questions(questions_path)]
        unknown = [qid for qid in question_ids if qid not in records]
        if unknown:
            raise InputError(f"question ids without a parsed eval record: {unknown[:10]}", path=questions_path)
    else:
        question_ids = sorted(records)
    train_records, train_skipped = None, []
    if paths.has_train():
        train = load_apibench(paths.train, strict=config.strict, source=PROVENANCE_TRAIN)
        train_records, train_skipped = train.records, train.skipped
    return GorillaData(paths, records, loaded.skipped, api_db, question_ids, train_records, train_skipped)


def _example(record: ApiBenchRecord, split: str, provenance: str, prefix: str) -> Example:
    return Example(
        example_id=f"{prefix}-{record.question_id}",
        split=split,
        provenance=provenance,
        question_id=record.question_id if provenance == PROVENANCE_EVAL else None,
        prompt=record.prompt,
        target=record.target,
        domain=record.gold_domain,
        api_name=record.gold_api_name,
        api_call=record.output.api_call,
        complete=record.is_complete,
    )


def synthesized_examples(api_db: ApiDatabase, per_api: int = 1, seed: int = 0,
                         avoid_code: frozenset[str] = frozenset(), style: str = "full") -> list[Example]:
    """`per_api` examples per database row, `apidb-<row>-<k>`, all with the row's answer; no request is written
    for two rows. A row whose example code is in `avoid_code` (normalised test gold code: some test questions'
    answers are their row's example) gets code written from its call instead. `style`: the answer's, see
    `synthesize_output`; `mixed` gives the row's first request a `compact` answer and the others `call` ones
    (the example code once, the call many times: what the API catalogue asks the model to remember)."""
    examples = []
    taken: set[str] = set()
    for row in api_db:
        styles = [("compact" if k == 0 else "call") if style == "mixed" else style for k in range(per_api)]
        targets = {answer_style: _synthesized_target(row, answer_style, avoid_code) for answer_style in styles}
        instructions = synthesize_instructions(row, per_api, seed, taken)
        taken.update(instructions)
        for k, instruction in enumerate(instructions):
            target = targets[styles[k]]
            examples.append(Example(
                example_id=f"apidb-{row.index}-{k}",
                split="train",
                provenance=PROVENANCE_SYNTH,
                question_id=None,
                prompt=format_prompt(instruction),
                target=target,
                domain=row.domain,
                api_name=row.api_name,
                api_call=row.api_call,
                complete=True,
            ))
    return examples


def _synthesized_target(row: ApiRow, style: str, avoid_code: frozenset[str]) -> str:
    output = synthesize_output(row, style=style)
    if normalize_instruction(output.code or "") in avoid_code:
        output = synthesize_output(row, use_example=False, style=style)
    return format_target(output)


@dataclass
class Splits:
    """The examples of each split, and how many training examples were dropped for repeating a test one."""

    examples: dict[str, list[Example]]
    dropped_for_leakage: dict[str, int]

    def __getitem__(self, name: str) -> list[Example]:
        return self.examples[name]


def build_examples(data: GorillaData, config: DataConfig) -> Splits:
    """The examples of every split, checked for test leakage."""
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    if data.train_records is not None:
        splits["test"] = [_example(data.records[qid], "test", PROVENANCE_EVAL, "eval") for qid in data.question_ids]
        order = list(range(len(data.train_records)))
        random.Random(f"apirl-val:{config.split_seed}").shuffle(order)
        n_val = round(len(order) * config.val_fraction)
        val_index = set(order[:n_val])
        for index, record in enumerate(data.train_records):
            split = "val" if index in val_index else "train"
            splits[split].append(_example(record, split, PROVENANCE_TRAIN, "train"))
    else:
        ids = read_splits(config.split_dir)
        for name, qids in ids.items():
            missing = [qid for qid in qids if qid not in data.records]
            if missing:
                raise InputError(f"split {name!r} names question ids with no eval record: {missing[:10]}",
                                 path=Path(config.split_dir) / f"{name}.txt")
            splits[name] = [_example(data.records[qid], name, PROVENANCE_EVAL, "eval") for qid in qids]
    if config.synthesize_from_api_db:
        splits["train"].extend(synthesized_examples(data.api_db, config.synthesized_per_api,
                                                    config.synthesis_seed, _test_gold_code(splits, data),
                                                    config.synthesized_answer))
    dropped = _drop_and_check_leaks(splits, data, config.near_duplicate_overlap)
    return Splits(splits, dropped)


def _test_gold_code(splits: dict[str, list[Example]], data: GorillaData) -> frozenset[str]:
    """The normalised gold code sections of the test questions."""
    return frozenset(normalize_instruction(data.records[ex.question_id].output.code or "")
                     for ex in splits["test"] if ex.question_id is not None) - {""}


def _drop_and_check_leaks(splits: dict[str, list[Example]], data: GorillaData, near_duplicate: float
                          ) -> dict[str, int]:
    """Drop training and val examples that repeat a test instruction or test gold code, or whose request is a
    near-duplicate of a test request (`near_duplicate` of word trigrams shared), then assert none is left.

    Returns how many were dropped per (split, provenance[, "near-duplicate"]). Identical gold code in two
    questions is a near-duplicate question, so the conservative choice is to keep it only on the test side.
    """
    test_instr = {normalize_instruction(data.records[ex.question_id].instruction)
                  for ex in splits["test"] if ex.question_id is not None}
    test_code = _test_gold_code(splits, data)
    test_side = [(ex.example_id, _instruction_of(ex)) for ex in splits["test"]]
    test_requests = [(ex.example_id, _request_of(ex)) for ex in splits["test"]]
    index = TrigramIndex(test_requests)
    dropped: Counter[str] = Counter()
    for name in ("train", "val"):
        kept = []
        for ex in splits[name]:
            repeats_test = (normalize_instruction(_instruction_of(ex)) in test_instr
                            or normalize_instruction(_code_of(ex)) in test_code)
            if repeats_test:
                dropped[f"{name}/{ex.provenance}"] += 1
            elif index.closest(_request_of(ex)).score >= near_duplicate:
                dropped[f"{name}/{ex.provenance}/near-duplicate"] += 1
            else:
                kept.append(ex)
        splits[name] = kept
    train_side = [(ex.example_id, _instruction_of(ex)) for name in ("train", "val") for ex in splits[name]]
    assert_no_test_leak(train_side, test_side)
    assert_no_near_duplicates([(ex.example_id, _request_of(ex)) for name in ("train", "val") for ex in splits[name]],
                              test_requests, near_duplicate)
    return dict(sorted(dropped.items()))


def _instruction_of(example: Example) -> str:
    return example.prompt.split("\n###Output:", 1)[0]


def _request_of(example: Example) -> str:
    """The instruction (and input) without the prompt's `###` cues, which every request shares."""
    return _instruction_of(example).replace(PROMPT_INSTRUCTION, " ").replace(PROMPT_INPUT, " ")


def _code_of(example: Example) -> str:
    return example.target.split("<<<code>>>:", 1)[1] if "<<<code>>>:" in example.target else ""


def data_stats(data: GorillaData, splits: Splits) -> dict[str, Any]:
    """Counts per split, domain and provenance, plus what was skipped or flagged, for `apirl data stats`."""
    missing_tags = Counter(tag for record in data.records.values() for tag in record.missing_tags)
    return {
        "data_dir": str(data.paths.root),
        "scheme": data.scheme,
        "eval_records": {
            "lines": len(data.records) + len(data.skipped),
            "parsed": len(data.records),
            "skipped": len(data.skipped),
            "skipped_reasons": [str(issue) for issue in data.skipped],
            "complete": sum(record.is_complete for record in data.records.values()),
            "missing_tags": dict(sorted(missing_tags.items())),
            "questions": len(data.question_ids),
        },
        "train_file": None if data.train_records is None else {
            "parsed": len(data.train_records), "skipped": len(data.train_skipped)},
        "api_database": {
            "rows": len(data.api_db),
            "call_does_not_parse": sum(not row.call_parses for row in data.api_db),
            "call_has_no_arguments": sum(not row.call_has_arguments for row in data.api_db),
            "domains": len({row.domain for row in data.api_db}),
        },
        "splits": {
            name: {
                "examples": len(examples),
                "complete": sum(ex.complete for ex in examples),
                "per_provenance": dict(sorted(Counter(ex.provenance for ex in examples).items())),
                "per_domain": dict(sorted(Counter(ex.domain for ex in examples).items())),
            }
            for name, examples in splits.examples.items()
        },
        "dropped_for_leakage": splits.dropped_for_leakage,
    }
