"""The garbage collector's settings for a long-running server process.

CPython's cyclic collector runs a young collection every 700 net container allocations and
a full one every 100 young ones; a full one walks every tracked object in the process. A
request allocates a few hundred containers, and the ones still in flight when a young
collection runs (64 concurrent requests' worth) survive into the older generations. Measured
under the bench's create load (API process, 2026-12-02): ~10 % of the CPU in the collector,
most of it full collections walking the ~80,000 objects of start-up (modules, the app, its
routes, compiled schemas) at ~64 ms each, a stall every request in flight waits through.

`settle_heap()`, once start-up is done, moves everything alive into the permanent generation
(`gc.freeze`: still reference-counted and freed as usual, only never walked by the
collector) and collects young objects 10x less often, so fewer in-flight objects survive
into the generations a full collection walks. Cycles are still collected, just later: the
extra garbage this can hold is bounded by the threshold (tens of thousands of small
objects, a few MB).
"""

from __future__ import annotations

import gc

# Net container allocations between young collections (CPython's default is 700); older
# generations keep their default ratios to the young one.
YOUNG_THRESHOLD = 7_000


def settle_heap() -> None:
    """Call once start-up is done: collect, freeze what is alive, raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
