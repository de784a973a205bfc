"""Bound execution mode: free variables, file literals, typed dummies, the one-line prelude, the web fixture.

Everything runs in-process in a temporary cwd with sockets refused, so a test that passes proves the snippet
needed no network; the `offline` fixture puts back whatever the web fixture patched.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import socket
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters

from apirl.code_facts import free_variables
from apirl.execution import binding, dummies
from apirl.execution.binding import bind, binding_spec, file_literals, variable_kind
from apirl.execution.dummies import PermissiveEstimator, install, web_payload


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cwd like the sandbox's, no sockets, and the web patches undone afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", requests.adapters.HTTPAdapter.send)
    monkeypatch.setattr(urllib.request, "urlopen", urllib.request.urlopen)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network used in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path


def run_bound(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(bind(code), "<snippet>", "exec"), namespace)
    return namespace


# ------------------------------------------------------------------------------------------------------------
# free_variables


@pytest.mark.parametrize(("code", "expected"), [
    ("result = classifier(text)", ["classifier", "text"]),
    ("y = [f(a) for a in xs if a > t]\nz = {k: v for k, v in d.items()}", ["f", "xs", "t", "d"]),
    ("[[c for c in row] for row in grid]\nprint(c)", ["grid", "c"]),  # comprehension variables stay inside
    ("def g(p, *args, q=default, **kw):\n    local = p + q + outer + len(args) + len(kw)\n    return local\n"
     "outer = 1", ["default"]),
    ("for i, (j, k) in enumerate(items):\n    print(i, j, k, total)", ["items", "total"]),
    ("import os.path\nfrom x import y as z\nprint(os, z, y)", ["y"]),
    ("obj.attr.sub = 3\nprint(other.attr)", ["obj", "other"]),  # attribute access only reads the base
    ("print(later)\nlater = 1", []),  # bound anywhere at module level counts as bound
    ("print(len(s), range(3), print, ValueError, __name__)", ["s"]),  # builtins are not free
    ("class A:\n    v = 1\n    def m(self):\n        return v", ["v"]),  # class bodies are not visible
    ("def f():\n    global gg\n    gg = 1\nprint(gg)", []),
    ("def outer():\n    a = 1\n    def inner():\n        nonlocal a\n        a += b\n    return inner", ["b"]),
    ("if (n := 10) > 5:\n    print(n, m)", ["m"]),
    ("print([last := v for v in vs], last)", ["vs"]),  # a walrus in a comprehension binds outside it
    ("match cmd:\n    case [x, *rest]:\n        print(x, rest)\n    case {'k': val, **others}:\n"
     "        print(val, others)\n    case Point(x=px) as pt:\n        print(px, pt)", ["cmd", "Point"]),
    ("try:\n    pass\nexcept ValueError as e:\n    print(e)\nwith open(f) as fh, ctx() as (a, b):\n"
     "    print(fh, a, b)", ["f", "ctx"]),
    ("del q\nprint(q)", []),
    ("lam = lambda u, w=ww: u + w + vv", ["ww", "vv"]),
    ("@deco(arg)\ndef h(x: Hint) -> Ret:\n    return x", ["deco", "arg", "Hint", "Ret"]),
    ("from transformers import *\nmodel = AutoModel.from_pretrained(m)", ["AutoModel", "m"]),
])
def test_free_variables(code: str, expected: list[str]) -> None:
    assert free_variables(code) == expected


def test_free_variables_first_use_order_and_no_duplicates() -> None:
    assert free_variables("a = f(z, y)\nb = g(y, x, z)") == ["f", "z", "y", "g", "x"]


def test_free_variables_rejects_unparsable_code() -> None:
    with pytest.raises(SyntaxError):
        free_variables("x = (")


# ------------------------------------------------------------------------------------------------------------
# file_literals


def test_file_literals() -> None:
    code = """
