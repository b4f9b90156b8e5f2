"""Tests for leaklab.state: finding the module-level global that grows."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import itertools
import pickle
import sys
import textwrap
import types
import weakref
from enum import Enum

import pandas as pd
import pytest

from leaklab import state
from leaklab.state import GROWN_COLUMNS, GlobalsWatch, Snapshot, is_user_module

_names = itertools.count()


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write a brand new module file, import it, and forget it after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(source: str) -> types.ModuleType:
        name = f"leaklab_planted_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        made.append(name)
        return importlib.import_module(name)

    yield make
    for name in made:
        sys.modules.pop(name, None)


def _rows(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {
        (r.module, r.name): (r.len_before, r.len_after, r.growth)
        for r in frame.itertuples(index=False)
    }


def _lazy_module(name: str, real: str) -> types.ModuleType:
    """A module registered in sys.modules through importlib's LazyLoader, not loaded yet."""
    spec = importlib.util.find_spec(real)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    assert type(module) is importlib.util._LazyModule
    return module


# --------------------------------------------------------------------------- finding growth


def test_planted_global_in_a_fresh_module_is_found_by_name_object_and_default_scope(make_module):
    mod = make_module("""
        CACHE = []
        STABLE = {"a": 1}
    """)
    watches = [GlobalsWatch([mod.__name__]), GlobalsWatch([mod]), GlobalsWatch()]
    befores = [w.snapshot() for w in watches]
    mod.CACHE.extend(range(500))
    for watch, before in zip(watches, befores):
        after = watch.snapshot()
        assert mod.__name__ in after.modules
        report = watch.grown(before, after)
        assert list(report.columns) == list(GROWN_COLUMNS)
        first = report.iloc[0]
        assert (first["module"], first["name"], first["type"]) == (mod.__name__, "CACHE", "list")
        assert (first["len_before"], first["len_after"], first["growth"]) == (0, 500, 500)
        assert (mod.__name__, "STABLE") not in _rows(report)


def test_default_scope_picks_up_a_module_imported_after_the_watch_was_made(make_module):
    watch = GlobalsWatch()
    mod = make_module("""
        import collections
        QUEUE = collections.deque()
        TABLE = {}
    """)
    before = watch.snapshot()
    mod.QUEUE.extend(range(7))
    mod.TABLE.update(dict.fromkeys(range(3)))
    rows = _rows(watch.grown(before, watch.snapshot()))
    assert rows[(mod.__name__, "QUEUE")] == (0, 7, 7)
    assert rows[(mod.__name__, "TABLE")] == (0, 3, 3)


def test_globals_new_since_before_count_from_zero(make_module):
    mod = make_module("OLD = [1, 2]\n")
    watch = GlobalsWatch([mod])
    before = watch.snapshot()
    mod.NEW = {1, 2, 3}
    after = watch.snapshot()
    assert _rows(watch.grown(before, after)) == {(mod.__name__, "NEW"): (0, 3, 3)}
    # A module imported between the snapshots: all its containers are new.
    scope = GlobalsWatch()
    before = scope.snapshot()
    later = make_module("TABLE = {'x': 1, 'y': 2}\nEMPTY = []\n")
    rows = _rows(scope.grown(before, scope.snapshot()))
    assert rows[(later.__name__, "TABLE")] == (0, 2, 2)
    assert (later.__name__, "EMPTY") not in rows  # 0 -> 0 is no growth


def test_shrinking_stable_and_deleted_globals_are_not_reported(make_module):
    mod = make_module("""
        SHRINKS = list(range(100))
        STABLE = list(range(100))
        CHURNS = list(range(100))
        GOES = list(range(100))
        GROWS = []
    """)
    watch = GlobalsWatch([mod])
    before = watch.snapshot()
    del mod.SHRINKS[:60]
    mod.CHURNS[:] = range(100, 200)  # same length, new contents
    del mod.GOES
    mod.GROWS.append(1)
    assert list(watch.grown(before, watch.snapshot())["name"]) == ["GROWS"]


def test_min_growth_is_a_threshold_on_elements(make_module):
    mod = make_module("A = []\nB = []\nC = []\n")
    watch = GlobalsWatch([mod], min_growth=10)
    before = watch.snapshot()
    mod.A.extend(range(9))
    mod.B.extend(range(10))
    mod.C.extend(range(11))
    report = watch.grown(before, watch.snapshot())
    assert list(report["name"]) == ["C", "B"]  # A grew by 9 < 10


