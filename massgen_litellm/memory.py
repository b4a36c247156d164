"""Giving freed memory back to the operating system after a run that was handed an oversize reply.

A reply of many megabytes is cut to `max_answer_chars`, but LiteLLM has read, decoded and parsed the whole body by
then, several copies of it, some held in reference cycles of its logging objects that only a full collection
frees. Once freed, glibc keeps the pages in its heap for reuse, so a proxy that met a few such replies would stay
hundreds of megabytes larger for good. A full `gc.collect()` and then `malloc_trim` hand them back. They run only
after such a run, on a thread of their own, and the trim does nothing where the C library is not glibc.
"""

from __future__ import annotations

import gc
import threading
from functools import cache
from typing import Any


@cache
def _trim() -> Any:
    """glibc's `malloc_trim`, or None. ctypes is loaded here, by the first run that needs it, not with the package."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def give_back() -> None:
    """Free what only a full collection frees, and return the heap's free pages to the operating system, in the
    background."""
    threading.Thread(target=_release, name="massgen-give-back-memory", daemon=True).start()


def _release() -> None:
    gc.collect()
    trim = _trim()
    if trim is not None:
        trim(0)
