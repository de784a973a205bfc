"""Every judgment, cached in SQLite, so that a killed run resumes without judging anything twice.

One row per (judge, model, question, prompt, completion): the prompt and completion are stored as SHA-256
hashes, so the key is small and the cache holds no generated text. The connection is in autocommit mode and the
database in WAL mode: each `put` is durable when it returns (a run killed right after loses nothing already
judged), and readers (a report, a second worker) are not blocked by the writer. The token counts of the call
that produced each answer are kept next to it, so `stats` tells what the judging cost.

The first answer stored under a key wins: a second `put` of the same key is ignored, so two workers that judge
the same sample by accident keep one row and one token count.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.feedback.types import Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    judge TEXT NOT NULL,
    model TEXT NOT NULL,
    question TEXT NOT NULL,
    prompt_sha TEXT NOT NULL,
    completion_sha TEXT NOT NULL,
    value INTEGER,
    p_yes REAL,
    detail TEXT NOT NULL DEFAULT '',
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    PRIMARY KEY (judge, model, question, prompt_sha, completion_sha)
)
"""


def sha(text: str) -> str:
    """The SHA-256 hex digest of a text (UTF-8): the cache's key for prompts and completions."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgmentCache:
    """The judgments table of one SQLite file. Use as a context manager, or call `close`.

    `model` is what produced the answer (an LLM's name; "" for the tools judge, which has none). `prompt` and
    `completion` are the texts the answer is about, hashed here.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every write is durable
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")  # wait for another worker's write instead of failing
            self._db.execute(_SCHEMA)
            self._db.execute("SELECT judge, model, question, prompt_sha, completion_sha, value, p_yes, detail, "
                             "prompt_tokens, completion_tokens, created FROM judgments LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InputError(f"not a usable judgment cache ({exc}); move it away and the run starts a new one "
                             "(its answers are judged again)", path=self.path) from exc

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def get(self, judge: str, model: str, question: str, prompt: str, completion: str) -> Answer | None:
        """The cached answer, or None when this question was never answered for this prompt and completion."""
        row = self._db.execute(
            "SELECT question, value, p_yes, detail FROM judgments WHERE judge = ? AND model = ? AND question = ? "
            "AND prompt_sha = ? AND completion_sha = ?",
            (judge, model, question, sha(prompt), sha(completion))).fetchone()
        return _answer(judge, row) if row is not None else None

    def get_many(self, judge: str, model: str, questions: Iterable[str], prompt: str, completion: str
                 ) -> dict[str, Answer]:
        """The cached answers to these questions about one prompt and completion, by question key (the
        questions never answered are absent): one query for a sample's questions."""
        keys = list(dict.fromkeys(questions))
        if not keys:
            return {}
        marks = ", ".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT question, value, p_yes, detail FROM judgments WHERE judge = ? AND model = ? "
            f"AND prompt_sha = ? AND completion_sha = ? AND question IN ({marks})",
            (judge, model, sha(prompt), sha(completion), *keys)).fetchall()
        return {row[0]: _answer(judge, row) for row in rows}

    def put(self, answer: Answer, model: str, prompt: str, completion: str, *, prompt_tokens: int = 0,
            completion_tokens: int = 0) -> bool:
        """Store an answer (its judge and question are the answer's own) with the tokens its call used.

        Committed before returning. True when stored; False when the key was already there (kept as it was).
        """
        value = None if answer.value is None else int(answer.value)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (answer.judge, model, answer.question, sha(prompt), sha(completion), value, answer.p_yes,
             answer.detail, prompt_tokens, completion_tokens, datetime.now(UTC).isoformat(timespec="seconds")))
        return cursor.rowcount == 1

    def stats(self) -> dict[str, Any]:
        """What the cached judging cost: answers stored (calls) and tokens, in all and per judge."""
        rows = self._db.execute(
            "SELECT judge, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) "
            "FROM judgments GROUP BY judge ORDER BY judge").fetchall()
        per_judge = {judge: {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion,
                             "tokens": prompt + completion}
                     for judge, calls, prompt, completion in rows}
        totals = {key: sum(entry[key] for entry in per_judge.values())
                  for key in ("calls", "prompt_tokens", "completion_tokens", "tokens")}
        return {**totals, "per_judge": per_judge}


def _answer(judge: str, row: tuple[Any, ...]) -> Answer:
    question, value, p_yes, detail = row
    return Answer(question, None if value is None else bool(value), p_yes, judge, detail)
