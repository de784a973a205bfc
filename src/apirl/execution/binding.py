"""The "bound" execution mode: give a snippet the inputs it assumes, so that only its API usage is judged.

Gorilla-style answers are fragments of a larger program: they read variables they never define
(`result = classifier(text)`), open files that are not there (`Image.open('your_image.jpg')`,
`pd.read_csv('data.csv')`, `joblib.load('model.joblib')`) and fetch example URLs
(`Image.open(requests.get(url, stream=True).raw)`). Run as written ("strict" mode) almost every one fails on
its inputs before it reaches the API call we want to judge. "Bound" mode (the headline executability rate)
prepends ONE line to the snippet:

    __import__('apirl.execution.dummies', fromlist=['install']).install(globals(), {...spec...})

so a traceback's line numbers are the snippet's own shifted by exactly one (the prelude goes after any
`from __future__` imports, which must stay first). `bind` computes the spec statically (a small JSON-able dict:
`{"variables": {name: kind}, "files": [paths], "web": True}`); `install` (`apirl.execution.dummies`) builds the
dummies at run time, in the current directory (the sandbox's fresh temp dir), and never raises: a dummy it
cannot build leaves the name unbound, and the NameError that follows is the snippet's honest outcome.

FREE VARIABLES (`variable_kind`, its token tables below). The name is split into lowercase tokens (snake_case,
camelCase, digits dropped; a few pairs fused: file_name, sample_rate, top_k...). Never bound: dunders, CamelCase
names and module aliases (real import errors), model and dataset identifiers (we never invent a model name),
model objects and computed results (model, pipeline, outputs, logits...), every name the code calls, and a
fallback-kind name used as an object. Otherwise a few whole names have fixed values (device 'cpu', sr 16000,
X / y a numeric frame and its targets, num_* / n_* ints), and else the last token that is not a generic
modifier picks the kind: url, path / file (a file `install` writes, its extension from the other tokens), dir,
image, audio, video, table, data, features, labels, a number, a language, texts, text; anything else gets
the fallback, a short English sentence. A value-kind name passed to a file loader (`Image.open(image)`) gets
a file of the loader's type instead. The values themselves are built in the child (`apirl.execution.dummies`).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable
from typing import Any

from apirl.code_facts import MODULE_ALIASES, free_uses, parse_or_raise

# ------------------------------------------------------------------------------------------------------------
# File literals.

IMAGE_EXTS = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")
AUDIO_EXTS = ("wav", "flac", "mp3", "ogg", "m4a")
_DATA_EXTS = ("csv", "tsv", "json", "jsonl", "txt", "joblib", "pkl", "pickle", "npy")
FILE_EXTENSIONS = frozenset((*IMAGE_EXTS, *AUDIO_EXTS, *_DATA_EXTS))
_FILE_RE = re.compile(r"[^\n\r\t]*[^/\\\s]\.(" + "|".join(sorted(FILE_EXTENSIONS)) + r")", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, s3:, data:, C: (a drive) ...


def safe_relative(path: str) -> bool:
    """A path that stays inside the current directory: not absolute, no '~', no '..', no drive or NUL."""
    if not path or "\0" in path or path.startswith(("/", "\\", "~")) or _SCHEME_RE.match(path):
        return False
    return ".." not in re.split(r"[/\\]", path)


def _is_file_literal(text: str) -> bool:
    if len(text) > 255 or text != text.strip() or not _FILE_RE.fullmatch(text):
        return False
    if text.lower().startswith("www.") or any(c in text for c in "*?[]{}%"):  # URLs, globs, format templates
        return False
    return safe_relative(text) and os.path.basename(text).split(".")[0] != ""


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
    return _file_literals(parse_or_raise(code))


# ------------------------------------------------------------------------------------------------------------
# Kinds of free variables, from their names (the table is in the module docstring).

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
    return camel or single_capital or name in MODULE_ALIASES


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
    return _spec(parse_or_raise(code))


def _spec(tree: ast.Module) -> dict[str, Any]:
    variables: dict[str, str] = {}
    for name, roles in free_uses(tree).items():
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
        tree = parse_or_raise(code)
        compile(tree, "<snippet>", "exec")  # symbol-table errors too ('return' outside function, ...)
        spec = _spec(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    prelude = f"__import__('apirl.execution.dummies', fromlist=['install']).install(globals(), {spec!r})\n"
    at = _prelude_line(tree)
    if at == 0:
        return prelude + code
    lines = re.split(r"(?<=\n)", code)
    head = "".join(lines[:at])
    if not head.endswith("\n"):
        head += "\n"
    return head + prelude + "".join(lines[at:])


