"""Giving freed memory back to the operating system after a run that was handed an oversize reply.

A reply of many megabytes is cut to `max_answer_chars`, but LiteLLM has read, decoded and parsed the whole body by
then, several copies of it. Once freed, glibc keeps those pages in its heap for reuse, so a proxy that met a few
such replies would stay hundreds of megabytes larger for good. `malloc_trim` hands them back. It runs only after
such a run, on a thread of its own (it walks the whole heap), and does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import cache


@cache
def _trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def give_back() -> None:
    """Return the heap's free pages to the operating system, in the background."""
    trim = _trim()
    if trim is not None:
        threading.Thread(target=trim, args=(0,), name="massgen-malloc-trim", daemon=True).start()
