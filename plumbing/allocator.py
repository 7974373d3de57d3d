"""The C allocator's settings for a process that scores micro-batches (``churn worker``, ``churn bench score``).

Each micro-batch allocates and frees a few megabytes of numpy temporaries (the split table,
the (tree, row) leaf indices, the design matrix). With glibc's defaults, freeing them leaves
a free block at the top of the heap that ``free`` gives back to the kernel (``M_TRIM_THRESHOLD``,
adjusted on the fly), so the next batch grows the heap again and pays a page fault (and a
zeroed page) for every 4 KiB it touches: about 550 faults per batch of 500 Telco events,
2 us per event, measured with ``churn bench score``. ``M_TOP_PAD`` makes the heap keep that
much spare room at its top whenever it grows or shrinks, so the temporaries come from pages
already mapped. It costs at most that much resident memory. Other allocators (musl, macOS)
are left alone.

Setting ``M_TOP_PAD`` also freezes glibc's mmap threshold where it stands (it stops rising
on its own), and a block above it is its own ``mmap``, faulted in page by page and unmapped
on ``free``, whatever the heap keeps. So ``M_MMAP_THRESHOLD`` is set too, to glibc's 64-bit
maximum: a batch's megabyte temporaries (the (tree, row) leaf look-ups of the champion) come
from the heap as well. Before: 293 faults per batch in the leaf values and 675 in the alerts'
contributions, 960 per batch of 500 in all (about 3 us per event of CPU), when the setting
came after the imports, as in ``churn worker``.

Reference: glibc manual, "Malloc Tunable Parameters"; ``mallopt(3)``.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

#: ``M_TOP_PAD`` of glibc's ``mallopt``.
_M_TOP_PAD = -2
#: ``M_MMAP_THRESHOLD`` of glibc's ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Spare room kept at the top of the heap, bytes: several batches' temporaries.
TOP_PAD_BYTES = 16 << 20
#: Blocks at least this large get their own ``mmap``: glibc's largest on 64-bit (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD_BYTES = 32 << 20


def keep_heap_room(top_pad_bytes: int = TOP_PAD_BYTES, mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Ask glibc's malloc to keep ``top_pad_bytes`` of spare heap and serve blocks below
    ``mmap_threshold_bytes`` from it (``mallopt(M_TOP_PAD)``, ``mallopt(M_MMAP_THRESHOLD)``).

    Call once, at the entry point of a scoring process, before the hot loop.

    Parameters
    ----------
    top_pad_bytes : int, default 16 MiB
    mmap_threshold_bytes : int, default 32 MiB

    Returns
    -------
    bool
        True if glibc took both settings; False where there is no glibc ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_TOP_PAD, int(top_pad_bytes)))
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes))) and ok
    logger.debug("malloc top pad bytes=%d mmap threshold bytes=%d ok=%s", top_pad_bytes, mmap_threshold_bytes, ok)
    return ok
