"""The tools judge: each check on hand-written snippets, both answers and abstentions, and mutants of good code.

Pure: no snippet is run. The checks import installed libraries (transformers, sentence_transformers, the standard
library) to look names and signatures up; the first test that does pays a few seconds of imports.
"""

from __future__ import annotations

import pytest

from apirl.data.apidb import ApiDatabase, ApiRow, load_api_database
from apirl.execution.executor import ExecVerdict
from apirl.execution.mutants import MUTANT_KINDS, make_mutants
from apirl.feedback.questions import QUESTIONS, Question, question
from apirl.feedback.tools import (
    ToolsJudge,
    check_api_exists,
    check_arguments,
    check_complete,
    check_defined_names,
    check_imports,
    check_logic,
    check_syntax,
)
from apirl.feedback.types import Sample, score

SENTIMENT = "distilbert-base-uncased-finetuned-sst-2-english"
VIT = "google/vit-base-patch16-224"

FILL_MASK = """\
from transformers import pipeline
unmasker = pipeline('fill-mask', model='bert-base-uncased', top_k=3)
print(unmasker('Paris is the [MASK] of France.'))
"""

VIT_CODE = f"""\
from transformers import ViTImageProcessor, ViTForImageClassification
from PIL import Image
image = Image.open('cat.jpg')
processor = ViTImageProcessor.from_pretrained('{VIT}')
model = ViTForImageClassification.from_pretrained('{VIT}')
inputs = processor(images=image, return_tensors='pt')
logits = model(**inputs).logits
"""


@pytest.fixture(scope="module")
def api_db(tmp_path_factory: pytest.TempPathFactory):
    from conftest import write_gorilla_dir

    root = write_gorilla_dir(tmp_path_factory.mktemp("gorilla"))
    return load_api_database(root / "api" / "huggingface_api.jsonl")


@pytest.fixture(scope="module")
def judge(api_db) -> ToolsJudge:
    return ToolsJudge(api_db)


def _answers(judge: ToolsJudge, code: str, sample_id: str = "s") -> dict[str, bool | None]:
    sample = Sample(sample_id, "Fill in the missing word.", f"<<<domain>>>: NLP\n<<<code>>>: {code}")
    return {a.question: a.value for a in judge.answer_all(sample)}


# ------------------------------------------------------------------------------------------------------------
# The judge as a whole.


def test_correct_pipeline_code_gets_yes_on_every_decided_question(judge) -> None:
    answers = judge.answer_all(Sample("s", "Fill in the missing word.", f"<<<code>>>: {FILL_MASK}"))
    assert [a.question for a in answers] == [q.key for q in QUESTIONS]
    assert {a.question: a.value for a in answers} == {
        "imports": True, "syntax": True, "defined_names": True, "api_exists": True, "arguments": True,
        "task": None, "complete": True, "logic": None}
    assert all(a.judge == "tools" for a in answers)
    assert all(a.p_yes == (None if a.value is None else float(a.value)) for a in answers)
    assert score(answers) == 7.0  # six yes, two unknowns at 0.5


def test_correct_from_pretrained_code_too(judge) -> None:
    assert _answers(judge, VIT_CODE) == {
        "imports": True, "syntax": True, "defined_names": True, "api_exists": True, "arguments": True,
        "task": None, "complete": True, "logic": None}


def test_answers_are_deterministic_and_single_questions_match_answer_all(judge) -> None:
    sample = Sample("s", "x", FILL_MASK)
    assert judge.answer_all(sample) == judge.answer_all(sample)
    assert judge.answer(sample, question("arguments")) == judge.answer_all(sample)[4]


def test_a_check_that_fails_abstains_instead_of_stopping_the_run(judge, monkeypatch) -> None:
    import apirl.feedback.tools as tools

    def broken(code: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tools, "check_imports", broken)
    answer = judge.answer(Sample("s", "x", FILL_MASK), question("imports"))
    assert answer.value is None and "RuntimeError: boom" in answer.detail
    with pytest.raises(KeyError, match="no check for question 'style'"):
        judge.answer(Sample("s", "x", FILL_MASK), Question("style", "Is it pretty?"))
    deep = "x = " + "(" * 5000 + ")" * 5000 + "\n"
    assert _answers(judge, deep)["syntax"] is False


