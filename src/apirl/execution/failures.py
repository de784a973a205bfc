"""Which failure class a snippet's outcome is: the statuses of the executability harness and `classify`, a pure
map from an exception seen in the sandbox's child (its type, message, MRO, errno, missing module) to one of them.
The harness's own gaps (a library we know but do not install) are told apart from the model's mistakes here."""

from __future__ import annotations

import errno as errno_mod
import re
from collections.abc import Collection, Sequence

STATUSES = ("ok", "syntax_error", "import_error", "unknown_model_id", "unknown_attribute", "bad_arguments",
            "runtime_error", "timeout", "resource_limit", "network", "unsupported_library", "early_exit")

# Libraries Gorilla-style answers import that we know about but do not install: a ModuleNotFoundError for one
# of them is the harness's gap, not the model's mistake.
DEFAULT_UNSUPPORTED = frozenset({
    "torch", "transformers", "huggingface_hub", "tensorflow", "keras", "jax", "flax", "paddle", "mxnet",
    "onnxruntime", "sentencepiece", "timm", "diffusers", "datasets", "soundfile", "librosa", "torchaudio",
    "torchvision", "cv2", "PIL", "sklearn", "pandas", "scipy", "matplotlib", "fairseq", "espnet",
    "espnet_model_zoo", "speechbrain", "asteroid", "pyannote", "sentence_transformers", "joblib", "requests",
    "stable_baselines3", "rl_zoo3", "huggingface_sb3", "tensorflow_hub", "flair", "ultralytics", "ultralyticsplus",
    "yolov5", "sahi", "controlnet_aux", "decord", "pydub", "huggingsound", "optimum", "modelscope", "openai",
    "mlagents", "TTS", "nemo", "whisper", "audiocraft", "skops", "autogluon", "xgboost", "lightgbm", "catboost",
    "tensorflow_io", "accelerate", "peft", "bitsandbytes", "einops", "safetensors", "tokenizers", "gradio",
})

_MODEL_ID_PATTERNS = ("is not a local folder and is not a valid model identifier", "Repository Not Found",
                      "couldn't find them in the cached files", "couldn't find it in the cached files",
                      "Cannot find the requested files in the local cache")
_MODEL_ID_TYPES = {"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError",
                   "LocalEntryNotFoundError"}
_BAD_ARGUMENTS_RE = re.compile(r"unexpected keyword argument|missing \d+ required|"
                               r"required positional argument|"
                               r"required keyword-only argument|takes \d+ positional argument|"
                               r"takes (no|exactly \d+|at most \d+|at least \d+) (positional )?arguments?|"
                               r"got multiple values for (keyword )?argument|positional arguments? but \d+|"
                               r"got an unexpected|got some positional-only arguments passed as keyword")
_NETWORK_ERRNOS = {errno_mod.ENETUNREACH, errno_mod.ENETDOWN, errno_mod.EHOSTUNREACH, errno_mod.ECONNREFUSED,
                   errno_mod.ECONNRESET, errno_mod.ECONNABORTED,
                   errno_mod.EAFNOSUPPORT}  # what seccomp answers for a socket family the sandbox refuses
_NETWORK_PATTERNS = ("Network is unreachable", "Name or service not known",
                     "Temporary failure in name resolution", "No address associated with hostname",
                     "Failed to establish a new connection")
_RESOURCE_ERRNOS = {errno_mod.EAGAIN, errno_mod.EFBIG, errno_mod.EMFILE, errno_mod.ENFILE, errno_mod.ENOMEM,
                    errno_mod.ENOSPC, errno_mod.EDQUOT}
_RESOURCE_PATTERNS = ("can't start new thread", "Resource temporarily unavailable", "Cannot allocate memory",
                      "Too many open files", "File too large")


def classify(error_type: str, message: str, *, mro: Sequence[str] = (), errno: int | None = None,
             module_name: str | None = None, unsupported: Collection[str] = DEFAULT_UNSUPPORTED,
             missed: Collection[str] = ()) -> str:
    """The status of a snippet that raised `error_type(message)`.

    `mro` is the names of the exception's classes (so library subclasses of OSError or ImportError are
    recognized without importing the library here), `module_name` the `.name` of an ImportError. Order
    matters: the most specific diagnosis that helps the model fix its call wins.

    `unsupported_library` is the harness's gap, so the harness decides it, not the exception: the module must be
    one we know of and do not have (`unsupported`, checked against what is installed) and one that the import
    system really failed to find while the snippet ran (`missed`, top-level names). A snippet that raises
    ModuleNotFoundError(name='tensorflow') itself gets `import_error`.
    """
    names = {error_type, *mro}
    if names & {"SyntaxError", "IndentationError", "TabError"}:
        return "syntax_error"
    if "ModuleNotFoundError" in names:
        top = (module_name or "").split(".")[0]
        return "unsupported_library" if top and top in unsupported and top in missed else "import_error"
    if "ImportError" in names:
        return "unknown_attribute" if "cannot import name" in message else "import_error"
    if names & _MODEL_ID_TYPES or any(p in message for p in _MODEL_ID_PATTERNS):
        return "unknown_model_id"
    if "NetworkBlocked" in names or "gaierror" in names or "OfflineModeIsEnabled" in names:
        return "network"
    if "MemoryError" in names:
        return "resource_limit"
    if ("OSError" in names and errno in _NETWORK_ERRNOS) or any(p in message for p in _NETWORK_PATTERNS):
        return "network"
    if "OSError" in names and errno in _RESOURCE_ERRNOS:
        return "resource_limit"
    if ("OSError" in names or "RuntimeError" in names) and any(p in message for p in _RESOURCE_PATTERNS):
        return "resource_limit"
    if "AttributeError" in names:
        return "unknown_attribute"
    if "TypeError" in names and _BAD_ARGUMENTS_RE.search(message):
        return "bad_arguments"
    return "runtime_error"
