"""Shared test set-up.

Triton must know whether to use its CPU interpreter before anything imports it, and
transformers imports triton on import; so the backend is chosen here, first.
"""

from qcoder_lib.runtime import ensure_triton_backend

ensure_triton_backend()
