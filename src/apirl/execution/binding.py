"""The "bound" execution mode: give a snippet the inputs it assumes, so that only its API usage is judged.

Gorilla-style answers are fragments of a larger program: they read variables they never define
(`result = classifier(text)`), open files that are not there (`Image.open('your_image.jpg')`,
`pd.read_csv('data.csv')`, `joblib.load('model.joblib')`) and fetch example URLs
(`Image.open(requests.get(url, stream=True).raw)`). Run as written ("strict" mode) almost every one fails on
its inputs before it reaches the API call we want to judge. "Bound" mode (the headline executability rate)
prepends ONE line to the snippet:

    __import__('apirl.execution.binding', fromlist=['install']).install(globals(), {...spec...})

so a traceback's line numbers are the snippet's own shifted by exactly one (the prelude goes after any
`from __future__` imports, which must stay first). `bind` computes the spec statically (a small JSON-able dict:
`{"variables": {name: kind}, "files": [paths], "web": True}`); `install` builds the dummies at run time, in the
current directory (the sandbox's fresh temp dir), importing optional libraries lazily and degrading when one is
missing (no PIL: an image variable becomes the path of a .png written by a tiny zlib PNG encoder; no numpy:
plain lists). `install` never raises: a dummy it cannot build leaves the name unbound, and the NameError that
follows is the snippet's honest outcome.

OFFLINE WEB FIXTURE. Bound mode serves a fixed offline response to every HTTP(S) request made through
`requests` (any Session or adapter: `requests.adapters.HTTPAdapter.send` is patched, so requests' own URL
validation, hooks and `stream=True` still work) or `urllib.request.urlopen` (and so `urlretrieve`): status 200,
with content chosen from the URL path's extension (images: a 64x64 image in that format; audio: a 1 s WAV;
.json/.csv/.txt/...: the same content as the dummy files below; no extension: an image or a WAV when the URL
names one, `{}` for an API-looking URL, else a small HTML page). The network is never touched. Requests sent by
huggingface_hub (its user agent says `hf_hub/`) go to the original adapter: models come from the offline hub,
never from this fixture. Other clients (httpx, aiohttp, sockets, `OpenerDirector.open`) are not patched. Strict
mode installs nothing: there a URL fetch fails as network use.

DUMMY FILES. Every string literal that is a relative path with a data-file extension (`file_literals`) gets a
file, and so does every path-like free variable. Existing files are never overwritten; absolute paths and paths
with '..' are refused. Contents by extension:

    png jpg jpeg bmp gif webp tif tiff   64x64 RGB gradient, in that format (PIL; a hand-made PNG without it)
    wav (mp3 m4a: WAV bytes too)         1 s, 16 kHz, 440 Hz sine (`wave`)
    flac ogg                             the same sine via soundfile (WAV bytes when soundfile is missing)
    csv / tsv                            header feat_0..feat_3,text and 4 rows of numbers plus a short text
    json                                 {"features": ["feat_0", ..., "feat_3"]} if the name contains "config",
                                         else {"text": <sentence>}
    jsonl / txt                          2 JSON lines {"text": ...} / 3 short English lines
    joblib pkl pickle                    a pickled `PermissiveEstimator` (joblib.load reads plain pickles)
    npy                                  a float32 4x4 array (skipped without numpy)
    mp4 avi mov mkv webm                 a few bytes (a video container header that cannot be decoded)

TYPED DUMMIES FOR FREE VARIABLES (`variable_kind`). The name is split into lowercase tokens (snake_case,
camelCase, digits dropped; a few pairs are fused: file_name, sample_rate, top_k, class_names, ...). First:

    never bound (None)   dunders; CamelCase names and common module aliases (Image, np, pd, torch, F, ...): real
                         import errors; model and dataset identifiers (model_name, model_id, checkpoint, repo_id,
                         dataset_name, ...): a missing model name is the code's fault, we never invent one;
                         model objects and computed results by their last token (model, tokenizer, pipeline,
                         classifier, config, outputs, logits, inputs, embeddings, response, ...). `bind` also
                         leaves unbound every name the code calls (`f(...)`: a missing function) and, for the
                         fallback kind only, every name used as an object (`obj.attr`). A name passed to a
                         file loader (`Image.open(image)`, `librosa.load(audio)`, `pd.read_csv(data)`,
                         `open(text)`) gets a file of the loader's type instead of its value kind.
    device               'cpu'
    sr, sampling_rate    16000 (also sample_rate, fs)
    X, X_test, ...       the numeric `data` frame (scikit-learn convention)
    y, y_train, ...      [0, 1, 0, 1]: one target per row of that frame
    num_*, n_*, max_*,   int: 16 when the rest is length/len/tokens/words, else 2
      min_*, total_*

Then the LAST token that is not a generic modifier (input, data, list, batch, array, tensor, raw, pil, ...;
list/batch make the kind plural) decides; when that token is unknown, a trailing generic modifier decides
(transaction_data -> data, *_input -> text, *_list -> texts), else the fallback:

    url link uri href    'https://example.com/<kind>.<ext>'; ext from the other tokens (image -> jpg,
                         audio -> wav, video -> mp4, ...; default jpg). Plural: a list of 2.
    path file filename   '<name>.<ext>', a file install() writes; ext from the other tokens: image/img/photo
      fname filepath     -> jpg, audio/speech/sound/voice/wav -> wav, csv/table/data -> csv, json/config ->
      (files, paths)     json, model/weights -> joblib, video -> mp4, text/txt/document -> txt; default txt.
                         `<kind>_name` with such a kind token (image_name) is a file too.
    dir directory folder a directory install() creates, holding 2 files when the other tokens give an ext
    image img photo      PIL.Image 64x64 RGB gradient; plural (images, frames, photos) a list of 2; frames
      picture frame        with "video" among the tokens is a video
      screenshot mask
    audio speech wav     numpy float32, 1 s at 16 kHz (440 Hz sine); plural a list of 2
      waveform sound
      signal samples
    video clip movie     list of 8 numpy uint8 arrays (64, 64, 3)
    table df dataframe   pandas DataFrame of strings {"name": [...], "value": [...]} (table QA wants strings)
    data (alone), csv    pandas DataFrame with numeric columns feat_0..feat_3 (tabular models)
    features, columns    ["feat_0", ..., "feat_3"] (the columns of the data above); image_features and the
                         like are model outputs: unbound
    labels classes       3 short strings
      categories candidates options choices tags topics
    k n steps seed       int 2 (length/len -> 16, width/height -> 64)
      epochs count size index idx id top_k
    threshold temperature  float 0.5
      top_p rate score alpha scale strength prob confidence
    lang language        'en'
    texts sentences      2 short English strings
      documents queries questions passages reviews prompts ...
    text sentence query  a short English sentence: question/query end with '?', context/passage/document/
      question prompt      article a few sentences, code a tiny Python function, masked_* a sentence with
      context code ...     [MASK]
    (anything else)      fallback: a short English sentence
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import email.message
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import wave
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any
from urllib.parse import urlsplit

# ------------------------------------------------------------------------------------------------------------
# Static analysis: free variables and file literals.

_BUILTINS = frozenset(dir(builtins))


class _Scope:
    """One Python scope: what it binds, what it declares global/nonlocal, and the names it reads."""

    def __init__(self, kind: str, parent: _Scope | None) -> None:
        self.kind, self.parent = kind, parent  # kind: module, function, class or comprehension
        self.bound: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.loads: list[tuple[int, int, str, str]] = []  # (line, column, name, role)


class _ScopeBuilder(ast.NodeVisitor):
    """Builds the scope tree, evaluating each expression in the scope Python evaluates it in (decorators,
    defaults and the first comprehension iterable in the enclosing one)."""

    def __init__(self, roles: dict[int, str]) -> None:
        self.roles = roles
        self.module = _Scope("module", None)
        self.scope = self.module
        self.scopes = [self.module]

    @contextlib.contextmanager
    def _inside(self, kind: str) -> Iterator[_Scope]:
        scope = _Scope(kind, self.scope)
        self.scopes.append(scope)
        outer, self.scope = self.scope, scope
        try:
            yield scope
        finally:
            self.scope = outer

    def _visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.scope.loads.append((node.lineno, node.col_offset, node.id, self.roles.get(id(node), "value")))
        else:  # Store and Del both make the name local to this scope
            self.scope.bound.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        target = self.scope
        while target.kind == "comprehension" and target.parent is not None:  # walrus binds outside the comp
            target = target.parent
        target.bound.add(node.target.id)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.scope.bound.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":  # a star import binds what it binds at run time: its names stay free here
                self.scope.bound.add(alias.asname or alias.name)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.nonlocals.update(node.names)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._visit_all([node.type])
        if node.name:
            self.scope.bound.add(node.name)
        self._visit_all(node.body)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._visit_all([node.pattern])
        if node.name:
            self.scope.bound.add(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.scope.bound.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._visit_all(node.keys)
        self._visit_all(node.patterns)
        if node.rest:
            self.scope.bound.add(node.rest)

    def _visit_signature(self, args: ast.arguments) -> None:
        """Defaults and annotations run in the enclosing scope, when the def runs."""
        self._visit_all([*args.defaults, *args.kw_defaults])
        every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
        self._visit_all([a.annotation for a in every if a is not None])

    @staticmethod
    def _bind_parameters(args: ast.arguments, scope: _Scope) -> None:
        for arg in [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]:
            if arg is not None:
                scope.bound.add(arg.arg)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._visit_all(node.decorator_list)
        self._visit_signature(node.args)
        self._visit_all([node.returns])
        self.scope.bound.add(node.name)
        with self._inside("function") as scope:
            self._bind_parameters(node.args, scope)
            self._visit_all(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_signature(node.args)
        with self._inside("function") as scope:
            self._bind_parameters(node.args, scope)
            self.visit(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_all([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
        self.scope.bound.add(node.name)
        with self._inside("class"):
            self._visit_all(node.body)

    def _visit_comprehension(self, generators: list[ast.comprehension], results: list[ast.expr]) -> None:
        self.visit(generators[0].iter)
        with self._inside("comprehension"):
            for index, generator in enumerate(generators):
                if index:
                    self.visit(generator.iter)
                self.visit(generator.target)
                self._visit_all(generator.ifs)
            self._visit_all(results)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node.generators, [node.key, node.value])


def _resolves(scope: _Scope, name: str, module: _Scope) -> bool:
    """Whether a read of `name` in `scope` finds a binding (class scopes are visible only to their own body)."""
    current: _Scope | None = scope
    while current is not None:
        if name in current.globals:
            return name in module.bound
        visible = current is scope or current.kind != "class"
        if visible and name in current.bound and name not in current.nonlocals:
            return True
        current = current.parent
    return False


# Calls whose first argument is a file path, and the extension the file gets: `Image.open(image)` wants a
# path even though `image` alone would be a PIL image. '' means: from the variable's name (plain `open`).
_PATH_LOADERS = {
    ("Image", "open"): "jpg", ("cv2", "imread"): "jpg", ("plt", "imread"): "jpg", ("mpimg", "imread"): "jpg",
    ("imageio", "imread"): "jpg", ("librosa", "load"): "wav", ("torchaudio", "load"): "wav", ("sf", "read"): "wav",
    ("soundfile", "read"): "wav", ("wavfile", "read"): "wav", ("pd", "read_csv"): "csv",
    ("pandas", "read_csv"): "csv", ("pd", "read_json"): "json", ("np", "load"): "npy", ("joblib", "load"): "joblib",
    (None, "open"): "", (None, "load_image"): "jpg", (None, "imread"): "jpg", (None, "read_csv"): "csv",
}


def _loader_ext(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return _PATH_LOADERS.get((None, func.id))
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return _PATH_LOADERS.get((func.value.id, func.attr))
    return None


def _free_uses(tree: ast.AST) -> dict[str, set[str]]:
    """Free names in first-use order, each with how it is used: 'call' (`f(...)`), 'attr' (`obj.x`),
    'path:<ext>' (first argument of a file loader, see _PATH_LOADERS) or 'value' (anything else)."""
    roles: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            roles[id(node.func)] = "call"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            roles[id(node.value)] = "attr"
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            ext = _loader_ext(node)
            if ext is not None:
                roles[id(node.args[0])] = f"path:{ext}"
    builder = _ScopeBuilder(roles)
    builder.visit(tree)
    module = builder.module
    for scope in builder.scopes:  # `global x; x = 1` inside a function binds x at module level
        module.bound |= scope.globals & scope.bound
    free = sorted((line, column, name, role) for scope in builder.scopes
                  for line, column, name, role in scope.loads
                  if name not in _BUILTINS and not _resolves(scope, name, module))
    uses: dict[str, set[str]] = {}
    for _, _, name, role in free:
        uses.setdefault(name, set()).add(role)
    return uses


def _parse(code: str) -> ast.Module:
    try:
        return ast.parse(code)
    except ValueError as exc:  # null bytes: a ValueError on 3.11, a SyntaxError on 3.12
        raise SyntaxError(str(exc)) from exc


def free_variables(code: str) -> list[str]:
    """Names the code reads but never binds anywhere (assignment, import, def/class, for/with/except targets,
    comprehension variables, function parameters, global/nonlocal, walrus, match captures, del), excluding
    builtins; in first-use order.

    Scope-aware enough for Gorilla snippets: a name bound anywhere at module level counts as bound (even if
    used before assignment: that is the code's own bug, not a missing input); names bound only inside a
    function are not free inside that function; class bodies are not visible from their methods. Names a
    star import might define stay free (the star import runs after the prelude and rebinds them).
    Raises SyntaxError when the code does not parse.
    """
    return list(_free_uses(_parse(code)))


_IMAGE_EXTS = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")
_AUDIO_EXTS = ("wav", "flac", "mp3", "ogg", "m4a")
_DATA_EXTS = ("csv", "tsv", "json", "jsonl", "txt", "joblib", "pkl", "pickle", "npy")
FILE_EXTENSIONS = frozenset((*_IMAGE_EXTS, *_AUDIO_EXTS, *_DATA_EXTS))
_FILE_RE = re.compile(r"[^\n\r\t]*[^/\\\s]\.(" + "|".join(sorted(FILE_EXTENSIONS)) + r")", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, s3:, data:, C: (a drive) ...


def _safe_relative(path: str) -> bool:
    """A path that stays inside the current directory: not absolute, no '~', no '..', no drive or NUL."""
    if not path or "\0" in path or path.startswith(("/", "\\", "~")) or _SCHEME_RE.match(path):
        return False
    return ".." not in re.split(r"[/\\]", path)


def _is_file_literal(text: str) -> bool:
    if len(text) > 255 or text != text.strip() or not _FILE_RE.fullmatch(text):
        return False
    if text.lower().startswith("www.") or any(c in text for c in "*?[]{}%"):  # URLs, globs, format templates
        return False
    return _safe_relative(text) and os.path.basename(text).split(".")[0] != ""


def _file_literals(tree: ast.AST) -> list[str]:
    in_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = sorted((node.lineno, node.col_offset, node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)
                   and id(node) not in in_fstring and _is_file_literal(node.value))
    return list(dict.fromkeys(value for _, _, value in found))


def file_literals(code: str) -> list[str]:
    """Relative file paths written as string literals (with a known data-file extension: images png jpg jpeg
    bmp gif webp tif tiff; audio wav flac mp3 ogg m4a; csv tsv json jsonl txt; joblib pkl pickle; npy) that are
    not URLs, in first-use order.

    Absolute paths and paths with '..' are ignored (we only ever write inside the sandbox directory), and so
    are globs, format templates ('frame_{}.png', 'img_%d.png') and the pieces of f-strings: none of them names
    one file. Raises SyntaxError when the code does not parse.
    """
    return _file_literals(_parse(code))


# ------------------------------------------------------------------------------------------------------------
# Kinds of free variables, from their names (the table is in the module docstring).

_MODULE_ALIASES = frozenset({
    "np", "pd", "torch", "tf", "plt", "nn", "os", "sys", "json", "cv2", "transformers", "requests", "sf",
    "librosa", "joblib", "sklearn", "io", "re", "math", "random", "time", "datetime", "scipy", "torchaudio",
    "torchvision", "transforms", "datasets", "sns", "tqdm", "glob", "shutil", "pickle", "csv", "wave",
    "base64", "urllib", "itertools", "collections", "functools", "keras", "jax", "jnp", "optim",
    "tokenizers", "diffusers", "sentence_transformers", "gym", "st", "gr", "ipd", "np_", "mpimg", "skimage",
    "imageio", "PIL", "tfhub", "hub", "hf_hub", "huggingface_hub", "accelerate", "peft", "onnxruntime", "ort",
    "timm", "spacy", "nltk", "yaml", "logging", "argparse", "pathlib", "typing", "np_utils", "cuda", "display",
})
_MODEL_ID_TOKENS = frozenset({"checkpoint", "ckpt", "repo", "pretrained", "hub"})
_OBJECT_TOKENS = frozenset({
    # things the snippet should have built: models, pipelines and friends
    "model", "models", "tokenizer", "processor", "pipeline", "pipe", "classifier", "extractor", "generator",
    "encoder", "decoder", "vocoder", "nlp", "clf", "regressor", "detector", "segmenter", "recognizer",
    "summarizer", "translator", "unmasker", "vectorizer", "scaler", "estimator", "agent", "env", "session",
    "client", "trainer", "predictor", "net", "network", "learner", "transcriber", "captioner", "embedder",
    "retriever", "reader", "parser", "optimizer", "scheduler", "chatbot", "bot", "app", "api", "config",
    "configuration", "feature", "ner", "qa", "asr", "tts", "transform", "collator", "loader", "dataloader",
    "dataset", "module", "layer", "head", "backbone", "criterion", "loss", "metric", "explainer", "sampler",
    # and what it should have computed
    "output", "outputs", "result", "results", "prediction", "predictions", "pred", "preds", "logits", "probs",
    "probabilities", "embeddings", "embedding", "states", "state", "ids", "encoding", "encodings", "encoded",
    "tokenized", "response", "generated", "outs", "out", "mask_logits", "attention", "weights", "params",
    "inputs",
})
_GENERIC_TOKENS = frozenset({
    "input", "data", "list", "lst", "batch", "array", "arr", "tensor", "tensors", "raw", "bytes",
    "obj", "object", "pil", "np", "rgb", "bgr", "str", "en", "fr", "de", "es", "zh", "orig", "original", "new",
    "local", "processed", "resized", "loaded", "example", "sample", "test", "my", "your", "the", "in", "a", "b",
    "c", "one", "two", "first", "second", "single", "user", "given", "some", "dummy", "demo",
})
_FEATURE_MODIFIERS = _GENERIC_TOKENS | {"selected", "numeric", "numerical", "categorical", "feature", "column",
                                         "tabular", "x"}
_PLURALIZERS = frozenset({"list", "lst", "batch"})
_EXT_HINTS: dict[str, str] = {
    **dict.fromkeys(("image", "images", "img", "imgs", "photo", "photos", "picture", "pictures", "pic", "pics",
                     "frame", "frames", "screenshot", "mask", "jpg", "jpeg", "png", "thumbnail"), "jpg"),
    **dict.fromkeys(("audio", "audios", "speech", "sound", "voice", "wav", "waveform", "recording", "music",
                     "song", "utterance", "signal", "mp3", "flac"), "wav"),
    **dict.fromkeys(("video", "videos", "clip", "movie", "mp4"), "mp4"),
    **dict.fromkeys(("csv", "table", "data", "df", "dataframe", "dataset", "tabular", "spreadsheet"), "csv"),
    **dict.fromkeys(("json", "config", "configuration", "settings"), "json"),
    **dict.fromkeys(("model", "weights", "joblib", "pkl", "pickle", "estimator", "clf", "classifier"), "joblib"),
    **dict.fromkeys(("text", "txt", "document", "doc", "transcript", "article", "book", "corpus"), "txt"),
    "npy": "npy", "tsv": "tsv", "jsonl": "jsonl",
}
_FUSED = {("file", "name"): "filename", ("file", "path"): "filepath", ("data", "frame"): "dataframe",
          ("sample", "rate"): "samplingrate", ("sampling", "rate"): "samplingrate", ("top", "k"): "topk",
          ("top", "p"): "topp", ("class", "names"): "labels", ("label", "names"): "labels",
          ("class", "labels"): "labels", ("frame", "rate"): "fps"}
_KINDS: dict[str, str] = {
    **dict.fromkeys(("url", "link", "uri", "href", "endpoint"), "url"),
    **dict.fromkeys(("urls", "links", "uris"), "urls"),
    **dict.fromkeys(("path", "file", "filename", "filepath", "fname", "fn"), "file"),
    **dict.fromkeys(("paths", "files", "filenames", "filepaths"), "files"),
    **dict.fromkeys(("dir", "directory", "folder", "dirname"), "dir"),
    **dict.fromkeys(("image", "img", "photo", "picture", "pic", "frame", "screenshot", "mask", "thumbnail",
                     "selfie", "sketch", "im"), "image"),
    **dict.fromkeys(("images", "imgs", "photos", "pictures", "pics", "frames", "screenshots", "masks"), "images"),
    **dict.fromkeys(("audio", "speech", "waveform", "wav", "sound", "signal", "samples", "voice", "recording",
                     "utterance", "music", "song", "wave"), "audio"),
    **dict.fromkeys(("audios", "wavs", "waveforms", "recordings", "sounds", "signals"), "audios"),
    **dict.fromkeys(("video", "clip", "movie", "footage", "videos"), "video"),
    **dict.fromkeys(("table", "df", "dataframe", "tbl"), "table"),
    "csv": "data", "features": "features", "columns": "features", "cols": "features",
    **dict.fromkeys(("labels", "classes", "categories", "candidates", "options", "choices", "tags", "topics",
                     "intents", "keywords"), "labels"),
    **dict.fromkeys(("k", "n", "steps", "step", "seed", "epochs", "epoch", "count", "size", "index", "idx", "id",
                     "topk", "beams", "iterations", "iters", "limit", "fps", "num", "number", "dim"), "int"),
    **dict.fromkeys(("length", "len"), "length"),
    **dict.fromkeys(("width", "height", "resolution"), "pixels"),
    **dict.fromkeys(("threshold", "temperature", "topp", "rate", "score", "alpha", "scale", "strength", "prob",
                     "probability", "confidence", "dropout", "lr", "ratio", "penalty", "margin"), "float"),
    **dict.fromkeys(("lang", "language", "locale"), "language"),
    "device": "device", "samplingrate": "sampling_rate", "sr": "sampling_rate", "fs": "sampling_rate",
    **dict.fromkeys(("texts", "sentences", "documents", "docs", "queries", "questions", "passages", "reviews",
                     "paragraphs", "articles", "prompts", "captions", "messages", "comments", "tweets",
                     "summaries", "answers", "contexts", "titles", "descriptions", "lines", "words", "phrases",
                     "corpus", "strings", "examples", "sequences", "claims", "hypotheses",
                     "premises", "headlines", "emails", "posts", "stories", "dialogs", "turns"), "texts"),
    **dict.fromkeys(("question", "query", "q"), "question"),
    **dict.fromkeys(("context", "passage", "document", "doc", "article", "paragraph", "story", "essay",
                     "transcript", "body"), "context"),
    **dict.fromkeys(("code", "snippet", "function", "program"), "code"),
    **dict.fromkeys(("text", "sentence", "prompt", "review", "caption", "description", "message", "content",
                     "title", "answer", "summary", "comment", "tweet", "string", "phrase", "word", "instruction",
                     "claim", "premise", "hypothesis", "statement", "dialog", "dialogue", "conversation", "chat",
                     "email", "note", "post", "headline", "label", "keyword", "sequence", "translation", "line",
                     "name", "prefix", "suffix", "template"), "text"),
}
_PLURAL = {"text": "texts", "question": "texts", "context": "texts", "image": "images", "audio": "audios",
           "url": "urls", "file": "files"}
_GENERIC_DEFAULTS = {"data": "data", "input": "text", "list": "texts", "lst": "texts", "str": "text"}
_QUANTIFIERS = frozenset({"num", "n", "max", "min", "number", "total", "nb", "no"})
_LENGTHS = frozenset({"length", "len", "tokens", "words", "chars", "characters", "len_"})


def _tokens(name: str) -> list[str]:
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name) if not w.isdigit()]
    fused: list[str] = []
    for word in words:
        if fused and (fused[-1], word) in _FUSED:
            fused[-1] = _FUSED[fused[-1], word]
        else:
            fused.append(word)
    return fused


def _looks_like_class_or_module(name: str) -> bool:
    camel = name[0].isupper() and "_" not in name and any(c.islower() for c in name)
    single_capital = len(name) == 1 and name.isupper() and name != "X"
    return camel or single_capital or name in _MODULE_ALIASES


def _ext_from(tokens: Iterable[str], default: str) -> str:
    for token in tokens:
        if token in _EXT_HINTS:
            return _EXT_HINTS[token]
    return default


def variable_kind(name: str) -> str | None:
    """The kind of dummy `install` builds for a free variable called `name`, or None to leave it unbound.

    Kinds: text, question, context, code, masked_text, texts, labels, features, targets, language, device, int,
    length, pixels, float, sampling_rate, image, images, audio, audios, video, table, data, url:<ext>, urls:<ext>,
    file:<ext>, files:<ext>, dir:<ext> (ext may be empty), and 'fallback' (a sentence, bound only when the
    code uses the name as a plain value). See the module docstring for the table and its order.
    """
    if (name.startswith("__") and name.endswith("__")) or _looks_like_class_or_module(name):
        return None
    if name == "X" or name.startswith("X_"):
        return "data"
    if name in ("y", "Y") or name.startswith(("y_", "Y_")):
        return "targets"
    tokens = _tokens(name)
    if not tokens:
        return "fallback"
    token_set = set(tokens)
    if token_set & _MODEL_ID_TOKENS or (token_set & {"model", "dataset"} and token_set & {"name", "id", "type"}):
        return None
    if tokens[0] in _QUANTIFIERS and len(tokens) > 1:
        return "length" if tokens[-1] in _LENGTHS else "int"
    if tokens[0] in ("url", "path", "file", "filename", "filepath") and len(tokens) > 2 \
            and tokens[1] in ("to", "of", "for"):  # path_to_image, url_of_audio
        tokens = [*tokens[2:], tokens[0]]
    plural = False
    for position in range(len(tokens) - 1, -1, -1):
        token = tokens[position]
        if token in _GENERIC_TOKENS:
            plural = plural or token in _PLURALIZERS
            continue
        if token in _OBJECT_TOKENS:
            return None
        others = tokens[:position] + tokens[position + 1:]
        if token == "name":  # image_name is a file name, dataset_name just a string
            hinted = [t for t in others if t in _EXT_HINTS]
            return f"file:{_EXT_HINTS[hinted[0]]}" if hinted else "fallback"
        kind = _KINDS.get(token)
        if kind is None:  # transaction_data is still data, user_text_list still texts
            return _GENERIC_DEFAULTS.get(tokens[-1], "fallback")
        if kind == "features" and not set(others) <= _FEATURE_MODIFIERS:  # image_features: a model output
            return None
        if "masked" in token_set and kind in ("text", "context", "fallback"):
            return "masked_text"
        if kind in ("image", "images") and token_set & {"video", "videos", "clip", "movie"}:
            return "video"
        if plural:
            kind = _PLURAL.get(kind, kind)
        if kind in ("url", "urls"):
            return f"{kind}:{_ext_from(others, 'jpg')}"
        if kind in ("file", "files"):
            return f"{kind}:{_ext_from(others, 'txt')}"
        if kind == "dir":
            return f"dir:{_ext_from(others, '')}"
        return kind
    return _GENERIC_DEFAULTS.get(tokens[-1], "fallback")


# Kinds whose dummy is a value that a file loader could not take: a loader use turns them into a file.
_VALUE_KINDS = frozenset({"image", "audio", "video", "table", "data", "text", "question", "context", "code",
                          "masked_text", "fallback"})


def binding_spec(code: str) -> dict[str, Any]:
    """The JSON-able spec `bind` passes to `install`: typed free variables, file literals, and the web fixture.

    A name the code calls is a missing function, not an input, so it stays unbound; a fallback-kind name used
    as an object (`obj.attr`) stays unbound too, since a string there would turn the code's NameError into an
    AttributeError that blames the API. A value-kind name passed to a file loader (`Image.open(image)`,
    `librosa.load(audio)`, `pd.read_csv(data)`, `open(text)`) becomes a file of the loader's type instead.
    A path variable passed to a typed loader takes the loader's type (`Image.open(file_path)` gets a .jpg).
    Raises SyntaxError when the code does not parse.
    """
    return _spec(_parse(code))


def _spec(tree: ast.Module) -> dict[str, Any]:
    variables: dict[str, str] = {}
    for name, roles in _free_uses(tree).items():
        kind = variable_kind(name)
        if kind is None or "call" in roles or (kind == "fallback" and "attr" in roles):
            continue
        loader_exts = sorted(role.partition(":")[2] for role in roles if role.startswith("path:"))
        if loader_exts and kind in _VALUE_KINDS:
            kind = f"file:{loader_exts[-1] or _ext_from(_tokens(name), 'txt')}"
        elif loader_exts and loader_exts[-1] and kind.startswith("file:"):
            kind = f"file:{loader_exts[-1]}"
        variables[name] = kind
    return {"variables": variables, "files": _file_literals(tree), "web": True}


def _prelude_line(tree: ast.Module) -> int:
    """The 0-based line before which the prelude goes: after the docstring and `from __future__` imports,
    which Python requires first; usually line 0."""
    last_future = 0
    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            last_future = stmt.end_lineno or stmt.lineno
        elif not (index == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                  and isinstance(stmt.value.value, str)):
            break
    return last_future


def bind(code: str) -> str:
    """The code with a one-line prelude that (1) installs the offline web fixture, (2) writes a dummy file for
    every file literal and (3) assigns a typed dummy to every free variable (see `binding_spec`).

    Code that does not compile is returned unchanged, so the sandbox reports the code's own syntax error at its
    own line. Otherwise the prelude is one line, so errors in the snippet report line numbers shifted by exactly
    one (it goes after `from __future__` imports, which must stay first; usually it is line 1).
    """
    try:
        tree = _parse(code)
        compile(tree, "<snippet>", "exec")  # symbol-table errors too ('return' outside function, ...)
        spec = _spec(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    prelude = f"__import__('apirl.execution.binding', fromlist=['install']).install(globals(), {spec!r})\n"
    at = _prelude_line(tree)
    if at == 0:
        return prelude + code
    lines = re.split(r"(?<=\n)", code)
    head = "".join(lines[:at])
    if not head.endswith("\n"):
        head += "\n"
    return head + prelude + "".join(lines[at:])


# ------------------------------------------------------------------------------------------------------------
# Run time: dummy values, dummy files, and the offline web fixture.

SENTENCE = "I really enjoyed this movie, the acting was wonderful."
QUESTION = "What is the capital of France?"
CONTEXT = ("Paris is the capital and largest city of France. It is known for the Eiffel Tower. "
           "The city has a population of about two million people.")
CODE = "def add(a, b):\n    return a + b\n"
TEXTS = ["I love this product, it works great.", "The weather is terrible today."]
LABELS = ["sports", "politics", "technology"]
FEATURES = ["feat_0", "feat_1", "feat_2", "feat_3"]
SIZE = 64
SAMPLING_RATE = 16000
_CSV_ROWS = [(0.1, 1.0, 2.5, 3.0, "the first row"), (0.4, 1.5, 2.0, 3.5, "the second row"),
             (0.7, 0.5, 1.5, 2.0, "the third row"), (1.0, 2.0, 0.5, 1.0, "the fourth row")]
_HTML = (b"<!DOCTYPE html><html><head><title>Example</title></head>"
         b"<body><p>" + SENTENCE.encode() + b"</p></body></html>")
_MP4_STUB = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 40


class PermissiveEstimator:
    """A scikit-learn-like estimator pickled into dummy .joblib/.pkl files: it accepts any 2-D input, so a
    snippet's `joblib.load(...)` and `model.predict(data)` are judged, not the (absent) trained model.
    Unknown attributes still raise AttributeError: a wrong method name is the code's fault."""

    classes_ = (0, 1)

    @staticmethod
    def _rows(X: Any) -> int:
        try:
            return len(X)
        except TypeError:
            return 1

    def fit(self, X: Any, y: Any = None, **kwargs: Any) -> PermissiveEstimator:
        return self

    def predict(self, X: Any) -> Any:
        return _zeros((self._rows(X),))

    def predict_proba(self, X: Any) -> Any:
        rows = self._rows(X)
        try:
            import numpy as np
        except ImportError:
            return [[0.5, 0.5] for _ in range(rows)]
        return np.full((rows, 2), 0.5)

    def decision_function(self, X: Any) -> Any:
        return _zeros((self._rows(X),))

    def transform(self, X: Any) -> Any:
        return X

    def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        return X

    def score(self, X: Any, y: Any = None) -> float:
        return 0.0

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}


