"""Catalog-grounded decoding: the grammar covers the real API database; whatever a writer wants to write, a
grounded answer's domain, call and loaded hub ids come from the catalog; the engine applies the mask on both
decoding paths, greedy and sampled."""

from __future__ import annotations

import random
import re

import pytest

from apirl.code_facts import looks_like_hub_id
from apirl.data.apidb import ApiDatabase, load_api_database
from apirl.data.prompts import parse_completion
from apirl.errors import InputError
from apirl.models.grounding import CatalogGrammar, groundable_rows, hub_ids


@pytest.fixture(scope="module")
def catalog(real_data_dir) -> ApiDatabase:
    return load_api_database(real_data_dir / "api" / "huggingface_api.jsonl")


@pytest.fixture(scope="module")
def tokenizer():
    from apirl.models.load import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("tiny-random"))  # SmolLM2's tokenizer


@pytest.fixture(scope="module")
def grammar(catalog: ApiDatabase, tokenizer) -> CatalogGrammar:
    return CatalogGrammar(catalog, tokenizer)


def calls_of(grammar: CatalogGrammar, domain: str) -> set[str]:
    return set(grammar.calls[domain].strings())


def test_the_grammar_holds_every_row_the_evaluation_can_recognise(catalog: ApiDatabase, grammar) -> None:
    from apirl.evaluate.ast_match import AstMatcher

    matcher = AstMatcher(catalog)
    kept = {row.index for row in groundable_rows(catalog)}
    assert len(catalog) == 936 and len(kept) == 921
    assert set(grammar.domains.strings()) == set(catalog.domains)  # all 40 domains keep at least one call
    for row in catalog.rows:
        answer = f" <<<domain>>>: {row.domain}\n<<<api_call>>>: {row.api_call}\n<<<api_provider>>>: x"
        recognised = matcher.judge(answer, gold_domain=row.domain, gold_api_name=row.api_name).outcome
        assert (row.index in kept) == (recognised != "hallucination"), row.api_call
        assert (row.api_call in calls_of(grammar, row.domain)) == (row.index in kept)
    left_out = [row for row in catalog.rows if row.index not in kept]
    # The 15 left out: calls without arguments (Gorilla's matcher never matches them) and shell commands.
    assert all(not row.call_has_arguments or not row.call_parses for row in left_out)
    assert sum(not row.call_parses for row in left_out) == 7
    # 8 of the 15 calls that do not parse as Python stay in, written as the row writes them.
    assert sum(not row.call_parses for row in catalog.rows if row.index in kept) == 8
    ids = set(grammar.ids.strings())
    assert ids == hub_ids(catalog)
    assert {row.model_id for row in catalog.rows if looks_like_hub_id(row.model_id)} <= ids
    assert {"pyannote/speaker-diarization@2.1", "t5-base", "gpt2"} <= ids  # a pinned revision, ids without an org
    assert not any("(" in model_id or model_id.endswith(".joblib") for model_id in ids)


def test_the_tries_are_the_tokens_sft_trained_on(catalog: ApiDatabase, tokenizer, grammar) -> None:
    """A call inside a whole tagged answer tokenizes as the trie has it, so the mask keeps the model's own path."""
    for row in groundable_rows(catalog):
        answer = tokenizer(f" <<<domain>>>: {row.domain}\n<<<api_call>>>: {row.api_call}\n<<<api_provider>>>: x",
                           add_special_tokens=False)["input_ids"]
        state = grammar.grounding()
        for position, token in enumerate(answer):
            allowed = state.allowed(0, answer[:position])
            assert allowed is None or token in allowed, (row.api_call, position)
        assert state.rows[0].chosen == [row.domain, row.api_call]


# What a writer that knows no catalog would like to write once the call is done: made-up hub ids after every kind
# of loader. Under grounding, the text after each opener is the catalog's, whatever the writer wanted.
WISHES = ["\n<<<api_provider>>>: Hugging Face Transformers\n<<<explanation>>>: Use 'made-up/explained'.\n"
          "<<<code>>>: from transformers import AutoModel, pipeline\nmodel = AutoModel.from_pretrained('made-up/model",
          ")\nner = pipeline('ner', model='another/fake-id",
          ")\nst = SentenceTransformer(\"fake/sentence-model",
          ")\nqa = pipeline('question-answering', 'fake/positional",
          ")\nprint(model)"]
OPENED = re.compile(r"(?:from_pretrained\(|SentenceTransformer\(|model=|'question-answering', )(['\"])([^'\"]*)\1")


def write_grounded(grammar: CatalogGrammar, rng: random.Random) -> tuple[str, list[str]]:
    """The wishes' tokens wherever the grammar allows them, a random walk through the allowed tokens where it does
    not (the rest of that wish is dropped, as a model's wish would be masked)."""
    state = grammar.grounding()
    tokens: list[int] = []
    wishes = [grammar_tokens(grammar, wish) for wish in WISHES]
    pending: list[int] = []
    while True:
        allowed = state.allowed(0, tokens)
        allowed = None if allowed is None else allowed.tolist()
        if allowed is None and not pending:
            if not wishes:
                break
            pending = wishes.pop(0)
        if pending and (allowed is None or pending[0] in set(allowed)):  # the wish goes on where it may
            tokens.append(pending.pop(0))
            continue
        pending = []
        quote = [token for token in allowed if grammar.pieces[token] in ("'", '"')]
        tokens.append(quote[0] if quote and rng.random() < 0.5 else rng.choice(allowed))
    return "".join(grammar.pieces[token] for token in tokens), state.rows[0].chosen


