"""Policy models and generation: prompts, stop handling, model specs, and generation files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apirl.data.dataset import PROVENANCE_EVAL, PROVENANCE_SYNTH, Example
from apirl.errors import InputError
from apirl.models.generation import STOP_STRINGS, build_prompt, cut_at_stop, pick_shots, request_of
from apirl.models.load import SMOLLM2, resolve_model


def example(i: int, provenance: str = PROVENANCE_EVAL, complete: bool = True) -> Example:
    return Example(example_id=f"ex-{i}", split="train", provenance=provenance, question_id=i,
                   prompt=f"###Instruction: task {i}\n###Output:", target=f" <<<domain>>>: d{i}\n<<<code>>>: x={i}",
                   domain="d", api_name="a", api_call="c()", complete=complete)


def test_request_of_strips_the_cues() -> None:
    assert request_of("###Instruction: Classify this.\n###Input: hello\n###Output:") == "Classify this.\nInput: hello"


def test_cut_at_stop_keeps_the_answer_only() -> None:
    answer = " <<<domain>>>: NLP\n<<<code>>>: print(1)"
    assert cut_at_stop(answer + "\n\n###Instruction: next one") == answer
    assert cut_at_stop(answer) == answer
    assert all(stop not in cut_at_stop(answer + stop + "tail") for stop in STOP_STRINGS)


def test_shots_come_from_complete_real_examples_and_are_seeded() -> None:
    train = [example(i) for i in range(10)] + [example(100 + i, PROVENANCE_SYNTH) for i in range(10)]
    train.append(example(50, complete=False))
    shots = pick_shots(train, 3, seed=1)
    assert shots == pick_shots(train, 3, seed=1)
    assert shots != pick_shots(train, 3, seed=2)
    assert all(s.provenance == PROVENANCE_EVAL and s.complete for s in shots)
    assert pick_shots(train, 0, seed=1) == []
    with pytest.raises(InputError, match="shots"):
        pick_shots(train, 11, seed=1)


def test_plain_few_shot_prompt_ends_with_the_question() -> None:
    shots = [example(1), example(2)]
    prompt = build_prompt(example(3), "plain", shots, tokenizer=None)
    assert prompt.startswith(shots[0].prompt + shots[0].target + "\n\n")
    assert prompt.endswith(example(3).prompt)
    assert prompt.count("###Output:") == 3


def test_chat_style_needs_a_chat_template() -> None:
    class NoTemplate:
        chat_template = None

    with pytest.raises(InputError, match="chat template"):
        build_prompt(example(1), "chat", [], NoTemplate())


def test_unknown_model_specs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown model 'gpt-17'"):
        resolve_model("gpt-17", tmp_path)
    with pytest.raises(InputError, match="hf:"):
        resolve_model("hf:", tmp_path)
    assert resolve_model(str(tmp_path), tmp_path).local


def test_loading_a_model_that_does_not_exist_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants
    import transformers.utils.hub

    from apirl.models.load import load_model, load_tokenizer

    # Both libraries read HF_HUB_OFFLINE once at import: patch their flags, or the lookup waits on the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)
    source = resolve_model("hf:apirl-test/no-such-model", tmp_path)
    with pytest.raises(InputError, match="cannot load model 'hf:apirl-test/no-such-model'"):
        load_tokenizer(source)
    with pytest.raises(InputError, match="cannot load model"):
        load_model(source)
    empty = resolve_model(str(tmp_path), tmp_path)
    with pytest.raises(InputError, match="from the local directory"):
        load_model(empty)


def test_a_model_that_will_not_load_names_the_config_key_that_chose_it(tmp_path: Path) -> None:
    """`rl.policy` (or `reward.base`, `feedback.policy`) pointing at an empty directory: the error says which key
    to fix, whether the tokenizer or the weights fail."""
    from apirl.models.load import load_model, load_tokenizer, resolve_or_sft
    from apirl.rundir import RunLayout

    source = resolve_or_sft(str(tmp_path), RunLayout(tmp_path), "", "rl.policy")
    for load in (load_tokenizer, load_model):
        with pytest.raises(InputError, match=r"\[rl\.policy\]") as info:
            load(source)
        assert info.value.field == "rl.policy"
    assert resolve_model(str(tmp_path)).field == "model.name"


# ------------------------------------------------------------------------------------------------------------
# With the tiny random model (SmolLM2's tokenizer) and the real data: files round-trip through the evaluator.


@pytest.fixture(scope="module")
def smoke_config(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from apirl.config import load_config

    runs = tmp_path_factory.mktemp("runs")
    return load_config(Path(__file__).parents[1] / "configs" / "smoke.toml",
                       [f'data.data_dir="{real_data_dir}"', f'runs_dir="{runs}"'])


@pytest.mark.integration
def test_generate_is_a_stage_whose_responses_the_evaluator_scores(smoke_config) -> None:
    from apirl.data.dataset import load_gorilla
    from apirl.data.stage import prepare_data
    from apirl.evaluate.responses import load_responses
    from apirl.evaluate.stage import evaluate_file
    from apirl.models.stage import run_generate

    cfg, layout = smoke_config, smoke_config.layout
    prepare_data(cfg.data, layout, cfg.seed)
    result = run_generate(cfg.generate, cfg.model, layout, cfg.seed, "tiny")
    out = layout.responses("tiny")
    summary = result.summary
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert not result.skipped and (result.stage_dir / "manifest.json").is_file()
    assert len(rows) == summary["n"] == cfg.generate.limit
    assert all(isinstance(r["question_id"], int) and isinstance(r["text"], str) for r in rows)
    assert summary["new_tokens"] > 0 and summary["resumed"] == 0
    assert len(load_responses(out)) == len(rows)
    result_again = run_generate(cfg.generate, cfg.model, layout, cfg.seed, "tiny")
    assert result_again.skipped and result_again.summary == summary  # the summary of the run that made the file
    scored, _rows = evaluate_file(out, cfg.eval, load_gorilla(cfg.data), cfg.data.split_dir)
    assert scored["n"] == 272  # the whole test split; the ids not generated count as empty answers
    assert not out.with_name(out.name + ".partial").exists()


@pytest.mark.integration
@pytest.mark.parametrize("do_sample", [False, True])
def test_generate_resumes_an_interrupted_run(smoke_config, tmp_path: Path, monkeypatch, do_sample: bool) -> None:
    """Killed after its first answer, a rerun keeps that answer and writes the rest: the same file as an
    uninterrupted run, sampled too (each row draws from its own seed, whatever else is generated with it)."""
    import apirl.models.stage as stage
    from apirl.data.stage import prepare_data, read_examples

    cfg = smoke_config
    gen = cfg.generate.model_copy(update={"do_sample": do_sample, "temperature": 1.0, "top_p": 0.9})
    prepare_data(cfg.data, cfg.layout, cfg.seed)
    examples, train = read_examples(cfg.layout, gen.split), read_examples(cfg.layout, "train")

    def generate(out: Path) -> dict:
        return stage.generate_responses(gen, cfg.model, cfg.seed, examples, train, out)

    full = tmp_path / "full.jsonl"
    generate(full)
    real_batches = stage.generate_batches

    def killed_after_first_answer(*args, on_batch, **kwargs):
        def once(indices, texts, tokens):
            on_batch(indices, texts, tokens)
            raise KeyboardInterrupt

        return real_batches(*args, on_batch=once, **kwargs)

    out = tmp_path / "resumed.jsonl"
    monkeypatch.setattr(stage, "generate_batches", killed_after_first_answer)
    with pytest.raises(KeyboardInterrupt):
        generate(out)
    assert not out.exists() and out.with_name(out.name + ".partial").is_file()
    monkeypatch.setattr(stage, "generate_batches", real_batches)
    summary = generate(out)
    assert summary["resumed"] == 1 and summary["generated"] == gen.limit - 1
    assert out.read_text() == full.read_text()


@pytest.mark.integration
def test_shipped_smollm2_converts_with_the_right_special_tokens() -> None:
    """The GGUF conversion must stop at <|im_end|> and add no BOS (transformers' GGUF reader gets both wrong)."""
    from apirl.models.load import load_model, load_tokenizer

    source = resolve_model(SMOLLM2)
    tokenizer = load_tokenizer(source)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer("###Instruction: hi").input_ids[0] != tokenizer.bos_token_id
    model = load_model(source)
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