def _zeros(shape: tuple[int, ...]) -> Any:
    try:
        import numpy as np
    except ImportError:
        return [0.0] * shape[0]
    return np.zeros(shape)


@cache
def _gradient_rgb(size: int = SIZE) -> bytes:
    """Raw RGB bytes of a size x size gradient: not constant, so normalizers and detectors see some signal."""
    return bytes(v for y in range(size) for x in range(size)
                 for v in ((x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256))


def _png_bytes(width: int, height: int, rgb: bytes) -> bytes:
    """A minimal PNG (8-bit RGB, no filter) for when PIL is missing."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[row * stride:(row + 1) * stride] for row in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _pil_image() -> Any:
    from PIL import Image
    return Image.frombytes("RGB", (SIZE, SIZE), _gradient_rgb())


_PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "gif": "GIF", "webp": "WEBP",
                "tif": "TIFF", "tiff": "TIFF"}


def _image_bytes(ext: str) -> bytes:
    with contextlib.suppress(Exception):  # no PIL, or no codec for this format: a PNG still opens anywhere
        buffer = io.BytesIO()
        _pil_image().save(buffer, format=_PIL_FORMATS.get(ext, "PNG"))
        return buffer.getvalue()
    return _png_bytes(SIZE, SIZE, _gradient_rgb())


def _sine() -> list[float]:
    return [0.3 * math.sin(2 * math.pi * 440 * i / SAMPLING_RATE) for i in range(SAMPLING_RATE)]


def _wav_bytes() -> bytes:
    samples = array("h", (int(v * 32767) for v in _sine()))
    if sys.byteorder == "big":
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLING_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def _audio_bytes(ext: str) -> bytes:
    if ext in ("flac", "ogg"):
        with contextlib.suppress(Exception):
            import numpy as np
            import soundfile

            buffer = io.BytesIO()
            soundfile.write(buffer, np.asarray(_sine(), dtype=np.float32), SAMPLING_RATE, format=ext.upper())
            return buffer.getvalue()
    return _wav_bytes()


def _csv_text(sep: str) -> str:
    lines = [sep.join([*FEATURES, "text"])]
    lines += [sep.join([*(str(v) for v in row[:4]), str(row[4])]) for row in _CSV_ROWS]
    return "\n".join(lines) + "\n"


def _file_bytes(path: str) -> bytes | None:
    """The dummy content of a file called `path`, from its extension; None when none can be made."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if ext in _IMAGE_EXTS:
        return _image_bytes(ext)
    if ext in _AUDIO_EXTS:
        return _audio_bytes(ext)
    if ext in ("csv", "tsv"):
        return _csv_text("," if ext == "csv" else "\t").encode()
    if ext == "json":
        payload: dict[str, Any] = ({"features": FEATURES} if "config" in os.path.basename(path).lower()
                                   else {"text": SENTENCE})
        return json.dumps(payload).encode()
    if ext == "jsonl":
        return "".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode()
    if ext == "txt":
        return "\n".join([SENTENCE, *TEXTS]).encode() + b"\n"
    if ext in ("joblib", "pkl", "pickle"):
        return pickle.dumps(PermissiveEstimator())
    if ext == "npy":
        try:
            import numpy as np
        except ImportError:
            return None
        buffer = io.BytesIO()
        np.save(buffer, np.arange(16, dtype=np.float32).reshape(4, 4))
        return buffer.getvalue()
    if ext in ("html", "htm"):
        return _HTML
    if ext in ("mp4", "avi", "mov", "mkv", "webm"):
        return _MP4_STUB
    return None


def write_dummy_file(path: str) -> bool:
    """Write the dummy for `path` (relative, inside the current directory) unless it exists; True if written."""
    if not _safe_relative(path) or os.path.lexists(path):
        return False
    content = _file_bytes(path)
    if content is None:
        return False
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "xb") as out:
        out.write(content)
    return True


