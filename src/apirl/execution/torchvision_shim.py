"""Let torchvision's Python modules import beside the CPU build of torch.

PyPI's torchvision wheel (0.28.0 for torch 2.13.0) links its C++ operators (nms, roi_align, deform_conv2d...)
against torch's CUDA libraries, which the CPU build of torch does not have, so `torchvision/_C.so` does not load.
torchvision is built to run without those operators (`torchvision.extension._has_ops()`), and everything that does
not call them works: transforms, datasets, the classification and segmentation models. But its
`_meta_registrations` registers fake kernels for `torchvision::nms` and `torchvision::qnms` without checking,
which fails when the operator was never defined ("operator torchvision::nms does not exist") and makes
`import torchvision` fail.

`install()` defines those two operators' schemas (no kernel) when the extension cannot load, then imports
torchvision (and timm, which builds on it), so the import succeeds. A snippet that calls one of the C++ operators
still fails, from torchvision itself, with "Couldn't load custom C++ ops": the harness's gap
(`unsupported_library`), not the snippet's error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path

# The schemas that torchvision 0.28's `_meta_registrations` needs to exist (as its C++ code declares them).
_SCHEMAS = {"nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
# Kept alive: a torch.library.Library's definitions last as long as the object.
_LIBRARY: list[object] = []
_BUILT_ON_IT = ("timm",)
# What torchvision says when one of its C++ operators is called without them: a gap of this machine.
MISSING_OPS_MESSAGE = "Couldn't load custom C++ ops"


def install() -> bool:
    """Make `import torchvision` work here; True when torchvision (with or without its C++ operators) imports."""
    package = importlib.util.find_spec("torchvision")  # the package's location, without importing it
    if package is None or not package.submodule_search_locations:
        return False
    import torch

    extensions = sorted(Path(package.submodule_search_locations[0]).glob("_C*.so"))
    try:
        if not extensions:
            raise OSError("torchvision has no _C extension")
        torch.ops.load_library(str(extensions[0]))
    except (OSError, RuntimeError):
        library = torch.library.Library("torchvision", "FRAGMENT")
        for name, schema in _SCHEMAS.items():
            if not _defined(torch, f"torchvision::{name}"):
                library.define(schema)
        _LIBRARY.append(library)
    try:
        importlib.import_module("torchvision")
    except Exception:
        return False
    for name in _BUILT_ON_IT:  # imported here too, once per worker (they import torchvision themselves)
        if importlib.util.find_spec(name) is not None:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    return True


def _defined(torch: object, qualname: str) -> bool:
    namespace, _, name = qualname.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), name)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return False
    return True
