"""Let torchvision's Python modules import beside the CPU build of torch.

PyPI's torchvision wheel (0.28.0 for torch 2.13.0) links its C++ operators (nms, roi_align, deform_conv2d...)
against torch's CUDA libraries, which the CPU build of torch does not have, so `torchvision/_C.so` does not load.
torchvision is built to run without those operators (`torchvision.extension._has_ops()`), and everything that does
not call them works: transforms, datasets, the classification and segmentation models. But its
`_meta_registrations` registers fake kernels for `torchvision::nms` and `torchvision::qnms` without checking,
which fails when the operator was never defined ("operator torchvision::nms does not exist") and makes
`import torchvision` fail.

`install()` defines those two operators' schemas (no kernel) when the extension cannot load, then imports
torchvision, so the import succeeds. A snippet that calls one of the C++ operators still fails, from torchvision
itself, with "Couldn't load custom C++ ops": the harness's gap (`unsupported_library`), not the snippet's error.
"""

from __future__ import annotations

import importlib
import importlib.util

# The schemas that torchvision 0.28's `_meta_registrations` needs to exist (as its C++ code declares them).
_SCHEMAS = {"nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
# Kept alive: a torch.library.Library's definitions last as long as the object.
_LIBRARY: list[object] = []
# What torchvision says when one of its C++ operators is called without them: a gap of this machine.
MISSING_OPS_MESSAGE = "Couldn't load custom C++ ops"


def install() -> bool:
    """Make `import torchvision` work here; True when torchvision (with or without its C++ operators) imports."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    spec = importlib.util.find_spec("torchvision._C")
    try:
        if spec is None or spec.origin is None:
            raise OSError("no torchvision._C")
        torch.ops.load_library(spec.origin)
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
    return True


def _defined(torch: object, qualname: str) -> bool:
    namespace, _, name = qualname.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), name)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return False
    return True