def test_report_is_sorted_by_growth_with_int_columns(make_module):
    mod = make_module("SMALL = []\nBIG = {}\nMID = set()\nTIE = []\n")
    watch = GlobalsWatch([mod])
    before = watch.snapshot()
    mod.SMALL.append(1)
    mod.BIG.update(dict.fromkeys(range(50)))
    mod.MID.update(range(5))
    mod.TIE.extend(range(5))
    report = watch.grown(before, watch.snapshot())
    assert list(report["name"]) == ["BIG", "MID", "TIE", "SMALL"]  # ties by name
    assert list(report["growth"]) == [50, 5, 5, 1]
    assert list(report.index) == [0, 1, 2, 3]
    for column in ("len_before", "len_after", "growth"):
        assert report[column].dtype == "int64"
    empty = watch.grown(before, before)
    assert empty.empty and list(empty.columns) == list(GROWN_COLUMNS)
    assert empty["growth"].dtype == "int64"


# --------------------------------------------------------------------------- what is recorded


def test_snapshot_records_containers_lengths_and_shallow_sizes(make_module):
    mod = make_module("""
        import collections, enum
        class Bag:
            def __init__(self):
                self.items = [1, 2, 3, 4]
            def __len__(self):
                return len(self.items)
        class Color(enum.Enum):
            RED = 1
            BLUE = 2
        LIST = [1, 2, 3]
        DICT = {"a": 1}
        SET = {1, 2}
        FROZEN = frozenset({1})
        DEQUE = collections.deque([1, 2, 3, 4, 5])
        BUFFER = bytearray(16)
        TUPLE = (1, 2)
        BAG = Bag()
        TEXT = "a string is a value, not a container"
        RAW = b"bytes too"
        NUMBER = 42
        __registry__ = [1, 2, 3]
    """)
    snap = GlobalsWatch([mod]).snapshot()
    got = {name: (r.type, r.length) for (_, name), r in snap.records.items()}
    assert got == {
        "LIST": ("list", 3),
        "DICT": ("dict", 1),
        "SET": ("set", 2),
        "FROZEN": ("frozenset", 1),
        "DEQUE": ("collections.deque", 5),
        "BUFFER": ("bytearray", 16),
        "TUPLE": ("tuple", 2),
        "BAG": (f"{mod.__name__}.Bag", 4),
        "Color": ("enum.EnumType", 2),  # the class itself: its metaclass defines __len__
    }
    assert snap.records[(mod.__name__, "LIST")].size == sys.getsizeof(mod.LIST)
    assert snap.records[(mod.__name__, "DEQUE")].size == sys.getsizeof(mod.DEQUE)
    assert len(snap) == 9 and snap.modules == (mod.__name__,)
    assert snap.total_size == sum(sys.getsizeof(getattr(mod, n)) for n in got)
    frame = snap.to_frame()
    assert list(frame.columns) == ["module", "name", "type", "length", "size"]
    assert frame["name"].iloc[0] == "BUFFER"  # biggest first


def test_snapshot_keeps_nothing_alive_and_pickles(make_module):
    mod = make_module("class Box(list):\n    pass\nHELD = Box([1, 2, 3])\n")
    watch = GlobalsWatch([mod])
    snap = watch.snapshot()
    ref = weakref.ref(mod.HELD)
    del mod.HELD
    gc.collect()
    assert ref() is None
    copy = pickle.loads(pickle.dumps(snap))
    assert copy.records == snap.records and copy.modules == snap.modules
    assert watch.grown(snap, copy).empty
    assert "globals=1" in repr(snap)


def test_module_objects_are_held_weakly_and_names_are_looked_up_again(make_module):
    loose = types.ModuleType("leaklab_loose_module")
    loose.ITEMS = [1]
    by_object = GlobalsWatch([loose])
    ref = weakref.ref(loose)
    del loose
    gc.collect()
    assert ref() is None  # the watch did not keep it alive
    assert by_object.snapshot().modules == ()

    mod = make_module("ITEMS = [1, 2]\n")
    name = mod.__name__
    by_name = GlobalsWatch(name)  # a single name is accepted too
    before = by_name.snapshot()
    del sys.modules[name]
    assert by_name.snapshot().modules == ()  # gone: skipped, no error
    fresh = importlib.import_module(name)
    assert fresh is not mod
    fresh.ITEMS.extend(range(10))
    assert _rows(by_name.grown(before, by_name.snapshot())) == {(name, "ITEMS"): (2, 12, 10)}


