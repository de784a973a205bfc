"""The evaluator end to end: responses files, splits, missing ids, JSON output, and the Gorilla anchors."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from apirl.cli import app
from apirl.config import load_config
from apirl.data.dataset import load_gorilla
from apirl.data.splits import write_splits
from apirl.evaluate.responses import load_responses
from apirl.evaluate.scorer import evaluate_responses
from apirl.evaluate.tables import results_table

RUNNER = CliRunner()


def _set_args(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny(tiny_data_dir, tmp_path):
    split_dir = tmp_path / "splits"
    write_splits(split_dir, {"train": [1], "val": [2], "test": [2, 4]}, "h")
    overrides = [f'data.data_dir="{tiny_data_dir}"', f'data.split_dir="{split_dir}"', "eval.bootstrap_samples=50"]
    cfg = load_config(overrides=overrides)
    return cfg, load_gorilla(cfg.data), overrides


def test_outcomes_and_text_metrics(tiny, tmp_path):
    cfg, data, _ = tiny
    gold = data.records[1]
    path = _write(tmp_path / "r.jsonl", [
        {"question_id": 1, "text": gold.target},                       # the gold answer itself
        {"question_id": 2, "text": data.records[4].target},            # a real API of the wrong domain
        {"question_id": 4, "text": "<<<api_call>>>: Foo.bar('x/y')"},  # unknown API
    ])
    summary, rows = evaluate_responses(load_responses(path), data.records, data.api_db, cfg.eval,
                                       question_ids=None, path=path)
    assert [r.gorilla_outcome for r in rows] == ["correct", "error", "hallucination"]
    assert summary["n"] == 3
    assert summary["ast_accuracy"] == pytest.approx(1 / 3) and summary["hallucination"] == pytest.approx(1 / 3)
    assert rows[0].api_call_exact and rows[0].model_id_match and rows[0].rouge_l == pytest.approx(1.0)
    assert not rows[2].model_id_match
    low, high = summary["ci95"]["ast_accuracy"]
    assert 0.0 <= low <= summary["ast_accuracy"] <= high <= 1.0
    assert set(summary["per_domain"]) == {r.domain for r in rows}
    assert "| r.jsonl | 3 |" in results_table([("r.jsonl", summary)])


def test_strict_mode_fills_the_headline_keys(tiny, tmp_path):
    cfg, data, _ = tiny
    # Right domain, wrong API: correct for Gorilla, an error for strict.
    wrong_api = "<<<api_call>>>: pipeline('fill-mask', model='bert-base-uncased')\n<<<api_provider>>>: HF"
    path = _write(tmp_path / "r.jsonl", [{"question_id": 1, "text": wrong_api}])
    gold = data.records[1]
    records = {1: replace(gold, api_data=replace(gold.api_data, domain=data.records[4].gold_domain))}
    cfg.eval.mode = "strict"
    summary, _ = evaluate_responses(load_responses(path), records, data.api_db, cfg.eval, question_ids=None)
    assert summary["gorilla"]["accuracy"] == 1.0 and summary["strict"]["error"] == 1.0
    assert summary["ast_accuracy"] == 0.0 and summary["error"] == 1.0 and summary["mode"] == "strict"


def test_split_scores_missing_questions_as_empty(tiny, tmp_path):
    cfg, data, _ = tiny
    path = _write(tmp_path / "r.jsonl", [{"question_id": 1, "text": "x"}, {"question_id": 2, "text": "y"}])
    summary, rows = evaluate_responses(load_responses(path), data.records, data.api_db, cfg.eval,
                                       question_ids=[2, 4], path=path)
    assert [r.question_id for r in rows] == [2, 4]
    assert summary["missing_responses"] == 1 and summary["ignored_responses"] == 1
    assert rows[1].missing and rows[1].gorilla_outcome == "hallucination"


@pytest.mark.parametrize("line, message", [
    ({"question_id": 99, "text": "x"}, "not a question of the eval data"),
    ({"text": "x"}, "question_id"),
    ({"question_id": 1, "text": 5}, "expected a string"),
])
def test_bad_responses_are_clear_errors(tiny, tmp_path, line, message):
    _, _, overrides = tiny
    path = _write(tmp_path / "r.jsonl", [{"question_id": 2, "text": "ok"}, line])
    result = RUNNER.invoke(app, ["eval", "responses", str(path), "--split", "all",
                                 *_set_args(overrides)])
    assert result.exit_code == 2
    assert message in result.output and f"{path}:2" in result.output


def test_duplicate_question_id_is_an_error(tmp_path):
    path = _write(tmp_path / "r.jsonl", [{"question_id": 1, "text": "a"}, {"question_id": 1, "text": "b"}])
    with pytest.raises(Exception, match="repeats line 1"):
        load_responses(path)


def test_cli_json_has_the_documented_keys(tiny, tmp_path):
    _, data, overrides = tiny
    path = _write(tmp_path / "r.jsonl", [{"question_id": 2, "text": data.records[2].target}])
    details = tmp_path / "details.jsonl"
    result = RUNNER.invoke(app, ["eval", "responses", str(path), "--json", "--details", str(details),
                                 *_set_args(overrides)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in ("n", "ast_accuracy", "hallucination", "error", "strict_accuracy", "api_call_exact", "rouge_l",
                "codebleu", "per_domain"):
        assert key in summary
    assert summary["n"] == 2 and summary["split"] == "test" and summary["ast_accuracy"] == 0.5
    assert len(details.read_text().splitlines()) == 2


@pytest.mark.integration
def test_gorilla_ft_zero_shot_anchor(real_data_dir):
    """Regression anchor: Gorilla-7B FT 0-shot on all 904 questions (hallucination equals the paper's 10.95%)."""
    cfg = load_config(overrides=[f'data.data_dir="{real_data_dir}"', "eval.bootstrap_samples=0",
                                 "eval.codebleu=false"])
    data = load_gorilla(cfg.data)
    path = data.paths.responses_dir / "response_huggingface_Gorilla_FT_0_shot.jsonl"
    summary, _ = evaluate_responses(load_responses(path), data.records, data.api_db, cfg.eval,
                                    question_ids=None, path=path)
    assert summary["n"] == 904
    assert round(summary["hallucination"] * 904) == 99
    assert round(summary["ast_accuracy"] * 904) == 627


def test_uses_api_counts_the_named_model_or_one_of_the_gold_domain(tiny):
    """Executability with the API: the code must have loaded the model its api_call names (whatever its domain)
    or any model of the gold domain; a load of another domain's model, or no load, does not count."""
    from apirl.evaluate.scorer import uses_api

    _, data, _ = tiny
    sentiment, vit = "distilbert-base-uncased-finetuned-sst-2-english", "google/vit-base-patch16-224"
    text_classification = ["Natural Language Processing Text Classification"]
    def answer(call: str) -> str:
        return f"<<<api_call>>>: {call}\n<<<api_provider>>>: Hugging Face\n<<<code>>>: x = {call}"

    assert uses_api([sentiment], "", text_classification, data.api_db)  # a gold-domain model
    assert uses_api([vit], answer(f"AutoModel.from_pretrained('{vit}')"), text_classification, data.api_db)
    assert not uses_api([vit], answer(f"pipeline('sentiment-analysis', model='{sentiment}')"), text_classification,
                        data.api_db)  # named one model, loaded another domain's
    assert not uses_api([vit], f"<<<code>>>: x = AutoModel.from_pretrained('{vit}')", text_classification,
                        data.api_db)  # no api_call: only the gold domain counts, not an id of the code
    assert not uses_api([], answer(f"pipeline('sentiment-analysis', model='{sentiment}')"), text_classification,
                        data.api_db)  # ran without loading anything
    assert not uses_api([sentiment], "<<<code>>>: x = 1", [], data.api_db)  # no gold domain, no named model
    unclosed = f"<<<api_call>>>: AutoModel.from_pretrained('x')\n<<<code>>>: m = AutoModel.from_pretrained('{vit}')"
    assert not uses_api([vit], unclosed, text_classification, data.api_db)  # the call section ends at the next tag
