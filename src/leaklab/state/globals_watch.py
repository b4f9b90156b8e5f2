"""GlobalsWatch: which module-level global grew? (chapter 03)

A snapshot records, for every container global of the watched modules, its length and its
shallow size: names and numbers only, so watching never keeps anything alive.
:meth:`GlobalsWatch.grown` compares two snapshots (:func:`_growth` is the rule). Which modules are
watched by default is :mod:`leaklab.state.user_code`'s business.
"""

from __future__ import annotations

import operator
import sys
import time
import types
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from leaklab.state.user_code import _MODULE_DICT, _excluded_roots, _is, is_user_module

if TYPE_CHECKING:  # pandas is imported by grown() only: a live service can snapshot without it
    import pandas as pd

#: The columns of :meth:`GlobalsWatch.grown`, in order.
GROWN_COLUMNS = ("module", "name", "type", "len_before", "len_after", "growth")

# Descriptors read straight from the type, so that neither a class's own __getattribute__ nor an
# odd metaclass ever runs.
_TYPE_DICT = type.__dict__["__dict__"]
_TYPE_MRO = type.__dict__["__mro__"]
_TYPE_QUALNAME = type.__dict__["__qualname__"]
_TYPE_MODULE = type.__dict__["__module__"]


class GlobalSize(NamedTuple):
    """One container global as a snapshot saw it."""

    module: str
    name: str
    type: str
    length: int
    size: int | None  # sys.getsizeof in bytes (shallow); None if the object's __sizeof__ failed


@dataclass(frozen=True)
class Snapshot:
    """The lengths and shallow sizes of the watched modules' container globals at one moment.

    ``records`` maps ``(module, name)`` to a :class:`GlobalSize` (treat it as read-only);
    ``modules`` lists the modules that were scanned; ``taken_at`` is a :func:`time.monotonic`
    stamp and ``seconds`` how long the snapshot took. It holds only names and numbers, so it
    keeps nothing alive and pickles (for example out of an isolated process).
    """

    records: Mapping[tuple[str, str], GlobalSize] = field(repr=False)
    modules: tuple[str, ...] = field(repr=False)
    taken_at: float
    seconds: float = field(compare=False)

    def __len__(self) -> int:
        """The number of container globals recorded."""
        return len(self.records)

    def __repr__(self) -> str:
        return (f"Snapshot(globals={len(self.records)}, modules={len(self.modules)}, "
                f"taken_at={self.taken_at:.3f}, seconds={self.seconds:.6f})")

    @property
    def total_size(self) -> int:
        """Sum of the shallow sizes, in bytes (records without a size count 0)."""
        return sum(r.size or 0 for r in self.records.values())

    def to_frame(self) -> pd.DataFrame:
        """One row per recorded global: ``module``, ``name``, ``type``, ``length``, ``size``,
        sorted by length, biggest first."""
        import pandas as pd

        frame = pd.DataFrame(list(self.records.values()), columns=list(GlobalSize._fields))
        frame = frame.astype({"length": "int64", "size": "Int64"})
        return frame.sort_values(
            ["length", "module", "name"], ascending=[False, True, True], kind="stable"
        ).reset_index(drop=True)


# --------------------------------------------------------------------------- reading globals


_UNSEEN = object()  # a type not yet described in this snapshot


def _describe(cls: type) -> str | None:
    """The label for globals of type ``cls``, or None if they are not recorded."""
    try:
        if issubclass(cls, (str, bytes)):
            return None
        if not any("__len__" in _TYPE_DICT.__get__(klass) for klass in _TYPE_MRO.__get__(cls)):
            return None
        qualname = _TYPE_QUALNAME.__get__(cls)
        module = _TYPE_MODULE.__get__(cls)
    except Exception:
        return None
    if not _is(qualname, str):
        qualname = "?"
    if not _is(module, str) or module == "builtins":
        return qualname
    return f"{module}.{qualname}"