def _audio_array() -> Any:
    try:
        import numpy as np
    except ImportError:
        return _sine()
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLING_RATE) / SAMPLING_RATE)).astype(np.float32)


def _image_value(name: str) -> Any:
    try:
        return _pil_image()
    except ImportError:  # the brief's degradation: the path of a PNG we write ourselves
        path = f"{name}.png"
        write_dummy_file(path)
        return path


def _video_value() -> Any:
    try:
        import numpy as np
    except ImportError:
        return [_image_value("video_frame") for _ in range(8)]
    frame = np.frombuffer(_gradient_rgb(), dtype=np.uint8).reshape(SIZE, SIZE, 3)
    return [np.roll(frame, shift, axis=1).copy() for shift in range(8)]


def _table_value() -> Any:
    table = {"name": ["Alice", "Bob", "Carol"], "value": ["10", "20", "30"]}
    try:
        import pandas as pd
    except ImportError:
        return table
    return pd.DataFrame(table)


def _data_value() -> Any:
    rows = [list(row[:4]) for row in _CSV_ROWS]
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=FEATURES)


def _make_dir(name: str, ext: str) -> str:
    os.makedirs(name, exist_ok=True)
    if ext:
        for index in range(2):
            write_dummy_file(os.path.join(name, f"sample_{index}.{ext}"))
    return name


