"""leaklab: an executable course on memory leaks in long-running Python processes.

The chapters in ``notebooks/`` import their measuring tools and their fixes from here:

- ``leaklab.measure``: RSS, sampled memory traces, leak rates and GC pauses (every chapter).
- ``leaklab.plot`` and ``leaklab.tables``: the one figure style and tables whose text output
  survives nbval's sanitizing (every chapter).
- ``leaklab.caches``: ``LimitableMap`` and ``LRUCache`` (chapter 01).
- ``leaklab.memoize``: bounded, method-safe, async-aware ``memoize`` (chapter 02).
- ``leaklab.state``: ``GlobalsWatch``, which module-level global grew (chapter 03).
- ``leaklab.bagpipe``: ``Bagpipe``, an asyncio call queue with timeout and refuse modes (chapter 04).
- ``leaklab.queues``: ``BoundedExecutor``, ``BoundedQueueHandler`` and ``QueueMonitor`` (chapter 04).
- ``leaklab.clock``: ``FakeClock``, to show expiry without waiting (chapters 01 and 02).
- ``leaklab.scenarios``: demo workloads in importable files, for isolated processes and profilers.
"""

__version__ = "0.1.0"