def test_the_code_is_the_runnable_code_of_the_completion(judge) -> None:
    completion = f"<<<code>>>: ```python\n!pip install transformers\n{FILL_MASK}```\n"
    assert _answers(judge, completion)["syntax"] is True  # fence lines dropped, the shell line commented out


# ------------------------------------------------------------------------------------------------------------
# syntax


def test_syntax_error_says_message_and_line() -> None:
    decision = check_syntax("from transformers import pipeline\nc = pipeline('fill-mask'\n")
    assert decision.value is False
    assert "never closed" in decision.detail and "line 2" in decision.detail
    assert check_syntax(FILL_MASK).value is True


def test_code_that_does_not_parse_is_unknown_elsewhere_and_incomplete(judge) -> None:
    answers = _answers(judge, "def f(:\n    pass\n")
    assert answers["syntax"] is False
    assert answers["complete"] is False
    assert {answers[k] for k in ("imports", "defined_names", "api_exists", "arguments")} == {None}


# ------------------------------------------------------------------------------------------------------------
# imports


def test_missing_import_of_pipeline() -> None:
    code = FILL_MASK.replace("from transformers import pipeline\n", "")
    decision = check_imports(code)
    assert decision.value is False
    assert "never imported: pipeline" in decision.detail
    assert check_defined_names(code).value is False


def test_from_import_of_a_name_the_library_lacks() -> None:
    decision = check_imports("from transformers import NotAClass\nm = NotAClass()\n")
    assert decision.value is False
    assert "NotAClass" in decision.detail


def test_module_attribute_the_library_lacks() -> None:
    code = "import transformers\nm = transformers.NotAClass.from_pretrained('bert-base-uncased')\n"
    assert check_imports(code).value is False
    assert check_imports("import transformers\np = transformers.pipeline('fill-mask')\n").value is True


def test_submodules_resolve() -> None:
    assert check_imports("from PIL import Image\nimport os.path\nx = Image.open(os.path.join('a', 'b.png'))\n"
                         ).value is True
    assert check_imports("import os.nosuchmodule\n").value is False
    assert check_imports("import os.sep\n").value is False  # an attribute, not a module


def test_a_library_that_is_not_installed_is_unknown_not_wrong() -> None:
    decision = check_imports("import apirl_no_such_library\nfrom apirl_no_such_library import thing\nthing()\n")
    assert decision.value is None
    assert "not installed" in decision.detail


def test_relative_import_is_wrong_in_a_snippet() -> None:
    assert check_imports("from .models import thing\nthing()\n").value is False


def test_module_aliases_and_classes_used_without_import() -> None:
    assert check_imports("x = np.zeros(3)\n").value is False
    assert check_imports("img = Image.new('RGB', (2, 2))\n").value is False
    # An input the code assumes is undefined, not a missing import.
    assert check_imports("from transformers import pipeline\nc = pipeline('fill-mask')\nc(text)\n").value is True


def test_star_import_from_an_installed_module_defines_its_names() -> None:
    code = "from os.path import *\nprint(join('a', 'b'))\n"
    assert check_imports(code).value is True
    assert check_defined_names(code).value is True
    missing = check_defined_names("from os.path import *\nprint(joinn('a', 'b'))\n")
    assert missing.value is False and "joinn" in missing.detail
    unknown = "from apirl_no_such_library import *\nthing()\n"
    assert check_imports(unknown).value is None
    assert check_defined_names(unknown).value is None


# ------------------------------------------------------------------------------------------------------------
# defined_names


def test_free_variables_are_undefined_names() -> None:
    decision = check_defined_names("from transformers import pipeline\nc = pipeline('fill-mask')\n"
                                   "print(c(review_text), top_k)\n")
    assert decision.value is False
    assert decision.detail == "undefined: review_text, top_k"


def test_names_bound_by_any_construct_are_defined() -> None:
    code = ("import json\nfor i, line in enumerate(['{}']):\n    data = json.loads(line)\n"
            "def f(x, *args, k=1, **kw):\n    return [y for y in x if y] + [k]\n"
            "try:\n    f(data)\nexcept ValueError as err:\n    print(err)\n")
    assert check_defined_names(code).value is True


# ------------------------------------------------------------------------------------------------------------
# api_exists


