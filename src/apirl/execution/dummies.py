"""What runs inside the sandbox's child in bound mode: the dummy values, dummy files and offline web fixture that
the one-line prelude of `apirl.execution.binding.bind` installs (`install(globals(), spec)`). Imported by every
worker before it forks (`executor.PRELOAD`); it imports optional libraries lazily and degrades when one is
missing (no PIL: an image is the path of a .png written by a tiny zlib PNG encoder; no numpy: plain lists).

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
"""

from __future__ import annotations

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
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from apirl.execution.binding import AUDIO_EXTS, IMAGE_EXTS, safe_relative

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
    if ext in IMAGE_EXTS:
        return _image_bytes(ext)
    if ext in AUDIO_EXTS:
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
    if not safe_relative(path) or os.path.lexists(path):
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