def _scan(module_name: str, namespace: dict[Any, Any], labels: dict[int, str | None],
          out: dict[tuple[str, str], GlobalSize]) -> None:
    """Record the container globals of one module namespace into ``out``."""
    try:
        items = list(namespace.items())  # a copy: another thread may add globals meanwhile
    except Exception:
        return
    getsizeof = sys.getsizeof
    for name, value in items:
        if type(name) is not str or (name[:2] == "__" and name[-2:] == "__"):
            continue
        cls = type(value)
        label = labels.get(id(cls), _UNSEEN)  # by id: a metaclass may define a hostile __hash__
        if label is _UNSEEN:
            label = labels[id(cls)] = _describe(cls)
        if label is None:
            continue
        try:
            length = len(value)
        except Exception:
            continue
        try:
            size: int | None = getsizeof(value)
        except Exception:
            size = None
        out[(module_name, name)] = GlobalSize(module_name, name, label, length, size)


# --------------------------------------------------------------------------- comparing snapshots


def _growth(before: Snapshot, after: Snapshot, min_growth: int) -> list[tuple[Any, ...]]:
    """The rows of ``grown()``: every global whose length rose by at least ``min_growth`` from
    ``before`` to ``after`` (one absent from ``before`` rose from 0)."""
    rows = []
    old = before.records
    for key, now in after.records.items():
        was = old.get(key)
        len_before = was.length if was is not None else 0
        growth = now.length - len_before
        if growth >= min_growth:
            rows.append((now.module, now.name, now.type, len_before, now.length, growth))
    return rows


# --------------------------------------------------------------------------- the watch

#: What ``modules`` may hold: module objects or module names.
ModuleLike = types.ModuleType | str