_SIMPLE: dict[str, Callable[[], Any]] = {
    "text": lambda: SENTENCE, "fallback": lambda: SENTENCE, "question": lambda: QUESTION,
    "context": lambda: CONTEXT, "code": lambda: CODE, "masked_text": lambda: "The capital of France is [MASK].",
    "texts": lambda: list(TEXTS), "labels": lambda: list(LABELS), "features": lambda: list(FEATURES),
    "targets": lambda: [0, 1, 0, 1],
    "language": lambda: "en", "device": lambda: "cpu", "int": lambda: 2, "length": lambda: 16,
    "pixels": lambda: SIZE, "float": lambda: 0.5, "sampling_rate": lambda: SAMPLING_RATE,
    "audio": _audio_array, "audios": lambda: [_audio_array(), _audio_array()], "video": _video_value,
    "table": _table_value, "data": _data_value,
}


def make_dummy(kind: str, name: str) -> Any:
    """The value of a free variable `name` of `kind` (see `variable_kind`); may write files into cwd."""
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "image":
        return _image_value(name)
    if kind == "images":
        return [_image_value(f"{name}_{i}") for i in range(2)]
    base, _, ext = kind.partition(":")
    if base == "url":
        return f"https://example.com/{_url_stem(ext)}.{ext or 'jpg'}"
    if base == "urls":
        return [f"https://example.com/{_url_stem(ext)}_{i}.{ext or 'jpg'}" for i in range(2)]
    if base == "file":
        path = f"{name}.{ext or 'txt'}"
        write_dummy_file(path)
        return path
    if base == "files":
        paths = [f"{name}_{i}.{ext or 'txt'}" for i in range(2)]
        for path in paths:
            write_dummy_file(path)
        return paths
    if base == "dir":
        return _make_dir(name, ext)
    raise ValueError(f"unknown dummy kind {kind!r}")


