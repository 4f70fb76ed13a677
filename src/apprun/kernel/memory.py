"""Process memory: keep big, short-lived buffers from pinning resident memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["unmap_large_blocks"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def unmap_large_blocks(threshold: int = 128 * 1024) -> bool:
    """Make glibc serve blocks above ``threshold`` bytes with mmap, always, so freeing returns them.

    glibc raises its mmap threshold each time a large mapped block is freed,
    after which blocks that size come from a thread's heap arena and stay
    resident when freed. argon2id allocates 19 MiB per hash on the hashing
    threads: without this, each hashing thread keeps 19 MiB or more for good
    (measured: +40 MB after four logins on one worker). Fixing the threshold
    turns that off. A no-op (False) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
