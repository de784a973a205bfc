"""What a snippet loads, one answer for the harness, the tools judge, the mutants and the offline hub."""

import ast

import pytest

from apirl.code_facts import (
    api_calls,
    free_variables,
    literal_strings,
    loaded_ids,
    looks_like_hub_id,
    model_ids_in_code,
    pipeline_tasks,
)

SENTIMENT = "distilbert-base-uncased-finetuned-sst-2-english"


def test_loaded_ids_are_repositories_asked_of_the_hub() -> None:
    code = ("tok = AutoTokenizer.from_pretrained('a/b')\np = pipeline('ner', model='c/d', tokenizer=tok)\n"
            "f = hf_hub_download(repo_id='e/f', filename='m.joblib')\nImage.open('x.png')\n"
            "name = 'g/h'\nds = load_dataset(name)\n")
    assert loaded_ids(code) == ["a/b", "c/d", "e/f", "g/h"]
    assert loaded_ids("this is not python (") == []


def test_model_ids_in_code_only_known_ids_in_order() -> None:
    known = {"bert-base-uncased", SENTIMENT}
    code = f"a = 'bert-base-uncased'\nb = '{SENTIMENT}'\nc = 'not/known'\nd = 'bert-base-uncased'\n"
    assert model_ids_in_code(code, known) == ["bert-base-uncased", SENTIMENT]
    assert model_ids_in_code("pipeline(model='bert-base-uncased'", known) == ["bert-base-uncased"]  # no parse needed


def test_api_calls_are_loaders_and_library_calls_given_a_hub_id() -> None:
    code = ("from ultralyticsplus import YOLO\nfrom datasets import load_dataset\nimport os\n"
            "from diffusers import DDPMPipeline\n"
            "model = YOLO('keremberke/yolov8m-table-extraction')\n"
            "data = load_dataset('org/some-dataset')\npath = os.path.join('org/dir', 'x')\n"
            "pipeline = DDPMPipeline.from_pretrained('google/ddpm-cat-256')\nimage = pipeline()\n"
            "print('a/b')\n")
    calls = api_calls(ast.parse(code))
    assert [(c.loader, c.model_id) for c in calls] == [("YOLO", "keremberke/yolov8m-table-extraction"),
                                                       ("DDPMPipeline.from_pretrained", "google/ddpm-cat-256")]
    assert loaded_ids(code) == ["keremberke/yolov8m-table-extraction", "google/ddpm-cat-256", "org/some-dataset"]


@pytest.mark.parametrize(("value", "expected"), [("org/name", True), ("org/name@v2", True), ("images/cat.jpg", False),
                                                 ("models/clf.joblib", False), ("bert-base-uncased", False),
                                                 (None, False)])
def test_a_hub_id_is_org_slash_name_and_never_a_data_file(value, expected) -> None:
    assert looks_like_hub_id(value) is expected


def test_pipeline_tasks_quoted_or_a_bare_hyphenated_word_never_a_variable() -> None:
    assert pipeline_tasks("pipeline('fill-mask', model=m)") == ["fill-mask"]
    assert pipeline_tasks('pipeline(task="ner")') == ["ner"]
    assert pipeline_tasks("pipeline(sentiment-analysis, model='x/y')") == ["sentiment-analysis"]  # two db rows
    assert pipeline_tasks("pipeline(task, model='x/y')") == []


def test_free_variables_and_literal_strings() -> None:
    code = "import torch\nx = torch.tensor(values)\ndef f(a):\n    return a + b\n# 'c/d'\ns = 'a/b'\n"
    assert free_variables(code) == ["values", "b"]
    assert literal_strings(code) == {"a/b"}
    with pytest.raises(SyntaxError):
        free_variables("def (")