def _url_stem(ext: str) -> str:
    return {"jpg": "image", "wav": "audio", "mp4": "video", "csv": "data", "json": "data", "txt": "text",
            "joblib": "model"}.get(ext, "file")


_CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp",
                  "gif": "image/gif", "webp": "image/webp", "tif": "image/tiff", "tiff": "image/tiff",
                  "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg",
                  "m4a": "audio/mp4", "csv": "text/csv", "tsv": "text/tab-separated-values",
                  "json": "application/json", "jsonl": "application/jsonl", "txt": "text/plain; charset=utf-8",
                  "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "mp4": "video/mp4",
                  "npy": "application/octet-stream", "joblib": "application/octet-stream",
                  "pkl": "application/octet-stream", "pickle": "application/octet-stream"}
_IMAGE_WORDS = re.compile(r"image|img|photo|picture|pic|frame|avatar|thumbnail", re.IGNORECASE)
_AUDIO_WORDS = re.compile(r"audio|speech|sound|voice|wav|music|song", re.IGNORECASE)


def web_payload(url: str) -> tuple[bytes, str]:
    """(body, content type) the offline web fixture serves for `url`, from the extension of its path."""
    parts = urlsplit(url)
    last = parts.path.rsplit("/", 1)[-1]
    ext = last.rsplit(".", 1)[-1].lower() if "." in last else ""
    if ext in _CONTENT_TYPES:
        body = _file_bytes(last) or b""
        return body, _CONTENT_TYPES[ext]
    where = parts.netloc + parts.path
    if _IMAGE_WORDS.search(where):
        return _image_bytes("png"), "image/png"
    if _AUDIO_WORDS.search(where):
        return _wav_bytes(), "audio/wav"
    if re.search(r"(^|[./-])api([./-]|$)", where):
        return b"{}", "application/json"
    return _HTML, "text/html; charset=utf-8"


