"""Records, API database, questions, splits and the dataset build: on hand-made and on real data."""

import json

import pytest

from apirl.config import load_config
from apirl.data.apidb import ApiDatabase, ApiRow, load_api_database
from apirl.data.dataset import build_examples, data_stats, load_gorilla
from apirl.data.questions import load_questions
from apirl.data.records import load_apibench, parse_record
from apirl.data.splits import SPLITS, assert_no_test_leak, make_splits, read_splits, write_splits
from apirl.errors import InputError


def test_parse_record_reads_every_section(tiny_data_dir):
    result = load_apibench(tiny_data_dir / "apibench" / "huggingface_eval.json")
    assert [r.question_id for r in result.records] == [1, 2, 4]
    first = result.records[0]
    assert first.instruction == "Tell me whether this review is positive."
    assert first.output.api_call.startswith("pipeline('sentiment-analysis'")
    assert first.gold_domain == "Natural Language Processing Text Classification"
    assert first.is_complete and first.input is None
    assert [(i.line, i.reason) for i in result.skipped] == [(3, "code: no '###Output:' section")]


def test_strict_mode_makes_a_bad_record_fatal_with_file_and_line(tiny_data_dir):
    path = tiny_data_dir / "apibench" / "huggingface_eval.json"
    with pytest.raises(InputError) as excinfo:
        load_apibench(path, strict=True)
    assert excinfo.value.line == 3 and str(path) in str(excinfo.value)


@pytest.mark.parametrize("raw, field", [
    ("not a dict", None),
    ({"api_data": {}}, "code"),
    ({"code": "###Output: <<<domain>>>: x"}, "code"),
    ({"code": "###Instruction: hi\n###Output: x"}, "api_data"),
    ({"code": "###Instruction: hi\n###Output: x", "api_data": {"domain": "d", "api_name": "n"}}, "api_call"),
])
def test_malformed_records_name_the_field(raw, field):
    with pytest.raises(InputError) as excinfo:
        parse_record(raw, question_id=7, path="f.json")
    assert excinfo.value.line == 7 and excinfo.value.field == field


def test_input_section_and_missing_tags():
    raw = {"code": "### Instruction: Translate.\n###Input: Bonjour\n###Output: Hello",
           "api_data": {"domain": "d", "api_name": "n", "api_call": "f('x')"}}
    record = parse_record(raw, question_id=1)
    assert record.input == "Bonjour" and record.instruction == "Translate."
    assert record.missing_tags == ("domain", "api_call", "api_provider", "explanation", "code")
    assert not record.is_complete
    assert record.prompt == "###Instruction: Translate.\n###Input: Bonjour\n###Output:"


