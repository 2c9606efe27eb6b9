"""Store backends behind one batch interface: NumPy on the CPU (default) and CuPy on a GPU.

``load_backend("auto"|"cpu"|"gpu")`` picks one; the GPU module is imported lazily so a
machine without CUDA never imports CuPy.
"""
from __future__ import annotations

import importlib

from .interface import EvictionPolicy, StoreBackend, StoreFull

BACKENDS = {
    "cpu": "gpu.cpu:NumpyStore",
    "gpu": "gpu.cuda:CupyStore",
}


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def backend_class(name: str) -> type[StoreBackend]:
    if name == "auto":
        name = "gpu" if gpu_available() else "cpu"
    if name not in BACKENDS:
        raise ValueError(f"unknown store backend {name!r} (choose auto, cpu or gpu)")
    module_name, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


__all__ = ["BACKENDS", "EvictionPolicy", "StoreBackend", "StoreFull", "backend_class", "gpu_available"]