def test_unknown_model_id_is_no(api_db) -> None:
    decision = check_api_exists(FILL_MASK.replace("bert-base-uncased", "bert-base-uncased-v2"), api_db)
    assert decision.value is False
    assert "not in the API database: bert-base-uncased-v2" in decision.detail


def test_no_model_id_means_no_api_call(api_db) -> None:
    decision = check_api_exists("import os\nprint(os.getcwd())\n", api_db)
    assert decision.value is False and "no API call" in decision.detail
    assert check_api_exists("from transformers import pipeline\nc = pipeline('fill-mask')\n", api_db).value is False


def test_pipeline_task_must_match_the_row(api_db) -> None:
    wrong = check_api_exists(f"from transformers import pipeline\nc = pipeline('fill-mask', model='{SENTIMENT}')\n",
                             api_db)
    assert wrong.value is False
    assert "differs from the row's 'sentiment-analysis'" in wrong.detail
    alias = f"from transformers import pipeline\nc = pipeline('text-classification', model='{SENTIMENT}')\n"
    assert check_api_exists(alias, api_db).value is True  # sentiment-analysis is an alias of text-classification
    unknown_task = "from transformers import pipeline\nc = pipeline('fill-masks', model='bert-base-uncased')\n"
    assert check_api_exists(unknown_task, api_db).value is False


def test_classes_fit_by_auto_family(api_db) -> None:
    image_pipeline = f"from transformers import pipeline\nc = pipeline('image-classification', model='{VIT}')\n"
    assert check_api_exists(image_pipeline, api_db).value is True  # the task loads ViTForImageClassification
    auto = f"from transformers import AutoModelForImageClassification as A\nm = A.from_pretrained('{VIT}')\n"
    assert check_api_exists(auto, api_db).value is True  # seen through the import alias
    masked = "import transformers\nm = transformers.AutoModelForMaskedLM.from_pretrained('bert-base-uncased')\n"
    assert check_api_exists(masked, api_db).value is True  # the fill-mask row's task loads AutoModelForMaskedLM
    wrong = f"from transformers import AutoModelForCausalLM\nm = AutoModelForCausalLM.from_pretrained('{VIT}')\n"
    decision = check_api_exists(wrong, api_db)
    assert decision.value is False
    assert "does not fit the row's ViTForImageClassification" in decision.detail


def test_model_id_through_a_variable_and_tokenizer_only_loads(api_db) -> None:
    code = ("from transformers import pipeline as p\nmodel_id = 'bert-base-uncased'\n"
            "c = p('fill-mask', model=model_id)\n")
    assert check_api_exists(code, api_db).value is True
    tokenizer_only = "from transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained('bert-base-uncased')\n"
    assert check_api_exists(tokenizer_only, api_db).value is None
    unknown_tokenizer = tokenizer_only.replace("bert-base-uncased", "no-org/no-model")
    assert check_api_exists(unknown_tokenizer, api_db).value is False


@pytest.fixture(scope="module")
def more_rows_db() -> ApiDatabase:
    from conftest import API_ROWS

    extra = [
        {"domain": "Computer Vision Object Detection", "framework": "Hugging Face", "functionality": "Detection",
         "api_name": "keremberke/yolov8m-table-extraction", "api_call": "YOLO('keremberke/yolov8m-table-extraction')"},
        {"domain": "Natural Language Processing Text Classification", "framework": "Hugging Face Transformers",
         "functionality": "Sentiment", "api_name": "cardiffnlp/twitter-xlm-roberta-base-sentiment",
         "api_call": "pipeline(sentiment-analysis, model='cardiffnlp/twitter-xlm-roberta-base-sentiment')"},
        {"domain": "Natural Language Processing Text Classification", "framework": "Hugging Face Transformers",
         "functionality": "Toxicity", "api_name": "martin-ha/toxic-comment-model",
         "api_call": "pipeline(model='martin-ha/toxic-comment-model')"},
    ]
    return ApiDatabase([ApiRow.from_json(index, raw) for index, raw in enumerate([*API_ROWS, *extra])])


