"""Shims for the libraries poisonlib runs on."""

from __future__ import annotations

import functools
import warnings


@functools.cache
def quiet_forward_ad() -> None:
    """Load torch's forward-AD decompositions with their one deprecation warning silenced.

    The first ``torch.func.jvp`` / ``torch.func.hessian`` of a process imports
    ``torch._decomp.decompositions_for_jvp``, which registers its decompositions through
    ``torch.jit.script`` and so emits ``FutureWarning: `torch.jit.script` is deprecated``
    -- a line that names torch's absolute install path and would land in every page that
    runs TGDA or Influence. The warning concerns torch's internals, not poisonlib's code;
    importing the module here once, with that warning (and only it) ignored, keeps it out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)", category=FutureWarning)
        try:
            from torch._decomp import decompositions_for_jvp  # noqa: F401
        except ImportError:  # a torch without it: nothing to silence
            pass
