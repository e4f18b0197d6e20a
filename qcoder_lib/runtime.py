"""Where the course runs: the device, the scale profile and reproducible seeding.

One switch, ``QCODER_PROFILE``, sets how big everything is:

- ``smoke``: what CI and nbval run; every notebook in minutes on 2 CPU cores.
- ``cpu``: a learner's laptop; a model that learns something in about 15 minutes.
- ``gpu``: one GPU; models of tens to hundreds of millions of parameters.

The same code runs every profile; only sizes change (see :func:`by_profile`).
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

from qcoder_lib.extras import EXTRAS

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False


def get_profile() -> str:
    """Return the scale profile: ``QCODER_PROFILE`` if set, else ``smoke`` under CI, else
    ``gpu`` when CUDA is available, else ``cpu``.

    Raises ``ValueError`` naming the variable when it holds an unknown profile.
    """
    name = os.environ.get("QCODER_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(
                f"QCODER_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}"
            )
        return name
    if os.environ.get("CI"):
        return "smoke"
    return "gpu" if _cuda_available() else "cpu"


def by_profile(smoke: T, cpu: T, gpu: T, profile: str | None = None) -> T:
    """Pick the value for the current (or given) profile: ``by_profile(64, 512, 4096)``."""
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile]


def get_device(prefer: str | None = None):
    """Return the ``torch.device`` to use: ``prefer`` or ``QCODER_DEVICE`` if given, else
    cuda > mps > cpu.

    Raises ``RuntimeError`` when the requested device is not available here.
    """
    import torch

    want = (prefer or os.environ.get("QCODER_DEVICE", "")).strip().lower()
    if want:
        kind = want.split(":")[0]
        ok = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": getattr(torch.backends, "mps", None) is not None
            and torch.backends.mps.is_available(),
        }.get(kind)
        if ok is None:
            raise ValueError(f"device {want!r} is not one of cpu, cuda, mps")
        if not ok:
            raise RuntimeError(f"device {want!r} was requested but is not available here")
        return torch.device(want)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices) so that CPU runs repeat exactly.

    With ``deterministic=True`` torch also refuses non-deterministic kernels, which makes GPU
    runs repeatable at some cost in speed.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def ensure_triton_backend() -> str:
    """Make Triton usable here: on a machine without a GPU set ``TRITON_INTERPRET=1`` (Triton's
    CPU interpreter) before Triton is imported. Returns ``"gpu"`` or ``"interpreter"``.

    The interpreter computes bf16 wrongly (it casts to fp32), cannot autotune over several
    configs and has no ``do_bench``; the kernels and tests account for this.
    """
    if _cuda_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return "gpu"
    os.environ["TRITON_INTERPRET"] = "1"
    return "interpreter"


# The packages the course needs, (import name, distribution name): the core and every extra
# (qcoder_lib.extras holds the one list).
REQUIRED_PACKAGES = list(dict.fromkeys(pair for pairs in EXTRAS.values() for pair in pairs))


def check_environment(packages=None) -> list[dict]:
    """Import every course dependency and report ``{"package", "version", "ok", "error"}`` for
    each; an import failure is reported, not raised, so that one missing package shows all."""
    import importlib
    import importlib.metadata as md
    import warnings

    rows = []
    for module, dist in packages or REQUIRED_PACKAGES:
        row = {"package": dist, "version": "", "ok": False, "error": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
            row["version"] = md.version(dist)
            row["ok"] = True
        except Exception as e:  # noqa: BLE001 - any import failure is a finding to show
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:120]
        rows.append(row)
    return rows


def describe_machine() -> dict:
    """Device, profile, CPU cores, torch threads and free memory (GiB) of this machine."""
    import torch

    info = {
        "device": str(get_device()),
        "profile": get_profile(),
        "cpu_cores": os.cpu_count() or 1,
        "torch_threads": torch.get_num_threads(),
        "free_memory_gib": None,
        "gpu": None,
    }
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem = dict(line.split(":", 1) for line in f)
        info["free_memory_gib"] = round(int(mem["MemAvailable"].split()[0]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
    return info