def test_same_module_twice_is_scanned_once(make_module):
    mod = make_module("ITEMS = [1]\n")
    snap = GlobalsWatch([mod, mod.__name__, mod]).snapshot()
    assert snap.modules == (mod.__name__,)


# --------------------------------------------------------------------------- odd globals


class _LenRaises:
    def __len__(self):
        raise RuntimeError("broken __len__")


class _LenNotInt:
    def __len__(self):
        return "three"


class _LenNegative:
    def __len__(self):
        return -1


class _LenHuge:
    def __len__(self):
        return 2**100


class _SizeofRaises(list):
    def __sizeof__(self):
        raise RuntimeError("broken __sizeof__")


class _LyingClass(list):
    @property
    def __class__(self):
        raise RuntimeError("__class__ must not be consulted")

    def __getattribute__(self, name):
        raise RuntimeError(f"attribute {name!r} must not be read")


class _HostileMeta(type):
    def __hash__(cls):
        raise RuntimeError("hostile hash")

    def __eq__(cls, other):
        raise RuntimeError("hostile eq")

    def __getattribute__(cls, name):
        if name in ("__len__", "__mro__", "__dict__", "__qualname__", "__module__"):
            raise RuntimeError(f"metaclass attribute {name!r} must not be read")
        return super().__getattribute__(name)


class _HostileType(list, metaclass=_HostileMeta):
    pass


class _Growing(Enum):
    A = 1


def test_odd_globals_never_make_snapshot_or_grown_raise():
    mod = types.ModuleType("leaklab_odd_globals")
    calls: list[str] = []

    def module_getattr(name):
        calls.append(name)
        raise AttributeError(name)

    odd = {
        "RAISES": _LenRaises(),
        "NOT_INT": _LenNotInt(),
        "NEGATIVE": _LenNegative(),
        "HUGE": _LenHuge(),
        "NO_SIZE": _SizeofRaises([1, 2]),
        "LIAR": _LyingClass([1, 2, 3]),
        "HOSTILE": _HostileType([1]),
        "ENUM_MEMBER": _Growing.A,  # its class's metaclass has __len__, the member does not
        "__getattr__": module_getattr,
        "FINE": [1, 2],
        1: "a non-string key in the namespace",
    }
    vars(mod).update(odd)
    sys.modules[mod.__name__] = mod
    try:
        for watch in (GlobalsWatch([mod]), GlobalsWatch()):
            before = watch.snapshot()
            mod.FINE.append(3)
            after = watch.snapshot()
            rows = _rows(watch.grown(before, after))
            assert rows[(mod.__name__, "FINE")][2] == 1
            records = {n: r for (m, n), r in after.records.items() if m == mod.__name__}
            assert set(records) == {"NO_SIZE", "LIAR", "HOSTILE", "FINE"}
            assert records["NO_SIZE"].length == 2 and records["NO_SIZE"].size is None
            assert records["LIAR"].length == 3
            assert records["HOSTILE"].type.endswith("_HostileType")
        assert calls == []  # the module's __getattr__ was never called
    finally:
        del sys.modules[mod.__name__]


def test_lazy_modules_stay_unloaded():
    by_name = _lazy_module("leaklab_lazy_by_name", "json.tool")
    by_object = _lazy_module("leaklab_lazy_by_object", "json.tool")
    try:
        watches = [GlobalsWatch("leaklab_lazy_by_name"), GlobalsWatch(by_object), GlobalsWatch()]
        snaps = [w.snapshot() for w in watches]
        assert snaps[0].modules == ("leaklab_lazy_by_name",)
        assert snaps[1].modules == ("json.tool",)  # a module object is named by its __name__
        assert type(by_name) is importlib.util._LazyModule
        assert type(by_object) is importlib.util._LazyModule
        assert "main" not in state._MODULE_DICT.__get__(by_name)  # json.tool's code never ran
    finally:
        del sys.modules["leaklab_lazy_by_name"], sys.modules["leaklab_lazy_by_object"]


def test_non_modules_in_sys_modules_are_skipped():
    sys.modules["leaklab_not_a_module"] = _LyingClass([1])  # type: ignore[assignment]
    sys.modules["leaklab_blocked"] = None  # type: ignore[assignment]
    try:
        snap = GlobalsWatch().snapshot()
    finally:
        del sys.modules["leaklab_not_a_module"], sys.modules["leaklab_blocked"]
    assert "leaklab_not_a_module" not in snap.modules and "leaklab_blocked" not in snap.modules


