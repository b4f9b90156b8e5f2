"""Which module-level global grew? Snapshots of the containers that modules hold.

Chapter 03 ("Module state never dies") uses it. A module is imported once and cached in
``sys.modules``, so whatever its globals reference lives as long as the process; a module-level
list that every call appends to grows forever. When you do not know which global it is,
:class:`GlobalsWatch` finds it: take a :meth:`~GlobalsWatch.snapshot`, let the service run, take
another, and :meth:`~GlobalsWatch.grown` lists the globals whose length went up, biggest first.

    >>> import types
    >>> mod = types.ModuleType("demo_state")
    >>> mod.seen = []
    >>> watch = GlobalsWatch([mod])
    >>> before = watch.snapshot()
    >>> mod.seen.extend(range(3))
    >>> report = watch.grown(before, watch.snapshot())
    >>> list(report.columns)
    ['module', 'name', 'type', 'len_before', 'len_after', 'growth']
    >>> report.values.tolist()
    [['demo_state', 'seen', 'list', 0, 3, 3]]

What a snapshot records, and what it never does:

- Only globals whose type defines ``__len__`` (list, dict, set, deque, bytearray, tuple, your own
  containers...), except ``str`` and ``bytes``: their length is a value, not accumulated state,
  and counting them would report every rebinding of a text global (IPython's ``_i``) as growth.
  Dunder names (``__path__``, ``__all__``, ``__builtins__``...) are module machinery and skipped.
- For each: its length (``len``) and its shallow size (``sys.getsizeof``). Both are O(1) for the
  built-in containers, so a snapshot's cost depends on how many globals there are, not on how
  big they are. A ``__len__`` of your own is called like any other and trusted to be cheap and
  free of side effects (a lazy proxy held in a global, one that loads its target on first use,
  would load it: leave its module out with ``modules=``).
- It never imports anything, never calls a module's ``__getattr__`` and never loads a lazy module:
  it reads each module's ``__dict__`` through the module type's own descriptor, not through
  ``getattr``. An object whose ``__len__`` raises (or returns something that is not a valid
  length) is left out; one whose ``__sizeof__`` raises is kept with size ``None``; a lying
  ``__class__`` is never consulted (``type()`` is).
- It keeps no reference to the globals or to the modules, only names and numbers, so watching
  never keeps anything alive.

The watch lives in ``globals_watch.py`` (snapshots, and the comparison of two); the rule for
which modules count as user code, watched by default, in ``user_code.py``. Import the names from
``leaklab.state``.
"""

from __future__ import annotations

from leaklab.state import globals_watch as _globals_watch
from leaklab.state.globals_watch import GlobalSize, GlobalsWatch, Snapshot
from leaklab.state.user_code import is_user_module

# Importable from here as before (tests read them).
from leaklab.state.user_code import _MODULE_DICT, _excluded_roots

#: The columns of :meth:`GlobalsWatch.grown`, in order.
GROWN_COLUMNS = _globals_watch.GROWN_COLUMNS

__all__ = ["GlobalsWatch", "Snapshot", "GlobalSize", "GROWN_COLUMNS", "is_user_module"]