class GlobalsWatch:
    """Watches the module-level globals of some modules and reports which ones grew.

    ``modules`` is an iterable of module objects or module names (a single one is accepted too).
    Names must be in ``sys.modules`` when the watch is made (nothing is imported for you) and are
    looked up again at every snapshot, so a re-imported module is followed; module objects are
    held weakly. ``None`` (the default) watches every module in ``sys.modules`` at the moment of
    each snapshot that is user code (see :func:`is_user_module`): not the standard library, not
    site-packages, not ``builtins``; modules imported after the watch was made are included.

    :meth:`grown` reports the globals that grew by at least ``min_growth`` elements (an int,
    or an int-like such as ``numpy.int64``).
    Bad arguments fail here: ``TypeError`` for a wrong type (``bool`` is not an int), ``ValueError``
    for an unknown module name, an empty ``modules`` or ``min_growth < 1``.
    """

    def __init__(self, modules: Iterable[ModuleLike] | ModuleLike | None = None, *,
                 min_growth: int = 1) -> None:
        # An int-like (numpy.int64...) is an int here, as operator.index says; a bool is not.
        try:
            if isinstance(min_growth, bool):
                raise TypeError
            growth = operator.index(min_growth)
        except TypeError:
            raise TypeError(
                f"min_growth must be an int, got {type(min_growth).__name__}: {min_growth!r}"
            ) from None
        if growth < 1:
            raise ValueError(f"min_growth must be >= 1, got {growth!r}")
        self.min_growth: int = growth
        # (name, target): target is a name looked up in sys.modules, or a weakref to a module.
        self._targets: tuple[tuple[str, Any], ...] | None = (
            None if modules is None else self._resolve(modules)
        )
        self._roots: tuple[str, ...] = _excluded_roots() if modules is None else ()
        self._verdicts: dict[str, tuple[int, bool]] = {}

    @staticmethod
    def _resolve(modules: Any) -> tuple[tuple[str, Any], ...]:
        if _is(modules, (str, types.ModuleType)):
            modules = [modules]
        try:
            items = list(modules)
        except TypeError:
            raise TypeError(
                "modules must be None, a module, a module name or an iterable of them, "
                f"got {type(modules).__name__}: {modules!r}"
            ) from None
        if not items:
            raise ValueError("modules is empty; pass None to watch every user module")
        targets: list[tuple[str, Any]] = []
        for i, item in enumerate(items):
            if _is(item, str):
                found = sys.modules.get(item)
                if not _is(found, types.ModuleType):
                    raise ValueError(
                        f"modules[{i}]: no module named {item!r} in sys.modules "
                        "(import it first; the watch never imports)"
                    )
                targets.append((item, item))
            elif _is(item, types.ModuleType):
                namespace = _MODULE_DICT.__get__(item)
                name = namespace.get("__name__") if _is(namespace, dict) else None
                if not _is(name, str):
                    name = f"<module at {id(item):#x}>"
                try:
                    ref: Any = weakref.ref(item)
                except TypeError:
                    ref = item
                targets.append((name, ref))
            else:
                raise TypeError(
                    f"modules[{i}] must be a module or a module name, "
                    f"got {type(item).__name__}: {item!r}"
                )
        return tuple(targets)

    def _modules(self) -> list[tuple[str, types.ModuleType]]:
        """The (name, module) pairs to scan now, each module once."""
        found: list[tuple[str, types.ModuleType]] = []
        seen: set[int] = set()
        if self._targets is None:
            # Classifying a module reads its path: remember the verdict per (name, module id),
            # rebuilt from the current sys.modules each time so it never outgrows it.
            known = self._verdicts
            verdicts: dict[str, tuple[int, bool]] = {}
            for name, module in sys.modules.copy().items():
                if type(name) is not str or not _is(module, types.ModuleType):
                    continue
                key = id(module)
                verdict = known.get(name)
                user = verdict[1] if verdict is not None and verdict[0] == key else \
                    is_user_module(name, module, self._roots)
                verdicts[name] = (key, user)
                if user and key not in seen:
                    seen.add(key)
                    found.append((name, module))
            self._verdicts = verdicts
            return found
        for name, target in self._targets:
            if isinstance(target, str):
                module = sys.modules.get(target)
            elif isinstance(target, weakref.ref):
                module = target()
            else:
                module = target
            if _is(module, types.ModuleType) and id(module) not in seen:
                seen.add(id(module))
                found.append((name, module))
        return found

    def snapshot(self) -> Snapshot:
        """Record the length and shallow size of every container global of the watched modules.

        Never raises because of what a module holds; a module that has gone away (a name no
        longer in ``sys.modules``, a module object that was freed) is skipped.
        """
        start = time.perf_counter()
        taken_at = time.monotonic()
        labels: dict[int, str | None] = {}
        records: dict[tuple[str, str], GlobalSize] = {}
        scanned: list[str] = []
        for name, module in self._modules():
            try:
                namespace = _MODULE_DICT.__get__(module)
            except Exception:
                continue
            if _is(namespace, dict):
                scanned.append(name)
                _scan(name, namespace, labels, records)
        return Snapshot(records=records, modules=tuple(scanned),
                        taken_at=taken_at, seconds=time.perf_counter() - start)

    def grown(self, before: Snapshot, after: Snapshot) -> pd.DataFrame:
        """The globals whose length grew by at least ``min_growth`` from ``before`` to ``after``.

        Columns: ``module``, ``name``, ``type`` (as in ``after``), ``len_before``, ``len_after``,
        ``growth``; sorted by growth, biggest first (ties by module and name). A global that is
        absent from ``before`` (created meanwhile, or its module was imported meanwhile) counts
        as growing from ``len_before = 0``: memory it holds is new all the same. Globals that
        shrank, stayed put or disappeared are not reported.
        """
        import pandas as pd

        for arg, value in (("before", before), ("after", after)):
            if not isinstance(value, Snapshot):
                raise TypeError(f"{arg} must be a Snapshot, got {type(value).__name__}: {value!r}")
        if before.taken_at > after.taken_at:
            raise ValueError(
                f"before (taken at {before.taken_at:.3f}) is newer than after (taken at "
                f"{after.taken_at:.3f}): pass the older snapshot first"
            )
        rows = _growth(before, after, self.min_growth)
        frame = pd.DataFrame(rows, columns=list(GROWN_COLUMNS))
        frame = frame.astype({"module": str, "name": str, "type": str,
                              "len_before": "int64", "len_after": "int64", "growth": "int64"})
        return frame.sort_values(
            ["growth", "module", "name"], ascending=[False, True, True], kind="stable"
        ).reset_index(drop=True)

    def __repr__(self) -> str:
        scope = None if self._targets is None else [n for n, _ in self._targets]
        return f"GlobalsWatch({scope!r}, min_growth={self.min_growth})"