def _is_web(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _patch(owner: Any, attr: str, replacement: Callable[..., Any], undo: list[Callable[[], None]]) -> None:
    original = getattr(owner, attr)
    if getattr(original, "_apirl_offline", False):  # already installed (install ran twice): keep the first
        return
    replacement._apirl_offline = True  # type: ignore[attr-defined]
    setattr(owner, attr, replacement)

    def restore() -> None:
        if getattr(owner, attr) is replacement:
            setattr(owner, attr, original)

    undo.append(restore)


def _patch_requests(undo: list[Callable[[], None]]) -> None:
    try:
        import requests.adapters
        import requests.models
        import requests.structures
    except ImportError:
        return
    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        agent = str(request.headers.get("User-Agent", ""))
        if "hf_hub/" in agent or not _is_web(request.url or ""):  # the hub has its own offline story
            return original(self, request, *args, **kwargs)
        body, content_type = web_payload(request.url)
        response = requests.models.Response()
        response.status_code, response.reason, response.url, response.request = 200, "OK", request.url, request
        response.headers = requests.structures.CaseInsensitiveDict(
            {"Content-Type": content_type, "Content-Length": str(len(body))})
        if request.method == "HEAD":
            body = b""
        response.encoding = "utf-8" if content_type.startswith(("text/", "application/json")) else None
        response.raw = io.BytesIO(body)  # Image.open(requests.get(url, stream=True).raw) reads this
        response._content, response._content_consumed = body, True
        response.connection = self
        return response

    _patch(requests.adapters.HTTPAdapter, "send", send, undo)


def _patch_urllib(undo: list[Callable[[], None]]) -> None:
    import urllib.request
    import urllib.response

    original = urllib.request.urlopen

    def urlopen(url: Any, *args: Any, **kwargs: Any) -> Any:
        full = url.full_url if isinstance(url, urllib.request.Request) else str(url)
        if not _is_web(full):
            return original(url, *args, **kwargs)
        body, content_type = web_payload(full)
        headers = email.message.Message()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        return urllib.response.addinfourl(io.BytesIO(body), headers, full, 200)

    _patch(urllib.request, "urlopen", urlopen, undo)


def install_web_fixture() -> Callable[[], None]:
    """Patch requests (if importable) and urllib to serve `web_payload`; returns a function that undoes it."""
    undo: list[Callable[[], None]] = []
    _patch_requests(undo)
    _patch_urllib(undo)

    def restore() -> None:
        for step in reversed(undo):
            step()
        undo.clear()

    return restore


def _nothing() -> None:
    """What there is to undo when the web fixture was not installed."""


def install(namespace: dict[str, Any], spec: dict[str, Any]) -> Callable[[], None]:
    """Bind a snippet's inputs at run time (the one-line prelude of `bind` calls this with `globals()`).

    Writes the dummy files of `spec["files"]` into the current directory, assigns `spec["variables"]`
    ({name: kind}) in `namespace` (never replacing a name already there) and, when `spec["web"]`, installs the
    offline web fixture. Never raises: a dummy that cannot be built is skipped, and the snippet then fails on
    its own. Returns a function that undoes the web fixture (the sandbox does not need it: each snippet runs in
    a child process that exits; tests do).
    """
    restore: Callable[[], None] = _nothing
    if spec.get("web", True):
        with contextlib.suppress(Exception):
            restore = install_web_fixture()
    for path in spec.get("files", ()):
        with contextlib.suppress(Exception):
            write_dummy_file(str(path))
    for name, kind in dict(spec.get("variables", {})).items():
        if name not in namespace:
            with contextlib.suppress(Exception):
                namespace[name] = make_dummy(str(kind), str(name))
    return restore
