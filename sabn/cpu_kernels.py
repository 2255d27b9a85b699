"""Optional C++ kernels for the fused path on CPU (float32, NCHW or channels_last).

The Python path composes ATen ops: in NCHW it reuses BN's own backward on a (1, N*C, H, W) view for
the per-(sample, channel) sums, but that view has no channels_last counterpart, so there it pays a
``g * x`` temporary and a two-op input gradient; and at small sizes its ~40 small ops cost more than
BN's whole forward and backward. These kernels read ``g`` and ``x`` once for both sums, write the
input gradient in one pass, and gather / compose / fold the affines in the forward, as BN's own
kernels do.

They are compiled with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed; about
25 s once, cached under ``$TORCH_EXTENSIONS_DIR``). ``make install`` builds them; afterwards every
process uses that build by itself. Elsewhere they are opt-in::

    import sabn
    sabn.enable_cpu_kernels()        # or SABN_CPU_KERNELS=1, or trainer.cpu_kernels=true

``SABN_CPU_KERNELS=0`` (or ``sabn.disable_cpu_kernels()``) keeps the Python path. Without a compiler
the build warns once, says why, and the Python path stays in use: results agree either way to 1e-5
(tested against the reference composition), though not bit for bit, so a training run settles the
choice when it starts (``resolve_cpu_kernels``) and its provenance records it (``cpu_kernels``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import torch


class _NoCudaRuntimeNote(logging.Filter):
    """torch's extension builder warns "No CUDA runtime is found" in every CPU-only process that builds or
    loads these (CPU) kernels: noise for them, so that one message is dropped; the rest pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeNote())

_SOURCE = (Path(__file__).with_name("cpu_kernels.cpp")).read_text()


def _machine() -> str:
    """The instruction sets the build may use (-march=native): a cached build from another CPU
    (a shared home directory on a cluster) must not be loaded here."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        import platform
        return platform.processor() or platform.machine()


_NAME = f"sabn_cpu_{hashlib.sha1((_SOURCE + _machine()).encode()).hexdigest()[:10]}"
_state = {"compiled": None, "active": False, "decided": False, "error": None}


def _mode() -> str:
    """SABN_CPU_KERNELS: 1 builds and uses them, 0 never, unset / auto uses an existing build."""
    value = os.environ.get("SABN_CPU_KERNELS", "auto").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return "on"
    return "off" if value in ("0", "false", "no", "off") else "auto"


def _cached_build() -> bool:
    """Whether this source is already built on disk (then loading it takes no compiler)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory
        folder = _get_build_directory(_NAME, verbose=False)
    except Exception:  # noqa: BLE001 - a private helper; without it, auto mode just stays off
        return False
    return any(os.path.isfile(os.path.join(folder, _NAME + ext)) for ext in (".so", ".pyd"))


def _ninja_on_path() -> None:
    """torch's builder looks for ``ninja`` on PATH; the pip wheel puts it next to this Python."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if os.path.isfile(os.path.join(bindir, "ninja")) and bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def enable_cpu_kernels(verbose: bool = False) -> bool:
    """Build (once; cached on disk) and use the C++ CPU kernels. ``make install`` runs this, after
    which every process picks the build up by itself (``SABN_CPU_KERNELS=0`` turns that off).

    Returns whether they are in use; a failed build warns with the reason and returns False.
    """
    _state["decided"] = True
    if _state["compiled"] is None and _state["error"] is None:
        _ninja_on_path()
        try:
            # its import logs "No CUDA runtime is found" on CPU-only machines: irrelevant here
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            from torch.utils.cpp_extension import load_inline
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _state["compiled"] = load_inline(
                    _NAME, cpp_sources=_SOURCE,
                    functions=["sample_affine_backward", "conditional_forward", "conditional_backward"],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                    verbose=verbose)
        except Exception as exc:  # noqa: BLE001 - any build failure means: stay on the Python path
            lines = str(exc).strip().splitlines()
            _state["error"] = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
            warnings.warn("sabn: the C++ CPU kernels could not be built (they need a C++ compiler and "
                          f"ninja); the Python path stays in use, with the same results. {_state['error']}",
                          stacklevel=2)
    _state["active"] = _state["compiled"] is not None
    return _state["active"]


def disable_cpu_kernels() -> None:
    """Back to the Python path (a loaded build stays loaded for a later enable)."""
    _state["decided"] = True
    _state["active"] = False


def cpu_kernels_status() -> dict:
    """Whether the kernels are in use, whether a build is loaded, and why not when it failed."""
    return {"active": _state["active"], "built": _state["compiled"] is not None, "error": _state["error"]}


def cpu_kernel(x: torch.Tensor) -> Optional[object]:
    """The compiled module when it is in use and applies to ``x`` (CPU, float32, 4-d, NCHW or
    channels_last contiguous), else None."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return None
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        return None
    resolve_cpu_kernels()
    return _state["compiled"] if _state["active"] else None


def resolve_cpu_kernels() -> bool:
    """Settle ``SABN_CPU_KERNELS`` now, as the first call on a CPU tensor otherwise would, and return
    whether the kernels are in use. In auto mode that depends on whether a build exists on disk, which
    can change while a process runs (another process compiles one), so runs settle it up front."""
    if not _state["decided"]:
        _state["decided"] = True
        mode = _mode()
        if mode == "on" or (mode == "auto" and _cached_build()):
            enable_cpu_kernels()
    return _state["active"]