def grammar_tokens(grammar: CatalogGrammar, text: str) -> list[int]:
    return grammar.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_writer_that_wants_made_up_apis_only_writes_the_catalogs(catalog: ApiDatabase, grammar) -> None:
    ids = hub_ids(catalog)
    for seed in range(60):
        text, chosen = write_grounded(grammar, random.Random(seed))
        answer = parse_completion(text)
        assert answer.domain in catalog.domains, text
        assert answer.api_call in calls_of(grammar, answer.domain), text
        opened = OPENED.findall(answer.code or "")
        assert len(opened) == 4, text
        assert all(literal in ids for _quote, literal in opened), opened
        assert chosen == [answer.domain, answer.api_call, *(literal for _quote, literal in opened)]
        assert "made-up/explained" in text  # free text stays free


@pytest.mark.parametrize("path", ["slots", "batches"])
def test_the_engine_decodes_only_catalog_domains_and_calls(catalog: ApiDatabase, grammar, path: str) -> None:
    import torch

    from apirl.models.engine import GREEDY, Sampling, decode, decode_batches, eos_token_ids
    from apirl.models.load import load_model, resolve_model

    model = load_model(resolve_model("tiny-random"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # sharper than the random init, so rows differ
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    prompts = [grammar_tokens(grammar, f"###Instruction: request number {i}\n###Output:") for i in range(12)]
    run = decode if path == "slots" else decode_batches
    for sampling, seeds in ((GREEDY, None), (Sampling(True, 1.5, 0.9), list(range(100, 112)))):
        constraint = grammar.grounding()
        rows = run(model, prompts, max_new_tokens=120, eos_ids=eos_token_ids(model, grammar.tokenizer), batch_size=5,
                   sampling=sampling, seeds=seeds, stop=None, on_row=None, constraint=constraint,
                   **({"pad_id": 0} if path == "batches" else {}))
        for row, tokens in enumerate(rows):
            text = "".join(grammar.pieces[token] for token in tokens)
            domain, call = constraint.rows[row].chosen[:2]
            assert domain in catalog.domains and call in calls_of(grammar, domain)
            assert text.startswith(f" <<<domain>>>: {domain}\n<<<api_call>>>: {call}\n"), text


def test_a_catalog_with_nothing_to_ground_in_is_refused(tokenizer) -> None:
    with pytest.raises(InputError, match="nothing to ground"):
        CatalogGrammar(ApiDatabase([]), tokenizer)


def test_grounding_needs_the_catalog_and_names_its_responses(tmp_path) -> None:
    from apirl.models.config import GenerateConfig
    from apirl.models.generation import generate_batches
    from apirl.models.stage import default_label
    from apirl.rundir import RunLayout

    with pytest.raises(InputError, match=r"generate\.grounding"):
        generate_batches(None, None, ["p"], GenerateConfig(grounding="catalog"), seed=0, on_batch=lambda *a: None)
    layout = RunLayout(tmp_path)
    assert default_label(str(tmp_path / "sft" / "model"), layout, "catalog") == "sft-catalog"
    assert default_label("smollm2-135m", layout) == "smollm2-135m"


@pytest.mark.parametrize(("code", "state"), [
    ("m = AutoModelForCausalLM.from_pretrained('", "'"),
    ('ner = pipeline("ner", model="', '"'),
    ("ner = pipeline(task='ner', model='", "'"),
    ("qa = pipeline('question-answering', '", "'"),
    ("detector = YOLO('", "'"),
    ("tagger = SequenceTagger.load('", "'"),
    ("vad = VAD.from_hparams(source='", "'"),
    ("agent = load_from_hub(repo_id='", "'"),
    ("checkpoint = load_from_hub('", "'"),  # a function loader too, not only a method
    ("detector = ultralytics.YOLO('", "'"),
    ("tagger = flair.models.SequenceTagger.load('", "'"),
    ("weights = myclip.load('", None),  # not the catalog's `clip.load`
    ("m = AutoModel.from_pretrained(", ""),  # the quote may come next: no merged quote token there
    ("m = AutoModel.from_pretrained", ""),
    ("ner = pipeline('ner', model", ""),
    ("hub = torch.hub.load('pytorch/vision', 'resnet18', source='", None),  # not a hub id
    ("state = torch.load('", None),
    ("pipe = StableDiffusionPipeline.from_single_file('", None),  # a file or URL
    ("df = pd.read_csv('", None),
    ("print('", None),
])
def test_openers_are_the_loaders_of_hub_ids_only(grammar, code: str, state: str | None) -> None:
    assert grammar.openers.state(code) == state


def test_an_id_cannot_escape_through_a_merged_or_doubled_quote(grammar, tokenizer) -> None:
    def allowed_after(text: str) -> list[int] | None:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        state = grammar.grounding()
        for position in range(len(tokens)):
            assert (allowed := state.allowed(0, tokens[:position])) is None or tokens[position] in allowed.tolist()
        allowed = state.allowed(0, tokens)
        return None if allowed is None else allowed.tolist()

    answer = (" <<<domain>>>: Natural Language Processing Text Generation\n<<<api_call>>>: "
              "pipeline('text-generation', model='gpt2')\n<<<api_provider>>>: x\n<<<code>>>: ")
    merged = [token for token in range(len(grammar.pieces)) if grammar.pieces[token] in ("'s", "'t", "('/", "('.")]
    assert len(merged) == 4
    due = allowed_after(answer + "m = SentenceTransformer(")
    assert due is not None and not set(merged) & set(due) and "'" in {grammar.pieces[token] for token in due}
    inside = allowed_after(answer + "m = AutoModel.from_pretrained('gpt2")  # an id that others extend
    pieces = {grammar.pieces[token] for token in inside}
    assert {"'", "')"} <= pieces and "-" in {piece[:1] for piece in pieces}  # close, or go on to gpt2-...
    assert not {"''", "'+", "'''"} & pieces
