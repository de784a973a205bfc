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
a `Decision`: the code-only checks in `code_checks.py`, the API checks in `api_checks.py`, `check_logic` here;
what a snippet loads comes from `apirl.code_facts`. `ToolsJudge` only dispatches. Where a check abstains:

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

from apirl.data.apidb import ApiDatabase
from apirl.execution.executor import ExecVerdict, runnable_code
from apirl.feedback.api_checks import check_api_exists, check_arguments
from apirl.feedback.code_checks import Decision, check_complete, check_defined_names, check_imports, check_syntax
from apirl.feedback.questions import QUESTIONS, Question
from apirl.feedback.types import Answer, Sample

__all__ = ["JUDGE", "ToolsJudge", "check_api_exists", "check_arguments", "check_complete", "check_defined_names",
           "check_imports", "check_logic", "check_syntax"]

JUDGE = "tools"

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