# --------------------------------------------------------------------------- scope


def test_default_scope_is_user_code_only():
    import json

    import objgraph  # noqa: F401  (site-packages)

    snap = GlobalsWatch().snapshot()
    assert {"leaklab", "leaklab.state", __name__} <= set(snap.modules)
    for name in ("builtins", "sys", "json", "collections", "pandas", "objgraph", "pytest",
                 "_pytest.python"):
        assert name not in snap.modules
    roots = state._excluded_roots()
    assert is_user_module("leaklab.state", state, roots)
    assert not is_user_module("json", json, roots)
    assert not is_user_module("pandas", sys.modules["pandas"], roots)
    assert not is_user_module("builtins", sys.modules["builtins"], roots)
    assert is_user_module("leaklab_made_at_run_time", types.ModuleType("x"), roots)
    assert not is_user_module("cython_runtime", types.ModuleType("cython_runtime"), roots)
    # A file-less submodule belongs where its package does.
    assert not is_user_module("pandas.leaklab_virtual", types.ModuleType("v"), roots)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (42, "modules must be None, a module, a module name or an iterable of them, got int"),
        ([sys, 3.5], r"modules\[1\] must be a module or a module name, got float: 3.5"),
        ([b"json"], r"modules\[0\] must be a module or a module name, got bytes"),
    ],
)
def test_modules_of_the_wrong_type_raise_type_error(modules, message):
    with pytest.raises(TypeError, match=message):
        GlobalsWatch(modules)


def test_unknown_module_names_and_empty_scope_raise_value_error():
    with pytest.raises(ValueError, match=r"modules\[1\]: no module named 'leaklab_no_such_module'"):
        GlobalsWatch(["json", "leaklab_no_such_module"])
    assert "leaklab_never_imported_xyz" not in sys.modules  # the watch did not try to import it
    with pytest.raises(ValueError, match="leaklab_never_imported_xyz"):
        GlobalsWatch("leaklab_never_imported_xyz")
    assert "leaklab_never_imported_xyz" not in sys.modules
    with pytest.raises(ValueError, match="modules is empty"):
        GlobalsWatch([])


@pytest.mark.parametrize("bad", [True, False, 1.0, "2", None])
def test_min_growth_of_the_wrong_type_raises_type_error(bad):
    with pytest.raises(TypeError, match="min_growth must be an int"):
        GlobalsWatch(min_growth=bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_min_growth_below_one_raises_value_error(bad):
    with pytest.raises(ValueError, match=f"min_growth must be >= 1, got {bad}"):
        GlobalsWatch(min_growth=bad)


def test_grown_rejects_non_snapshots_and_reversed_order():
    watch = GlobalsWatch([state])
    first = watch.snapshot()
    second = watch.snapshot()
    with pytest.raises(TypeError, match="before must be a Snapshot, got dict"):
        watch.grown({}, second)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="after must be a Snapshot, got NoneType"):
        watch.grown(first, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass the older snapshot first"):
        watch.grown(second, first)
    assert isinstance(first, Snapshot)
    assert repr(watch) == "GlobalsWatch(['leaklab.state'], min_growth=1)"
    assert repr(GlobalsWatch(min_growth=3)) == "GlobalsWatch(None, min_growth=3)"


class _Index:
    """An int-like (as numpy.int64 is)."""

    def __init__(self, n):
        self.n = n

    def __index__(self):
        return self.n


def test_min_growth_accepts_int_likes_as_other_int_arguments_do():
    watch = GlobalsWatch([state], min_growth=_Index(3))
    assert watch.min_growth == 3 and type(watch.min_growth) is int
    with pytest.raises(ValueError, match="min_growth must be >= 1, got 0"):
        GlobalsWatch(min_growth=_Index(0))


def test_min_growth_accepts_numpy_integers():
    np = pytest.importorskip("numpy")
    watch = GlobalsWatch([state], min_growth=np.int64(2))
    assert watch.min_growth == 2 and type(watch.min_growth) is int
    assert repr(watch) == "GlobalsWatch(['leaklab.state'], min_growth=2)"
    with pytest.raises(TypeError, match="min_growth must be an int"):
        GlobalsWatch(min_growth=np.float64(2.0))
