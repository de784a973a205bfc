"""The eval stage keeps the scores of a label whose responses, config and data did not change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smoke_helpers import smoke_config


@pytest.mark.integration
def test_eval_stage_scores_only_what_changed(real_data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import apirl.evaluate.stage as stage
    from apirl.data.dataset import load_gorilla
    from apirl.data.splits import scored_question_ids
    from apirl.data.stage import prepare_data, read_examples

    config = smoke_config(real_data_dir, tmp_path / "runs", "eval",
                          f'data.split_dir="{Path(__file__).parents[1] / "data" / "splits"}"')
    layout = config.layout
    prepare_data(config.data, layout, config.seed)
    ids = scored_question_ids("test", config.data.split_dir, load_gorilla(config.data).question_ids, 4)
    gold = {ex.question_id: ex.target for ex in read_examples(layout, "test")}
    for label, texts in (("a", [gold[i] for i in ids]), ("b", ["no code"] * 4)):
        path = layout.responses(label)
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"question_id": i, "text": text}) + "\n"
                                for i, text in zip(ids, texts, strict=True)))
    scored: list[str] = []
    real = stage.evaluate_file

    def counting(path: Path, *args: Any, execution: Any = None, **kwargs: Any) -> Any:
        scored.append(Path(path).parent.name if "generate" in str(path) else "gorilla")
        return real(path, *args, **kwargs)  # without the sandbox: the cache is what is tested

    monkeypatch.setattr(stage, "evaluate_file", counting)

    def run(*labels: str, force: bool = False) -> dict[str, Any]:
        """The summaries, less the seconds each scoring took (the one field a second scoring changes)."""
        scored.clear()
        summaries = stage.run_eval(config.eval, config.execution, config.data, layout, config.seed,
                                   list(labels), limit=4, gorilla_exec=False, force=force).summary
        return {label: {k: v for k, v in s.items() if k != "seconds"} for label, s in summaries.items()}

    first = run("a", "b")
    anchors = scored.count("gorilla")
    assert scored == ["a", "b"] + ["gorilla"] * anchors and anchors >= 2
    assert first["a"]["ast_accuracy"] == 1.0 and first["b"]["ast_accuracy"] == 0.0
    assert run("a") == {"a": first["a"]} and scored == []  # b dropped: a and the anchors kept, nothing scored
    assert not layout.eval_summary("b").exists()
    assert run("a", "b") == first and scored == ["b"]
    details = layout.eval_details("a")
    details.write_text(details.read_text().replace("true", "false"))  # a damaged details file is scored again
    assert run("a", "b") == first and scored == ["a"]
    responses = layout.responses("b")
    responses.write_text(responses.read_text().replace("no code", "still no code"))
    run("a", "b")
    assert scored == ["b"]
    run("a", "b", force=True)
    assert scored == ["a", "b"] + ["gorilla"] * anchors
    assert run("a", "b")["a"] == first["a"] and scored == []  # up to date: the stage is skipped
    eval_dir = layout.root / "eval"
    assert sorted(p.name for p in eval_dir.glob("*.json")) == ["a.json", "b.json", "gorilla.json", "manifest.json"]
