"""How an engine process runs on the CPU: what the `blush` command sets before any work (and the
benchmarks that time the engine in their own process, so that they time what it runs).

Denormals: values below float32's normal range (the far edges of masked, regularised maps) run the
E-step's GEMMs ten times slower on CPU; they are zero for every purpose here.

Huge pages: each E-step or M-step batch of a large box makes temporaries of hundreds of MB, which
glibc maps afresh and the kernel fills page by page: on the 1osm 128 px refinement's state
(benchmarks/iteration_cost.py) a third of the CPU time went to page faults. torch's own switch
(THP_MEM_ALLOC_ENABLE) aligns allocations of 2 MB and more to transparent huge pages and asks the
kernel for them, which takes about a twentieth of the faults, where the kernel allows huge pages on
request (/sys/kernel/mm/transparent_hugepage/enabled: always or madvise). (Keeping freed memory in
glibc's heap instead, mmap off, faulted less still but fragmented it: resident memory grew with the
number of particles.)
"""

from __future__ import annotations

import os

import torch

HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"  # read by c10's alloc_cpu at its first large allocation


def prepare_process() -> None:
    """Denormals flushed to zero and large allocations on huge pages (module docstring), unless the
    user's environment already says otherwise; before the first large tensor of the process."""
    torch.set_flush_denormal(True)
    os.environ.setdefault(HUGE_PAGES, "1")