Image.open('your_image.jpg'); pd.read_csv('data.csv'); joblib.load('model.joblib'); librosa.load('audio.wav')
Image.open('https://example.com/x.png'); Image.open('www.example.com/y.png'); pd.read_csv('s3://b/k.csv')
open('/abs/p.png'); open('../up.csv'); open('a/../b.csv'); open('~/home.txt'); open('C:\\\\x.jpg')
open(f'{d}/img.png'); open('frame_{}.png'.format(1)); glob('*.jpg'); open('img_%d.png' % 1)
open('nested/dir/Photo.JPG'); open('./data.csv'); open('data.csv'); open('clip.mp4'); open('notes')
np.load('arr.npy'); pickle.load(open('model.pkl', 'rb')); 'hello world'; open('.png')
"""
    assert file_literals(code) == ["your_image.jpg", "data.csv", "model.joblib", "audio.wav",
                                   "nested/dir/Photo.JPG", "./data.csv", "arr.npy", "model.pkl"]


@pytest.mark.parametrize("ext", sorted(binding.FILE_EXTENSIONS))
def test_every_known_extension_is_a_file_literal(ext: str) -> None:
    assert file_literals(f"open('input.{ext}')") == [f"input.{ext}"]


# ------------------------------------------------------------------------------------------------------------
# variable_kind


@pytest.mark.parametrize(("name", "kind"), [
    ("url", "url:jpg"), ("image_url", "url:jpg"), ("audio_url", "url:wav"), ("imageUrl", "url:jpg"),
    ("image_path", "file:jpg"), ("audio_file", "file:wav"), ("csv_file", "file:csv"), ("file_path", "file:txt"),
    ("filename", "file:txt"), ("config_file", "file:json"), ("model_path", "file:joblib"),
    ("video_path", "file:mp4"), ("path_to_image", "file:jpg"), ("image_name", "file:jpg"),
    ("image_dir", "dir:jpg"), ("output_dir", "dir:"),
    ("image", "image"), ("img", "image"), ("input_image", "image"), ("init_image", "image"),
    ("mask_image", "image"), ("mask", "image"), ("raw_image", "image"),
    ("images", "images"), ("frames", "images"), ("photos", "images"), ("image_list", "images"),
    ("audio", "audio"), ("speech", "audio"), ("waveform", "audio"), ("audio_array", "audio"),
    ("samples", "audio"), ("sampling_rate", "sampling_rate"), ("sample_rate", "sampling_rate"),
    ("sr", "sampling_rate"), ("video", "video"), ("clip", "video"), ("video_frames", "video"),
    ("table", "table"), ("df", "table"), ("dataframe", "table"), ("data", "data"), ("input_data", "data"),
    ("X", "data"), ("X_test", "data"), ("transaction_data", "data"), ("features", "features"),
    ("y_train", "targets"), ("wavs", "audios"),
    ("labels", "labels"), ("candidate_labels", "labels"), ("classes", "labels"), ("class_names", "labels"),
    ("num_beams", "int"), ("num_frames", "int"), ("max_length", "length"), ("max_new_tokens", "length"),
    ("top_k", "int"), ("k", "int"), ("batch_size", "int"), ("seed", "int"), ("width", "pixels"),
    ("threshold", "float"), ("temperature", "float"), ("top_p", "float"), ("learning_rate", "float"),
    ("texts", "texts"), ("sentences", "texts"), ("text_list", "texts"), ("documents", "texts"),
    ("text", "text"), ("sentence", "text"), ("prompt", "text"), ("input_text", "text"), ("inputText", "text"),
    ("sentence1", "text"), ("text_en", "text"), ("question", "question"), ("query", "question"),
    ("context", "context"), ("code", "code"), ("masked_text", "masked_text"),
    ("device", "device"), ("language", "language"), ("src_lang", "language"),
    ("foo", "fallback"), ("API_TOKEN", "fallback"),
])
def test_variable_kind(name: str, kind: str) -> None:
    assert variable_kind(name) == kind


@pytest.mark.parametrize("name", [
    "model_name", "model_id", "checkpoint", "model_checkpoint", "repo_id", "dataset_name",  # never invent ids
    "model", "tokenizer", "processor", "classifier", "pipeline", "feature_extractor", "config",  # objects
    "outputs", "inputs", "logits", "embeddings", "image_features", "response",  # computed results
    "Image", "AutoModel", "np", "pd", "torch", "F", "nn", "requests", "cv2", "transformers",  # imports
    "__file__",
])
def test_names_never_bound(name: str) -> None:
    assert variable_kind(name) is None


def test_spec_leaves_called_names_and_fallback_objects_unbound() -> None:
    code = ("result = classify(text)\nprint(model.config, foo, bar.baz, image_path)\n"
            "unknown_thing.run()\nprint(text.upper())")
    assert binding_spec(code) == {"variables": {"text": "text", "foo": "fallback", "image_path": "file:jpg"},
                                  "files": [], "web": True}


def test_spec_gives_files_to_names_passed_to_loaders() -> None:
    code = ("img = Image.open(image)\ny, s = librosa.load(audio)\nd = pd.read_csv(data)\nt = open(document).read()\n"
            "x = Image.open(image_path)\nm = joblib.load(model)\nw = open(weird)\nprint(weird.mode)\n"
            "Image.open(file_path)\nopen(config_file)")
    assert binding_spec(code)["variables"] == {"image": "file:jpg", "audio": "file:wav", "data": "file:csv",
                                               "document": "file:txt", "image_path": "file:jpg",
                                               "file_path": "file:jpg", "config_file": "file:json"}


# ------------------------------------------------------------------------------------------------------------
# bind: the one-line prelude


def test_bind_adds_exactly_one_line_and_keeps_the_code() -> None:
    code = "from PIL import Image\nimage = Image.open('your_image.jpg')\nprint(image.size, text)\n"
    bound = bind(code)
    ast.parse(bound)
    lines = bound.splitlines()
    assert len(lines) == len(code.splitlines()) + 1
    assert "\n".join(lines[1:]) + "\n" == code
    assert lines[0].startswith("__import__('apirl.execution.dummies'")
    spec = ast.literal_eval(ast.parse(lines[0]).body[0].value.args[1])  # type: ignore[attr-defined]
    assert spec == {"variables": {"text": "text"}, "files": ["your_image.jpg"], "web": True}


@pytest.mark.parametrize("code", ["x = (", "def f(:\n    pass", "return 1", "  indented = 1\nx = 2", "a\0b"])
def test_bind_returns_code_that_does_not_compile_unchanged(code: str) -> None:
    assert bind(code) == code


def test_bind_keeps_future_imports_first() -> None:
    code = '"""Doc."""\nfrom __future__ import annotations\nx: int = y\nprint(x)'
    bound = bind(code)
    assert bound.splitlines()[:2] == code.splitlines()[:2]
    assert bound.splitlines()[3:] == code.splitlines()[2:]
    compile(bound, "<snippet>", "exec")


def test_error_line_numbers_shift_by_exactly_one(offline: Path) -> None:
    code = "a = 1\nb = 2\nc = undefined_function(text)\n"
    with pytest.raises(NameError) as info:
        run_bound(code)
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == ("<snippet>", 3 + 1)


# ------------------------------------------------------------------------------------------------------------
# End to end: typical Gorilla fragments run once bound.


@pytest.mark.parametrize("code", [
    "from PIL import Image\nimage = Image.open('your_image.jpg')\nprint(image.size)",
    "import requests\nfrom PIL import Image\nimage = Image.open(requests.get(url, stream=True).raw)",
    "import pandas as pd, json\nconfig = json.load(open('config.json'))\n"
    "data = pd.read_csv('data.csv')[config['features']]",
    "import joblib\nmodel = joblib.load('model.joblib')\nprint(model.predict(data))",
    "import soundfile as sf\nx, sr = sf.read('speech.wav')",
    "result = len(text)",
    "from PIL import Image\nimage = Image.open(image_path).convert('RGB')\nprint(image.size)",
    "import soundfile as sf\nfor name in ['a.flac', 'b.ogg', 'c.mp3', 'd.m4a']:\n    x, sr = sf.read(name)",
    "from PIL import Image\nfor name in ['a.png', 'b.jpeg', 'c.bmp', 'd.gif', 'e.webp', 'f.tif']:\n"
    "    Image.open(name).load()",
    "import urllib.request\nfrom PIL import Image\nwith urllib.request.urlopen(image_url) as r:\n"
    "    assert r.getcode() == 200\n    Image.open(r).load()",
    "import requests\nr = requests.get('https://example.com/data.json')\nr.raise_for_status()\nprint(r.json()['text'])",
    "import numpy as np\nassert np.load('arr.npy').shape == (4, 4)\nassert audio.dtype == np.float32",
    "import pandas as pd\nprint(pd.read_csv('table.tsv', sep='\\t').shape, table.shape, df.shape)",
    "import os\nassert sorted(os.listdir(image_dir)) == ['sample_0.jpg', 'sample_1.jpg']\nopen(text_file).read()",
    "import pickle\nclf = pickle.load(open('clf.pkl', 'rb'))\nclf.fit(X_train, y).predict_proba(X_test)",
    "import json\nrows = [json.loads(line) for line in open('data.jsonl')]\nassert rows[0]['text']",
    "import soundfile as sf\nfrom PIL import Image\nImage.open(image).load()\nsamples, sr = sf.read(audio)",
])
def test_bound_snippets_run(offline: Path, code: str) -> None:
    run_bound(code)


def test_bound_values_are_typed(offline: Path) -> None:
    from PIL import Image
    names = ("image images audio video table data candidate_labels sampling_rate device max_length texts "
             "question context threshold")
    ns = run_bound(f"print({', '.join(names.split())})")
    assert isinstance(ns["image"], Image.Image) and ns["image"].size == (64, 64)
    assert ns["image"].getextrema() != ((0, 0), (0, 0), (0, 0))
    assert len(ns["images"]) == 2 and all(isinstance(i, Image.Image) for i in ns["images"])
    assert ns["audio"].shape == (16000,) and str(ns["audio"].dtype) == "float32" and ns["audio"].std() > 0.1
    assert len(ns["video"]) == 8 and ns["video"][0].shape == (64, 64, 3) and str(ns["video"][0].dtype) == "uint8"
    assert all(isinstance(v, str) for v in ns["table"].to_numpy().ravel())
    assert list(ns["data"].columns) == ["feat_0", "feat_1", "feat_2", "feat_3"]
    assert len(ns["candidate_labels"]) == 3 and ns["sampling_rate"] == 16000 and ns["device"] == "cpu"
    assert ns["max_length"] == 16 and len(ns["texts"]) == 2 and ns["question"].endswith("?")
    assert ns["context"].count(".") >= 2 and ns["threshold"] == 0.5


# ------------------------------------------------------------------------------------------------------------
# install


def test_install_writes_files_and_variables(offline: Path) -> None:
    (offline / "existing.csv").write_text("mine\n")
    ns: dict[str, Any] = {"text": "kept"}
    restore = install(ns, {"variables": {"text": "text", "image_path": "file:jpg", "docs": "files:txt",
                                         "broken": "no-such-kind"},
                           "files": ["existing.csv", "sub/dir/cfg_config.json", "/etc/evil.txt", "../up.txt"],
                           "web": False})
    restore()
    assert ns["text"] == "kept"  # never replaces a name already there
    assert "broken" not in ns  # a dummy that cannot be built leaves the name unbound
    assert (offline / "existing.csv").read_text() == "mine\n"  # never overwrites
    assert json.loads((offline / "sub/dir/cfg_config.json").read_text()) == {
        "features": ["feat_0", "feat_1", "feat_2", "feat_3"]}
    assert ns["image_path"] == "image_path.jpg" and (offline / "image_path.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert ns["docs"] == ["docs_0.txt", "docs_1.txt"] and (offline / "docs_1.txt").is_file()
    assert not (offline.parent / "up.txt").exists()


def test_csv_content(offline: Path) -> None:
    install({}, {"variables": {}, "files": ["data.csv"], "web": False})
    lines = (offline / "data.csv").read_text().splitlines()
    assert lines[0] == "feat_0,feat_1,feat_2,feat_3,text" and len(lines) == 5


def test_install_survives_a_broken_spec(offline: Path) -> None:
    install({}, {"variables": {"x": None}, "files": [None, 3], "web": False})
    assert list(offline.iterdir()) == []


def test_image_without_pil_is_a_handmade_png(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    def no_pil() -> None:
        raise ImportError("no PIL")

    monkeypatch.setattr(dummies, "_pil_image", no_pil)
    ns: dict[str, Any] = {}
    install(ns, {"variables": {"image": "image"}, "files": ["x.jpg"], "web": False})
    assert ns["image"] == "image.png"
    for path in ("image.png", "x.jpg"):
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "RGB")
            assert image.getpixel((10, 20)) == (40, 80, 60)


def test_permissive_estimator_round_trips_through_joblib(offline: Path) -> None:
    import joblib
    install({}, {"variables": {}, "files": ["model.joblib"], "web": False})
    model = joblib.load("model.joblib")
    assert isinstance(model, PermissiveEstimator)
    assert list(model.predict([[1, 2], [3, 4], [5, 6]])) == [0, 0, 0]
    assert model.predict_proba([[1, 2]]).tolist() == [[0.5, 0.5]]
    assert model.fit([[1]], [0]) is model and model.score([[1]], [0]) == 0.0 and model.transform("X") == "X"
    with pytest.raises(AttributeError):
        model.predict_probabilities([[1]])
    assert pickle.loads(pickle.dumps(model)).predict([1]).tolist() == [0.0]


# ------------------------------------------------------------------------------------------------------------
# The offline web fixture


def test_web_fixture_serves_requests_and_urllib(offline: Path) -> None:
    from PIL import Image
    restore = install({}, {"variables": {}, "files": [], "web": True})
    try:
        response = requests.get("https://example.com/cat.png", stream=True)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        assert Image.open(response.raw).size == (64, 64)
        assert requests.get("http://example.com/a.wav").content[:4] == b"RIFF"
        assert requests.Session().post("https://example.com/api", json={}).json() == {}
        assert "<html" in requests.get("https://example.com/").text
        head = requests.head("https://example.com/data.csv")
        assert head.content == b"" and int(head.headers["Content-Length"]) > 0
        with pytest.raises(requests.exceptions.MissingSchema):
            requests.get("example.com/x.png")  # requests still validates URLs itself
        with urllib.request.urlopen(urllib.request.Request("https://example.com/x.jpg")) as reply:
            assert reply.getcode() == 200 and reply.headers["Content-Type"] == "image/jpeg"
            assert Image.open(io.BytesIO(reply.read())).format == "JPEG"
        local = offline / "local.txt"
        local.write_text("local\n")
        with urllib.request.urlopen(local.as_uri()) as reply:  # not http(s): the original urlopen
            assert reply.read() == b"local\n"
    finally:
        restore()
    assert not getattr(requests.adapters.HTTPAdapter.send, "_apirl_offline", False)
    assert not getattr(urllib.request.urlopen, "_apirl_offline", False)


def test_web_fixture_leaves_huggingface_hub_requests_alone(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def original(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(request.url)
        raise requests.ConnectionError("hub is offline")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", original)
    restore = install({}, {"variables": {}, "files": [], "web": True})
    try:
        agent = {"user-agent": "unknown/None; hf_hub/0.36.2; python/3.11"}
        with pytest.raises(requests.ConnectionError):
            requests.get("https://huggingface.co/bert-base-uncased/resolve/main/config.json", headers=agent)
        assert seen == ["https://huggingface.co/bert-base-uncased/resolve/main/config.json"]
        # the same host asked by the snippet itself (an example image on the hub) is served
        assert requests.get("https://huggingface.co/datasets/x/resolve/main/cat.jpg").status_code == 200
    finally:
        restore()


def test_install_twice_patches_once(offline: Path) -> None:
    first = install({}, {"web": True})
    patched = requests.adapters.HTTPAdapter.send
    second = install({}, {"web": True})
    assert requests.adapters.HTTPAdapter.send is patched
    second()
    assert requests.adapters.HTTPAdapter.send is patched
    first()
    assert not getattr(requests.adapters.HTTPAdapter.send, "_apirl_offline", False)


@pytest.mark.parametrize(("url", "content_type"), [
    ("https://example.com/a/b.JPG?x=1", "image/jpeg"), ("https://example.com/s.flac", "audio/flac"),
    ("https://example.com/d.json", "application/json"), ("https://example.com/t.txt", "text/plain; charset=utf-8"),
    ("https://picsum.photos/image/200", "image/png"), ("https://example.com/speech", "audio/wav"),
    ("https://api.example.com/v1/run", "application/json"), ("https://example.com/about", "text/html; charset=utf-8"),
])
def test_web_payload_follows_the_extension(url: str, content_type: str) -> None:
    body, kind = web_payload(url)
    assert kind == content_type and body


# ------------------------------------------------------------------------------------------------------------
# In the real sandbox (one small worker): the child imports apirl and binds inside its own temp dir.


def test_bound_snippet_in_the_sandbox() -> None:
    from apirl.execution.sandbox import Sandbox

    code = ("import requests\nfrom PIL import Image\nimage = Image.open(requests.get(url, stream=True).raw)\n"
            "print(image.size, open('data.csv').readline().strip())\nx = text + 1\n")
    with Sandbox(workers=1, timeout_s=30) as box:
        strict, bound = box.run_many([code, bind(code)])
    assert strict.status == "runtime_error" and "'url' is not defined" in strict.message
    assert bound.status == "runtime_error" and bound.error_type == "TypeError", bound
    assert "(64, 64) feat_0,feat_1,feat_2,feat_3,text" in bound.stdout_tail
    assert 'File "<snippet>", line 6' in bound.stderr_tail  # line 5 of the snippet, plus the prelude
