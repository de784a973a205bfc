"""Mutants of gold snippets: each kind on realistic Gorilla-style code, exact edits, and inputs that must not crash.

Everything here is pure: no snippet is run. `unknown_name` imports the library a name comes from (transformers,
diffusers, sentence_transformers are installed in the venv; collections/json are the cheap pure cases).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util

import pytest

from apirl.execution.mutants import MUTANT_KINDS, Mutant, make_mutants

PIPELINE = """\
from transformers import pipeline
clf = pipeline('text-classification', model='distilbert-base-uncased-finetuned-sst-2-english')
print(clf('I love it'))
"""

AUTO = """\
from transformers import AutoTokenizer, AutoModelForSequenceClassification
tokenizer = AutoTokenizer.from_pretrained('nlptown/bert-base-multilingual-uncased-sentiment')
model = AutoModelForSequenceClassification.from_pretrained('nlptown/bert-base-multilingual-uncased-sentiment')
inputs = tokenizer("Great product!", return_tensors="pt")
outputs = model(**inputs)
"""

DIFFUSERS = """\
from diffusers import StableDiffusionPipeline
import torch

model_id = 'runwayml/stable-diffusion-v1-5'
pipe = StableDiffusionPipeline.from_pretrained(model_id, torch_dtype=torch.float16)
pipe = pipe.to('cuda')
image = pipe('a photo of an astronaut riding a horse').images[0]
image.save('astronaut.png')
"""

SBERT = """\
from sentence_transformers import SentenceTransformer
sentences = ["This is an example sentence", "Each sentence is converted"]
model = SentenceTransformer('sentence-transformers/all-MiniLM-L6-v2')
embeddings = model.encode(sentences)
"""

MULTILINE = """\
from transformers import AutoModelForCausalLM, AutoTokenizer  # causal LM
import torch
tokenizer = AutoTokenizer.from_pretrained("EleutherAI/gpt-neo-1.3B")
model = AutoModelForCausalLM.from_pretrained(
    "EleutherAI/gpt-neo-1.3B",
    torch_dtype=torch.float32,  # CPU friendly
)
ids = tokenizer("Hello", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_length=20)[0]))
"""

MODULE_ATTR = """\
import transformers
qa = transformers.pipeline('question-answering', model='deepset/roberta-base-squad2')
print(qa(question='Who?', context='Alice wrote it.'))
"""

SNIPPETS = {"pipeline": PIPELINE, "auto": AUTO, "diffusers": DIFFUSERS, "sbert": SBERT, "multiline": MULTILINE,
            "module_attr": MODULE_ATTR}
MODEL_IDS = {"pipeline": "distilbert-base-uncased-finetuned-sst-2-english",
             "auto": "nlptown/bert-base-multilingual-uncased-sentiment", "diffusers": "runwayml/stable-diffusion-v1-5",
             "sbert": "sentence-transformers/all-MiniLM-L6-v2", "multiline": "EleutherAI/gpt-neo-1.3B",
             "module_attr": "deepset/roberta-base-squad2"}
KNOWN = frozenset(MODEL_IDS.values()) | {"gpt2", "bert-base-uncased", "google/vit-base-patch16-224"}
BOGUS_KWARGS = ("use_cache_dir", "low_memory_mode", "return_logits_only", "model_revision_tag", "enable_fast_tokenize",
                "use_fast_attention_kernel", "auto_select_device", "force_legacy_loading")


def by_kind(code: str, known=KNOWN, seed: int = 0) -> dict[str, Mutant]:
    mutants = make_mutants(code, known_model_ids=known, seed=seed)
    kinds = [m.kind for m in mutants]
    assert kinds == [kind for kind in MUTANT_KINDS if kind in kinds], "one per kind, in MUTANT_KINDS order"
    return {m.kind: m for m in mutants}


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def imported_names(code: str) -> dict[str, str]:
    """Local name -> module, for every import of the code."""
    out = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            out.update({a.asname or a.name: node.module for a in node.names})
        elif isinstance(node, ast.Import):
            out.update({a.asname or a.name.split(".")[0]: a.name for a in node.names})
    return out


def new_value(description: str) -> str:
    """The replacement named by a description "... 'old' -> 'new' ..."."""
    return description.split(" -> ")[1].split("'")[1]


# --- every kind on every realistic snippet --------------------------------------------------------------


@pytest.mark.parametrize("name", SNIPPETS)
def test_every_kind_applies_and_checks_hold(name):
    code = SNIPPETS[name]
    mutants = by_kind(code)
    assert list(mutants) == list(MUTANT_KINDS)
    for mutant in mutants.values():
        assert mutant.code != code
        assert mutant.description
        assert parses(mutant.code) == (mutant.kind != "syntax_error")


@pytest.mark.parametrize("name", SNIPPETS)
def test_unknown_model_id_replaces_every_occurrence(name):
    code, old = SNIPPETS[name], MODEL_IDS[name]
    mutant = by_kind(code)["unknown_model_id"]
    new = new_value(mutant.description)
    assert new != old and new.lower() not in {k.lower() for k in KNOWN}
    assert old not in {n.value for n in ast.walk(ast.parse(mutant.code)) if isinstance(n, ast.Constant)}
    assert mutant.code.count(new) == code.count(old)
    assert mutant.code.replace(new, old) == code  # nothing else changed


def test_unknown_model_id_through_a_variable_edits_the_assignment_only():
    mutant = by_kind(DIFFUSERS)["unknown_model_id"]
    new = new_value(mutant.description)
    assert f"model_id = '{new}'\n" in mutant.code
    assert "from_pretrained(model_id, torch_dtype=torch.float16)" in mutant.code


@pytest.mark.parametrize("name", SNIPPETS)
def test_unknown_name_renames_import_and_uses_to_a_name_the_module_lacks(name):
    code = SNIPPETS[name]
    mutant = by_kind(code)["unknown_name"]
    old = mutant.description.split("'")[1]
    new = new_value(mutant.description)
    module = mutant.description.split(" of ")[1].split(" ")[0]
    assert not hasattr(importlib.import_module(module), new)
    assert importlib.util.find_spec(f"{module}.{new}") is None
    assert mutant.code.replace(new, old) == code  # a consistent rename, nothing else
    before, after = imported_names(code), imported_names(mutant.code)
    if old in before:  # from-import: the import names the new name, uses follow
        assert new in after and old not in after
        assert not any(isinstance(n, ast.Name) and n.id == old for n in ast.walk(ast.parse(mutant.code)))
    else:  # module attribute: transformers.pipeline -> transformers.<new>
        assert after == before and f".{new}(" in mutant.code


def test_unknown_name_prefers_the_main_call_and_examples():
    assert by_kind(PIPELINE)["unknown_name"].description.startswith("name 'pipeline' of transformers -> ")
    assert by_kind(DIFFUSERS)["unknown_name"].description.startswith("name 'StableDiffusionPipeline' of diffusers")
    assert by_kind(SBERT)["unknown_name"].description.startswith(
        "name 'SentenceTransformer' of sentence_transformers")
    assert by_kind(MULTILINE)["unknown_name"].description.startswith("name 'AutoModelForCausalLM' of transformers")
    assert by_kind(MODULE_ATTR)["unknown_name"].description.startswith("name 'pipeline' of transformers")


def test_unknown_name_never_picks_an_existing_name():
    # 'pipelines' is a submodule of transformers (so `from transformers import pipelines` works): never chosen.
    for seed in range(12):
        mutant = by_kind(PIPELINE, seed=seed)["unknown_name"]
        assert new_value(mutant.description) != "pipelines"


def test_unknown_name_in_a_pure_stdlib_module():
    code = "from collections import OrderedDict, Counter\ncounts = Counter('abracadabra')\nprint(counts)\n"
    for seed in range(5):
        mutant = by_kind(code, seed=seed)["unknown_name"]
        new = new_value(mutant.description)
        assert mutant.description.startswith("name 'Counter' of collections -> ")
        assert not hasattr(importlib.import_module("collections"), new)
        assert mutant.code == code.replace("Counter", new)
    aliased = "from json import loads as parse\ndata = parse('{}')\n"
    mutant = by_kind(aliased)["unknown_name"]
    new = new_value(mutant.description)
    assert mutant.code == f"from json import {new} as parse\ndata = parse('{{}}')\n"  # uses name the alias
    assert not hasattr(importlib.import_module("json"), new)


def test_unknown_name_of_a_module_that_is_not_installed_is_accepted():
    code = "from not_an_installed_module_xyz import Thing\nThing()\n"
    mutant = by_kind(code)["unknown_name"]
    new = new_value(mutant.description)
    assert new != "Thing" and mutant.code == code.replace("Thing", new)


@pytest.mark.parametrize("name", SNIPPETS)
def test_unknown_kwarg_is_added_to_the_main_call(name):
    code = SNIPPETS[name]
    mutant = by_kind(code)["unknown_kwarg"]
    calls = [n for n in ast.walk(ast.parse(mutant.code)) if isinstance(n, ast.Call)]
    (call,) = [n for n in calls if any(kw.arg in BOGUS_KWARGS for kw in n.keywords)]
    assert MODEL_IDS[name] in ast.unparse(call) or "model_id" in ast.unparse(call)  # the call loading the model


def test_unknown_kwarg_edits_are_exact():
    code = by_kind(PIPELINE)["unknown_kwarg"].code
    line = code.splitlines()[1]
    assert line.startswith("clf = pipeline('text-classification', model='distilbert-base-uncased-finetuned-sst-2-"
                           "english', ")
    assert line.endswith(")")
    # Multi-line call with a trailing comma: a new line in the same style, before the ')'.
    mutant = by_kind(MULTILINE)["unknown_kwarg"]
    kwarg = mutant.description.split()[1]
    assert kwarg.split("=")[0] in BOGUS_KWARGS
    assert mutant.code == MULTILINE.replace("  # CPU friendly\n)", f"  # CPU friendly\n    {kwarg},\n)")


@pytest.mark.parametrize(("code", "expected"), [
    ("from x import f\nf()\n", "from x import f\nf(K)\n"),
    ("from x import f\nf((a))\n", "from x import f\nf((a), K)\n"),
    ("from x import f\nf(a,)\n", "from x import f\nf(a, K,)\n"),
    ("from x import f\nf(a  # note\n  )\n", "from x import f\nf(a, K  # note\n  )\n"),
    ("from x import f\nf(*args, **kwargs)\n", "from x import f\nf(*args, **kwargs, K)\n"),
])
def test_unknown_kwarg_layouts(code, expected):
    mutant = by_kind(code)["unknown_kwarg"]
    kwarg = mutant.description.split()[1]
    assert mutant.code == expected.replace("K", kwarg)


def test_missing_import_exact_edits():
    assert by_kind(PIPELINE)["missing_import"].code == PIPELINE.split("\n", 1)[1]
    # One alias of several: only that alias goes, the import stays valid.
    assert by_kind(AUTO)["missing_import"].code == AUTO.replace(
        "import AutoTokenizer, AutoModelForSequenceClassification", "import AutoTokenizer")
    assert by_kind(MULTILINE)["missing_import"].code == MULTILINE.replace(
        "import AutoModelForCausalLM, AutoTokenizer", "import AutoTokenizer")
    assert by_kind(MODULE_ATTR)["missing_import"].code == MODULE_ATTR.split("\n", 1)[1]
    assert by_kind(DIFFUSERS)["missing_import"].code == DIFFUSERS.split("\n", 1)[1]


@pytest.mark.parametrize("name", SNIPPETS)
def test_missing_import_leaves_a_used_name_unbound(name):
    code = SNIPPETS[name]
    mutant = by_kind(code)["missing_import"]
    removed = mutant.description.split("'")[1]
    assert removed in imported_names(code) and removed not in imported_names(mutant.code)
    tree = ast.parse(mutant.code)
    assert any(isinstance(n, ast.Name) and n.id == removed and isinstance(n.ctx, ast.Load) for n in ast.walk(tree))
    assert not any(isinstance(n, ast.Name) and n.id == removed and not isinstance(n.ctx, ast.Load)
                   for n in ast.walk(tree))


@pytest.mark.parametrize(("code", "expected"), [
    ("import numpy as np\nprint(np.zeros(3))\n", "print(np.zeros(3))\n"),
    ("import os.path\nprint(os.path.join('a', 'b'))\n", "print(os.path.join('a', 'b'))\n"),
    ("from x import (\n    a,  # first\n    b,\n)\nb(a)\n", "from x import (\n    a,  # first\n)\nb(a)\n"),
    ("from x import (\n    b,  # the one\n    a\n)\nb(a)\n", "from x import (\n    a\n)\nb(a)\n"),
    ("from x import (a,\n               b)\nb(a)\n", "from x import (a)\nb(a)\n"),
    ("from x import a, \\\n    b\nb(a)\n", "from x import a\nb(a)\n"),
    ("import x; x.f()\n", "x.f()\n"),
    ("def load():\n    import x\n    return x.f()\n", "def load():\n    return x.f()\n"),
    ("try:\n    import x\nexcept ImportError:\n    raise\nx.f()\n",
     "try:\n    pass\nexcept ImportError:\n    raise\nx.f()\n"),
])
def test_missing_import_layouts(code, expected):
    assert by_kind(code)["missing_import"].code == expected


@pytest.mark.parametrize("code", [
    "try:\n    from x import f\nexcept ImportError:\n    f = None\nf()\n",  # defined elsewhere too
    "from x import f\nfrom y import *\nf()\n",  # a star import might provide it
    "from x import f\n",  # never used
    "from x import f\nf = 1\nf()\n",  # rebound
    "x = 1\nprint(x)\n",  # no import at all
])
def test_missing_import_absent_when_the_name_stays_defined_or_unused(code):
    assert "missing_import" not in by_kind(code)


@pytest.mark.parametrize("name", SNIPPETS)
def test_syntax_error_deletes_the_main_calls_closing_paren(name):
    code = SNIPPETS[name]
    mutant = by_kind(code)["syntax_error"]
    with pytest.raises(SyntaxError):
        ast.parse(mutant.code)
    assert len(mutant.code) == len(code) - 1
    assert mutant.description.startswith("closing parenthesis of ")
    assert any(code == mutant.code[:i] + ")" + mutant.code[i:] for i in range(len(mutant.code)))


def test_syntax_error_fallbacks():
    assert by_kind("x = 1\n")["syntax_error"].code == "x = 1(\n"
    assert by_kind("for x in y:\n    pass\n")["syntax_error"].code == "for x in y\n    pass\n"
    assert by_kind("'''only a docstring'''\n")["syntax_error"].code == "'''only a docstring'''(\n"


# --- applicability, determinism, robustness -------------------------------------------------------------


def test_kinds_that_do_not_apply_are_absent():
    no_model = "import pandas as pd\ndata = pd.read_csv('data.csv')\nprint(data.head())\n"
    assert set(by_kind(no_model)) == set(MUTANT_KINDS) - {"unknown_model_id"}
    assert set(by_kind("x = 1\nprint(x)\n")) == {"syntax_error"}
    # A file path with the org/name shape is not a model id.
    assert "unknown_model_id" not in by_kind("from PIL import Image\nimg = Image.open('images/cat.jpg')\n")


def test_model_id_without_known_ids_uses_hub_shaped_literals_in_model_slots():
    code = "from transformers import pipeline\np = pipeline('ner', model='some-org/some-model')\n"
    mutant = by_kind(code, known=())["unknown_model_id"]
    assert "'some-org/some-model'" not in mutant.code
    # A revision is kept: the repository is what changes.
    code = "from pyannote.audio import Pipeline\np = Pipeline.from_pretrained('pyannote/speaker-diarization@2.1')\n"
    new = new_value(by_kind(code, known=())["unknown_model_id"].description)
    assert new.endswith("@2.1") and new != "pyannote/speaker-diarization@2.1"


def test_generated_ids_are_never_known():
    code = "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/name')\n"
    chosen = set()
    for seed in range(30):
        chosen.add(new_value(by_kind(code, known={"org/name"}, seed=seed)["unknown_model_id"].description))
    assert len(chosen) > 3
    known = {"org/name"} | {c.upper() for c in sorted(chosen)[1:]}  # case-insensitive, as the hub
    for seed in range(30):
        assert new_value(by_kind(code, known=known, seed=seed)["unknown_model_id"].description) == sorted(chosen)[0]
    assert "unknown_model_id" not in by_kind(code, known={"org/name"} | chosen)


def test_same_seed_same_mutants():
    for code in SNIPPETS.values():
        assert make_mutants(code, known_model_ids=KNOWN, seed=3) == make_mutants(code, known_model_ids=KNOWN, seed=3)
    runs = {tuple(m.code for m in make_mutants(PIPELINE, known_model_ids=KNOWN, seed=s)) for s in range(10)}
    assert len(runs) > 1  # the seed does choose


@pytest.mark.parametrize("code", ["from transformers import pipeline\npipeline(", "def f(:\n", "x = )", "\x00",
                                  "", "# only a comment\n", "\n\n"])
def test_unparsable_or_empty_code_gets_no_mutants(code):
    assert make_mutants(code, known_model_ids=KNOWN) == []


def test_offsets_are_characters_not_bytes():
    code = "from transformers import pipeline\nprint('héllo ✓'); clf = pipeline('t', model='a/b')  # ✓\n"
    mutants = by_kind(code, known={"a/b"})
    assert list(mutants) == list(MUTANT_KINDS)
    kwarg = mutants["unknown_kwarg"].description.split()[1]
    assert mutants["unknown_kwarg"].code == code.replace("model='a/b')", f"model='a/b', {kwarg})")
    assert mutants["unknown_model_id"].code.replace(new_value(mutants["unknown_model_id"].description), "a/b") == code
    assert mutants["syntax_error"].code == code.replace("model='a/b')", "model='a/b'")


@pytest.mark.parametrize("code", [
    "\ud800", "f'{x}'", "from . import x\nx('a/b')", "from __future__ import annotations\nf('a/b')",
    "import a.b, a.c\na.b.f('x/y')", "from x import f\nf(x for x in y)", "f('a/' 'b')\ng(model='a/b')",
    "from transformers import pipeline\rp = pipeline('t', model='a/b')\r", "lambda: (yield)", "x = [" * 50 + "]" * 50,
    "class A:\n    from x import f\n    g = f('a/b')\n", "match x:\n    case {'k': y, **rest}:\n        pass\n",
    "async def f():\n    async with a as b:\n        await b('a/b')\n",
])
def test_odd_inputs_never_raise(code):
    for mutant in make_mutants(code, known_model_ids={"a/b", "x/y"}):
        assert mutant.code != code
        assert parses(mutant.code) == (mutant.kind != "syntax_error")


def test_non_str_code_is_a_type_error():
    with pytest.raises(TypeError):
        make_mutants(b"x = 1", known_model_ids=())  # type: ignore[arg-type]