def test_bad_json_line_is_reported_not_fatal(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"code": 1\n', encoding="utf-8")
    result = load_apibench(path)
    assert result.records == [] and result.skipped[0].line == 1 and "invalid JSON" in result.skipped[0].reason


def test_api_row_flags_and_model_id():
    def row(call, name="org/m"):
        return ApiRow.from_json(0, {"domain": "d", "api_name": name, "api_call": call})

    assert row("RandomForestRegressor()").flags == ("call_has_no_arguments",)
    assert row("pipeline('x', model=)").flags == ("call_does_not_parse",)
    assert row("AutoModel.from_pretrained('impira/layoutlm-invoices')", name="layoutlm-invoices").model_id \
        == "impira/layoutlm-invoices"
    db = ApiDatabase([row("AutoModel.from_pretrained('impira/layoutlm-invoices')", name="layoutlm-invoices")])
    assert db.by_model_id("Impira/LayoutLM-Invoices") and db.by_model_id("layoutlm-invoices")
    assert db.by_call('AutoModel.from_pretrained( "impira/layoutlm-invoices" )')


def test_api_database_bad_row_names_line_and_field(tmp_path):
    path = tmp_path / "api.jsonl"
    path.write_text(json.dumps({"domain": "d", "api_name": "n", "api_call": "f()"}) + "\n"
                    + json.dumps({"domain": "d", "api_name": "n"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as excinfo:
        load_api_database(path)
    assert excinfo.value.line == 2 and excinfo.value.field == "api_call"


def test_questions_are_unescaped(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 3, "text": " Hi \\u00e9\\n###Input: x\\n"}) + "\n", encoding="utf-8")
    assert load_questions(path)[0].text == "Hi é\n###Input: x"
    path.write_text(json.dumps({"question_id": "x", "text": "t"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="question_id"):
        load_questions(path)


def _domains(n=120):
    return {qid: f"domain-{qid % 7}" for qid in range(1, n + 1)}


def test_split_is_deterministic_disjoint_and_stratified():
    first = make_splits(_domains(), seed=0, val_fraction=0.1, test_fraction=0.3)
    assert first == make_splits(_domains(), seed=0, val_fraction=0.1, test_fraction=0.3)
    assert first != make_splits(_domains(), seed=1, val_fraction=0.1, test_fraction=0.3)
    ids = [qid for name in SPLITS for qid in first[name]]
    assert sorted(ids) == list(range(1, 121))  # every id exactly once
    test_domains = {f"domain-{qid % 7}" for qid in first["test"]}
    assert len(test_domains) == 7
    assert 30 <= len(first["test"]) <= 42 and len(first["train"]) >= 65


def test_split_files_round_trip_and_overlap_is_an_error(tmp_path):
    splits = make_splits(_domains(), seed=0, val_fraction=0.1, test_fraction=0.3)
    write_splits(tmp_path, splits, "header")
    assert read_splits(tmp_path) == splits
    (tmp_path / "val.txt").write_text(f"{splits['test'][0]}\n", encoding="utf-8")
    with pytest.raises(InputError, match="is in split"):
        read_splits(tmp_path)


def test_leak_guard_raises_on_shared_id_or_text():
    assert_no_test_leak([("a", "Hello world")], [("b", "Other")])
    with pytest.raises(AssertionError):
        assert_no_test_leak([("a", "x")], [("a", "y")])
    with pytest.raises(AssertionError):
        assert_no_test_leak([("a", "Hello,  World!")], [("b", "hello world")])


def test_tiny_dataset_build_has_synthetic_examples_and_no_leak(tiny_data_dir, tmp_path):
    write_splits(tmp_path / "splits", {"train": [1], "val": [2], "test": [4]}, "h")
    cfg = load_config(overrides=[f'data.data_dir="{tiny_data_dir}"', f'data.split_dir="{tmp_path / "splits"}"'])
    data = load_gorilla(cfg.data)
    splits = build_examples(data, cfg.data)
    provenances = {ex.provenance for ex in splits["train"]}
    assert provenances == {"apibench-eval", "synthetic-apidb"}
    # The fill-mask API row's example code... is synthesized; the test question's instruction never is.
    assert all("Complete the sentence with the missing word." not in ex.prompt for ex in splits["train"])
    stats = data_stats(data, splits)
    assert stats["eval_records"]["skipped"] == 1 and stats["splits"]["test"]["examples"] == 1


@pytest.mark.integration
def test_real_data_counts(real_data_dir):
    cfg = load_config(overrides=[f'data.data_dir="{real_data_dir}"'])
    data = load_gorilla(cfg.data)
    assert len(data.records) == 907 and len(data.question_ids) == 904
    assert [issue.line for issue in data.skipped] == [339, 414, 425, 800]
    assert len(data.api_db) == 936
    assert sum(not r.call_parses for r in data.api_db) == 15
    assert sum(not r.call_has_arguments for r in data.api_db) == 8


@pytest.mark.integration
def test_committed_splits_match_a_fresh_split_and_never_leak(real_data_dir):
    cfg = load_config(overrides=[f'data.data_dir="{real_data_dir}"'])
    data = load_gorilla(cfg.data)
    committed = read_splits(cfg.data.split_dir)
    fresh = make_splits({q: data.records[q].gold_domain for q in data.question_ids}, seed=cfg.data.split_seed,
                        val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction)
    assert committed == fresh
    assert sorted(q for ids in committed.values() for q in ids) == sorted(data.question_ids)
    splits = build_examples(data, cfg.data)
    test_ids = {ex.question_id for ex in splits["test"]}
    assert test_ids == set(committed["test"])
    train_qids = {ex.question_id for name in ("train", "val") for ex in splits[name]}
    assert not test_ids & train_qids
    test_instructions = {data.records[q].instruction for q in test_ids}
    assert not any(ex.prompt.split("\n###Output:")[0].removeprefix("###Instruction: ") in test_instructions
                   for ex in splits["train"])


def test_a_synthesized_request_never_names_the_model_whatever_the_hash_seed():
    """The full id is replaced before its short name: the other order left "neulab/the model", and a set's
    order (the old code's) changed from one process to the next, and with it the train split."""
    from apirl.data.apidb import ApiRow
    from apirl.data.synth import synthesize_instructions

    row = ApiRow(index=0, domain="Natural Language Processing Table Question Answering", framework="Hugging Face",
                 functionality="Table-based QA", api_name="neulab/omnitab-large",
                 api_call="AutoModelForSeq2SeqLM.from_pretrained('neulab/omnitab-large')",
                 description="OmniTab is a QA model. neulab/omnitab-large is initialized with tapex.")
    texts = synthesize_instructions(row, 10)
    assert not any("omnitab-large" in text or "neulab" in text for text in texts)
    assert any("The model is initialized" in text for text in texts)


def _row(**fields):
    from apirl.data.apidb import ApiRow

    base = dict(index=3, domain="Computer Vision Depth Estimation", framework="Hugging Face Transformers",
                functionality="Depth Estimation", api_name="org/dpt-depth-7",
                api_call="AutoModel.from_pretrained('org/dpt-depth-7')", api_arguments="image",
                performance={"dataset": "NYU Depth V2", "accuracy": "0.9"},
                description="A monocular depth model. It predicts relative depth for every pixel of a photo.")
    return ApiRow(**{**base, **fields})


def test_synthesized_requests_are_distinct_seeded_and_avoid_what_other_rows_took():
    from apirl.data.synth import DOMAIN_GOALS, synthesize_instructions

    row = _row()
    texts = synthesize_instructions(row, 10)
    assert len(texts) == len(set(texts)) == 10
    assert texts == synthesize_instructions(row, 10)  # the same arguments, the same requests
    assert texts != synthesize_instructions(row, 10, seed=1)
    assert any(goal in text for text in texts for goal in DOMAIN_GOALS[row.domain])
    assert any("NYU Depth V2" in text for text in synthesize_instructions(row, 30))  # the row's own facts
    others = synthesize_instructions(row, 10, taken=set(texts[:5]))
    assert not set(others) & set(texts[:5]) and len(others) == 10


def test_a_plain_word_as_the_short_name_does_not_block_every_request():
    """`duncan93/video`: "video" is in every text-to-video request; only the full id is forbidden."""
    from apirl.data.synth import synthesize_instructions

    row = _row(domain="Multimodal Text-to-Video", api_name="duncan93/video",
               api_call="BaseModel.from_pretrained('duncan93/video')", description="")
    texts = synthesize_instructions(row, 5)
    assert len(texts) == 5 and not any("duncan93" in text for text in texts)


def test_synthesized_code_puts_the_call_before_an_example_that_leaves_it_out():
    from apirl.data.synth import synthesize_code

    row = _row(api_call="pipeline('depth-estimation', model='org/dpt-depth-7')",
               example_code="depth(image='room.jpg')")
    assert synthesize_code(row) == ("from transformers import pipeline\n"
                                    "depth = pipeline('depth-estimation', model='org/dpt-depth-7')\n"
                                    "depth(image='room.jpg')")
    complete = "from transformers import pipeline\nd = pipeline('depth-estimation', model='org/dpt-depth-7')"
    assert synthesize_code(_row(api_call=row.api_call, example_code=complete)) == complete
    assert synthesize_code(row, use_example=False) == ("from transformers import pipeline\n"
                                                       "model = pipeline('depth-estimation', model='org/dpt-depth-7')")


def test_call_answers_carry_the_call_and_mixed_gives_the_example_code_once():
    from apirl.data.dataset import synthesized_examples
    from apirl.data.synth import synthesize_output

    row = _row(example_code="from transformers import AutoModel\nm = AutoModel.from_pretrained('org/dpt-depth-7')\n"
                            "depth = m(pixel_values)")
    call = synthesize_output(row, style="call")
    assert call.api_call == row.api_call and call.domain == row.domain
    assert call.code == "from transformers import AutoModel\nmodel = AutoModel.from_pretrained('org/dpt-depth-7')"
    assert "org/dpt-depth-7" in call.explanation and "depth for every pixel" not in call.explanation
    examples = synthesized_examples(ApiDatabase([row]), per_api=3, style="mixed")
    with_example = ["depth = m(pixel_values)" in ex.target for ex in examples]
    assert [ex.example_id for ex in examples] == ["apidb-3-0", "apidb-3-1", "apidb-3-2"]
    assert with_example == [True, False, False]
    assert all(row.api_call in ex.target for ex in examples)


def test_near_duplicates_of_a_test_request_are_caught_and_others_are_not():
    from apirl.data.splits import TrigramIndex, assert_no_near_duplicates

    test = [("eval-1", "We are building an app to summarize long articles for users. We need a solution to create "
                       "a condensed summary of the given text.")]
    copy_plus = test[0][1] + " Please show the code."
    reworded = test[0][1].replace("long articles", "lengthy news stories")
    unrelated = "Help me summarize long texts. Our inputs are: text."
    index = TrigramIndex(test)
    assert index.closest(copy_plus).score >= 0.5 and index.closest(reworded).score >= 0.5
    assert index.closest(unrelated).score < 0.2
    with pytest.raises(AssertionError, match="apidb-1-0 is a near-duplicate of test example eval-1"):
        assert_no_near_duplicates([("apidb-1-0", copy_plus)], test)
    assert_no_near_duplicates([("apidb-1-0", unrelated)], test)


@pytest.mark.integration
def test_ten_requests_per_api_reach_train_and_a_near_duplicate_one_is_dropped(real_data_dir, monkeypatch):
    import apirl.data.dataset as dataset

    cfg = load_config(overrides=[f'data.data_dir="{real_data_dir}"', "data.synthesized_per_api=10"])
    data = load_gorilla(cfg.data)
    splits = build_examples(data, cfg.data)
    synthesized = [ex for ex in splits["train"] if ex.provenance == "synthetic-apidb"]
    assert len({ex.prompt for ex in synthesized}) == len(synthesized) > 9000
    assert splits.dropped_for_leakage.get("train/synthetic-apidb/near-duplicate", 0) == 0

    test_request = data.records[splits["test"][0].question_id].instruction
    real = dataset.synthesize_instructions

    def leaky(row, count, seed=0, taken=frozenset()):
        return [test_request + " Show the code."] if row.index == 0 else real(row, count, seed, taken)

    monkeypatch.setattr(dataset, "synthesize_instructions", leaky)
    leaked = build_examples(data, cfg.data)
    assert leaked.dropped_for_leakage["train/synthetic-apidb/near-duplicate"] == 1
    assert not any(ex.example_id == "apidb-0-0" for ex in leaked["train"])


@pytest.mark.integration
def test_the_domain_floor_of_a_bag_of_words_classifier(real_data_dir):
    from apirl.evaluate.floor import domain_floors

    cfg = load_config(overrides=[f'data.data_dir="{real_data_dir}"'])
    splits = build_examples(load_gorilla(cfg.data), cfg.data)
    floors = domain_floors(splits["train"], splits["test"], samples=50)
    for floor in floors.values():
        assert 0.4 < floor["domain_accuracy"] < 0.8 and floor["test_questions"] == 272
        low, high = floor["ci"]
        assert low <= floor["domain_accuracy"] <= high
        assert sum(floor["hits"].values()) == round(floor["domain_accuracy"] * 272)


def test_cross_validated_floor_predicts_held_out_questions_from_the_others():
    """Every question is predicted once from the other folds; synthesized requests only ever train."""
    from apirl.data.dataset import PROVENANCE_EVAL, PROVENANCE_SYNTH, Example
    from apirl.evaluate.floor import cross_validated_floor

    def example(i: int, domain: str, words: str, provenance: str = PROVENANCE_EVAL) -> Example:
        return Example(f"e{i}", "train", provenance, i, f"###Instruction: {words} {i}\n###Output:", "", domain,
                       "x", None, True)

    questions = [example(i, "Audio", "transcribe the speech") for i in range(10)] + \
                [example(10 + i, "Vision", "label the photo") for i in range(10)]
    synthesized = [example(100, "Vision", "transcribe the speech", PROVENANCE_SYNTH)]  # a misleading one
    floor = cross_validated_floor(questions + synthesized, folds=5)
    assert floor["questions"] == 20 and floor["synthesized"] == 1 and floor["folds"] == 5
    assert floor["questions_only"] == 1.0
    assert 0.5 <= floor["with_synthesized"] <= 1.0