def test_other_libraries_loaders_fit_the_same_call(more_rows_db) -> None:
    code = "from ultralyticsplus import YOLO\nmodel = YOLO('keremberke/yolov8m-table-extraction')\n"
    assert check_api_exists(code, more_rows_db).value is True
    assert check_imports(code).value is None  # ultralyticsplus is not installed here
    other = "import joblib\nmodel = joblib.load('keremberke/yolov8m-table-extraction')\n"
    assert check_api_exists(other, more_rows_db).value is False


def test_row_tasks_without_quotes_and_pipelines_without_a_task(more_rows_db) -> None:
    code = ("from transformers import pipeline\n"
            "c = pipeline('sentiment-analysis', model='cardiffnlp/twitter-xlm-roberta-base-sentiment')\n")
    assert check_api_exists(code, more_rows_db).value is True
    inferred = "from transformers import pipeline\nc = pipeline(model='martin-ha/toxic-comment-model')\n"
    assert check_api_exists(inferred, more_rows_db).value is True
    variable_task = ("from transformers import pipeline\nc = pipeline(task, model='martin-ha/toxic-comment-model')\n")
    assert check_api_exists(variable_task, more_rows_db).value is None


# ------------------------------------------------------------------------------------------------------------
# arguments


def test_unknown_keyword_to_pipeline_is_no_and_a_used_one_yes() -> None:
    decision = check_arguments(FILL_MASK.replace("top_k=3", "use_cache_dir=True"))
    assert decision.value is False
    assert "use_cache_dir" in decision.detail and "FillMaskPipeline" in decision.detail
    assert check_arguments(FILL_MASK).value is True  # top_k is a FillMaskPipeline parameter
    assert check_arguments(FILL_MASK.replace("top_k=3", "device=-1")).value is True  # pipeline()'s own


def test_pipeline_whose_probe_needs_a_model_is_unknown() -> None:
    code = f"from transformers import pipeline\nc = pipeline('sentiment-analysis', model='{SENTIMENT}', bogus=1)\n"
    decision = check_arguments(code)
    assert decision.value is None
    assert "TextClassificationPipeline" in decision.detail


def test_keywords_in_a_probed_kwargs_pipeline() -> None:
    code = "from transformers import pipeline\nqa = pipeline('question-answering', model='a/b', {kw})\n"
    assert check_arguments(code.format(kw="use_cache_dir=True")).value is False
    assert check_arguments(code.format(kw="max_answer_len=30")).value is True


def test_too_many_positional_arguments() -> None:
    code = "from transformers import pipeline\nc = pipeline('fill-mask', 'bert-base-uncased', " + \
           ", ".join(["None"] * 17) + ")\n"
    decision = check_arguments(code)
    assert decision.value is False and "too many positional arguments" in decision.detail


def test_unknown_keyword_to_auto_tokenizer_is_unknown_because_of_kwargs() -> None:
    code = "from transformers import AutoTokenizer\ntok = AutoTokenizer.from_pretrained('bert-base-uncased'{kw})\n"
    decision = check_arguments(code.format(kw=", use_cache_dir=True"))
    assert decision.value is None
    assert "**kwargs" in decision.detail and "use_cache_dir" in decision.detail
    assert check_arguments(code.format(kw="")).value is True


def test_explicit_signatures_decide(api_db) -> None:
    st = "from sentence_transformers import SentenceTransformer\nm = SentenceTransformer('a/b'{kw})\n"
    assert check_arguments(st.format(kw=", device='cpu'")).value is True
    bad = check_arguments(st.format(kw=", use_cache_dir=True"))
    assert bad.value is False and "use_cache_dir" in bad.detail
    # A wrong call outside the API call is still a wrong argument.
    assert check_arguments("import shutil\nshutil.copy('a', 'b', overwrite=True)\n" + FILL_MASK).value is False


def test_undecidable_calls() -> None:
    assert check_arguments("import os\nprint(os.getcwd())\n").value is None  # no API call
    unpacked = "from transformers import pipeline\nkw = {}\nc = pipeline('fill-mask', **kw)\n"
    assert check_arguments(unpacked).value is None
    # huggingface_hub's decorator accepts the old use_auth_token that the wrapped signature lacks.
    hub = "from huggingface_hub import hf_hub_download\np = hf_hub_download('a/b', 'f.bin', use_auth_token=True)\n"
    assert check_arguments(hub).value is None
    not_installed = "from apirl_no_such_library import Model\nm = Model.from_pretrained('a/b', x=1)\n"
    assert check_arguments(not_installed).value is None


