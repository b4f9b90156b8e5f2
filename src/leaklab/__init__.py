"""leaklab: an executable course on memory leaks in long-running Python processes.

The chapters in ``notebooks/`` import their measuring tools and their fixes from here:

- ``leaklab.measure``: RSS, sampled memory traces, leak rates and GC pauses (every chapter).
- ``leaklab.plot``: the one RSS-over-time figure style (every chapter).
- ``leaklab.scenarios``: demo workloads in importable files, for isolated processes and profilers.
"""

__version__ = "0.1.0"