# ------------------------------------------------------------------------------------------------------------
# complete


@pytest.mark.parametrize("placeholder", [
    "def postprocess(x):\n    pass\n",
    "def postprocess(x):\n    '''Later.'''\n    pass\n",
    "...\n",
    "# TODO: print the result\n",
    "# your code here\n",
    "raise NotImplementedError\n",
    "label = unmasker('<your input sentence>')\n",
    "key = 'YOUR_API_KEY'\n",
])
def test_placeholders_make_code_incomplete(placeholder: str) -> None:
    decision = check_complete(FILL_MASK + placeholder)
    assert decision.value is False, placeholder
    assert check_complete(FILL_MASK).value is True


def test_real_tokens_and_example_inputs_are_not_placeholders() -> None:
    code = FILL_MASK + ("print(unmasker('Paris is the <mask> of France. </s>'))\nhistory = '<START>'\n"
                        "html = '<br>'\nfrom PIL import Image\nimage = Image.open('path/to/your/image.jpg')\n"
                        "for x in range(2):\n    print(x)\n")
    assert check_complete(code).value is True


def test_code_without_an_api_call_is_incomplete() -> None:
    decision = check_complete("import os\nprint(os.getcwd())\n")
    assert decision.value is False and "calls no API" in decision.detail


# ------------------------------------------------------------------------------------------------------------
# logic, and the executability verdict


def _verdict(status: str, key: str = "s") -> ExecVerdict:
    return ExecVerdict(key, "bound", status, None, f"{status} message", 0.1, ())


@pytest.mark.parametrize(("status", "value"), [
    ("ok", True), ("runtime_error", False), ("bad_arguments", False), ("unknown_attribute", False),
    ("unsupported_library", None), ("hub_gap", None), ("import_error", None), ("timeout", None),
])
def test_logic_from_the_verdict(status: str, value: bool | None) -> None:
    assert check_logic(_verdict(status)).value is value
    assert check_logic(None).value is None


def test_verdicts_are_looked_up_by_sample_id(api_db) -> None:
    judge = ToolsJudge(api_db, {"good": _verdict("ok", "good"), "bad": _verdict("runtime_error", "bad")})
    assert _answers(judge, FILL_MASK, "good")["logic"] is True
    assert _answers(judge, FILL_MASK, "bad")["logic"] is False
    assert _answers(judge, FILL_MASK, "other")["logic"] is None


def test_verdict_fills_abstentions_but_never_overrides_a_decision(api_db) -> None:
    not_installed = "import apirl_no_such_library\n" + FILL_MASK.replace("top_k=3", "bogus=1").replace(
        "fill-mask", "sentiment-analysis").replace("bert-base-uncased", SENTIMENT)
    plain = _answers(ToolsJudge(api_db), not_installed)
    assert plain["imports"] is None and plain["arguments"] is None
    failed = _answers(ToolsJudge(api_db, {"s": _verdict("import_error")}), not_installed)
    assert failed["imports"] is False and failed["arguments"] is None
    bad_arguments = _answers(ToolsJudge(api_db, {"s": _verdict("bad_arguments")}), not_installed)
    assert bad_arguments["arguments"] is False
    # Statically wrong stays wrong, whatever the run said.
    missing = FILL_MASK.replace("from transformers import pipeline\n", "")
    assert _answers(ToolsJudge(api_db, {"s": _verdict("ok")}), missing)["imports"] is False


# ------------------------------------------------------------------------------------------------------------
# Mutants: code broken in one known way scores lower than the code it came from.


@pytest.mark.parametrize("code", [FILL_MASK, VIT_CODE])
def test_every_mutant_scores_lower_than_its_original(judge, api_db, code: str) -> None:
    original = score(judge.answer_all(Sample("gold", "x", code)))
    mutants = make_mutants(code, known_model_ids=api_db.model_ids)
    assert {m.kind for m in mutants} == set(MUTANT_KINDS)
    for mutant in mutants:
        answers = judge.answer_all(Sample("mutant", "x", mutant.code))
        assert score(answers) < original, (mutant.kind, mutant.description, answers)
