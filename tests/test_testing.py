"""Tests for leaklab.testing (leak_report, assert_no_leak) and its pytest plugin (the no_leak
marker): the verdicts issue 13 lists, the top lines, async functions, bad arguments."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import itertools
import math
import os
import re
import sys
import tracemalloc
import uuid
from pathlib import Path

import pytest

import leaklab
from leaklab import pytest_plugin
from leaklab.caches import LRUCache
from leaklab.testing import LeakError, LeakReport, TopLine, assert_no_leak, leak_report

pytest_plugins = ["pytester"]

HERE = __file__
LEAKLAB_DIR = os.path.dirname(os.path.abspath(leaklab.__file__))


def _line_of(tag: str) -> int:
    """The line of this file that carries the comment ``# <tag>``."""
    lines = Path(HERE).read_text().splitlines()
    found = [i for i, text in enumerate(lines, 1) if re.search(rf"# {tag}\b", text)]
    assert len(found) == 1, (tag, found)
    return found[0]


def _assert_names_line(report: LeakReport, tag: str) -> None:
    assert report.top, report
    assert (report.top[0].filename, report.top[0].lineno) == (HERE, _line_of(tag)), report


def _assert_user_lines_only(report: LeakReport) -> None:
    for line in report.top:
        assert isinstance(line, TopLine) and line.bytes > 0, report
        assert not os.path.abspath(line.filename).startswith(
            os.path.join(LEAKLAB_DIR, "testing.py")), report
        assert not os.path.abspath(line.filename).startswith(
            os.path.join(LEAKLAB_DIR, "measure")), report
        assert "tracemalloc" not in line.filename and "importlib" not in line.filename, report


# --------------------------------------------------------------------------- flagged


_KEPT: list[bytes] = []


@pytest.fixture(autouse=True)
def _forget_kept():
    yield
    _KEPT.clear()
    _LISTENERS.clear()


def _keep_100_bytes() -> None:
    _KEPT.append(bytes(100 - sys.getsizeof(b"")))  # KEEP-100: a 100-byte object per call


def test_a_function_keeping_100_bytes_per_call_is_flagged_and_its_line_named():
    report = leak_report(_keep_100_bytes)
    assert report.leaking and report.calls == 1000 and report.warmup == 100, report
    # 100 bytes of object plus the list's slot for it (8 bytes, over-allocated by about 1/8).
    assert 100 <= report.bytes_per_call <= 115, report
    assert "tracemalloc" in report.fired_by
    _assert_names_line(report, "KEEP-100")
    assert report.top[0].bytes >= 100 * 1000
    assert len(report.top) <= 5 and list(report.top) == sorted(
        report.top, key=lambda line: -line.bytes)
    _assert_user_lines_only(report)


class _Request:
    """Request-scoped: one per call, expected to die with the call."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.headers = {"x-request-id": str(request_id), "accept": "text/html"}  # REQUEST-HEADERS

    @functools.lru_cache(maxsize=None)  # noqa: B019 - the bug under test
    def parsed_headers(self) -> dict[str, str]:
        return {key.title(): value for key, value in self.headers.items()}


@pytest.mark.parametrize("bound", ["lru_cache(maxsize=None)", "cache"])
def test_a_method_cached_with_lru_cache_on_request_scoped_objects_is_flagged(bound):
    ids = itertools.count()
    cls = _Request
    if bound == "cache":
        class _CachedRequest(_Request):
            @functools.cache  # noqa: B019
            def parsed_headers(self) -> dict[str, str]:
                return {key.title(): value for key, value in self.headers.items()}
        cls = _CachedRequest

    def handle() -> str:
        request = cls(next(ids))
        return request.parsed_headers()["Accept"]  # the cache keeps `request` alive

    report = leak_report(handle)
    assert report.leaking and report.bytes_per_call > 500, report
    lines = {(line.filename, line.lineno) for line in report.top}
    assert (HERE, _line_of("REQUEST-HEADERS")) in lines, report
    _assert_user_lines_only(report)
    cls.parsed_headers.cache_clear()


def test_a_closure_appending_to_an_outer_list_is_flagged():
    def make_handler():
        seen = []

        def handle(path: str) -> int:
            seen.append({"path": path, "status": 200})  # CLOSURE-APPEND
            return len(seen)

        return handle

    report = leak_report(make_handler(), "/items")
    assert report.leaking and report.bytes_per_call > 64, report
    _assert_names_line(report, "CLOSURE-APPEND")
    _assert_user_lines_only(report)


_LISTENERS: list = []


class _Session:
    def __init__(self) -> None:
        self.state = {"user": "someone", "items": list(range(10))}  # SESSION-STATE
        _LISTENERS.append(self.on_event)  # registered per call, never removed

    def on_event(self, event: object) -> None:
        pass


def test_a_listener_registered_per_call_and_never_removed_is_flagged():
    report = assert_no_leak_fails(_Session)
    lines = {(line.filename, line.lineno) for line in report.top}
    assert (HERE, _line_of("SESSION-STATE")) in lines, report
    _assert_user_lines_only(report)


def assert_no_leak_fails(fn, *args, **kwargs) -> LeakReport:
    with pytest.raises(LeakError) as caught:
        assert_no_leak(fn, *args, **kwargs)
    assert isinstance(caught.value, AssertionError)
    report = caught.value.report
    assert report.leaking
    return report


# --------------------------------------------------------------------------- passed


def _churn_50mb() -> int:
    block = b"x" * 50_000_000  # every page written: RSS sees it while the call runs
    return len(block)


def test_a_function_allocating_and_freeing_50mb_per_call_passes():
    report = assert_no_leak(_churn_50mb, calls=20, warmup=2)
    assert not report.leaking and report.fired_by == (), report
    assert abs(report.bytes_per_call) < 64, report


@pytest.mark.parametrize("kind", ["LRUCache(64)", "lru_cache(maxsize=64)"])
def test_a_function_filling_a_bounded_cache_passes(kind):
    keys = itertools.count()
    if kind.startswith("LRUCache"):
        cache = LRUCache(64)

        def lookup() -> bytes:
            key = next(keys)
            value = key.to_bytes(8, "little") * 32
            cache.set(key, value)
            return value
    else:
        @functools.lru_cache(maxsize=64)
        def render(key: int) -> bytes:
            return key.to_bytes(8, "little") * 32

        def lookup() -> bytes:
            return render(next(keys))

    # With no warm-up the cache fills during the first half of the calls: the second is flat.
    report = assert_no_leak(lookup, warmup=100 if kind.startswith("LRU") else 0)
    assert report.fired_by == (), report


def test_a_function_warming_a_lazy_import_on_its_first_call_passes(tmp_path, monkeypatch):
    names = [f"leaklab_lazy_{uuid.uuid4().hex}" for _ in range(2)]
    for name in names:
        (tmp_path / f"{name}.py").write_text(
            "TABLE = {i: str(i) * 8 for i in range(5000)}\n"
            "def lookup(i):\n    return TABLE[i % 5000]\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def handler(name):
        def handle(i: int = 7) -> str:
            module = importlib.import_module(name)  # imported on the first call only
            return module.lookup(i)
        return handle

    try:
        for name, warmup in zip(names, (100, 0)):
            report = assert_no_leak(handler(name), warmup=warmup)
            assert name in sys.modules and report.fired_by == (), report
    finally:
        for name in names:
            sys.modules.pop(name, None)


def test_a_function_warming_the_regex_cache_passes():
    token = uuid.uuid4().hex  # patterns re has never compiled
    patterns = [rf"{token}-{k}-(\d+)" for k in range(20)]
    turn = itertools.count()

    def parse() -> str | None:
        k = next(turn) % 20
        match = re.match(patterns[k], f"{token}-{k}-42")
        return match.group(1) if match else None

    assert parse() == "42"
    report = assert_no_leak(parse)
    assert report.fired_by == (), report


def test_a_function_whose_memory_is_released_every_100_calls_passes():
    batch: list[bytes] = []

    def buffered() -> None:
        batch.append(bytes(10_000))
        if len(batch) >= 100:
            batch.clear()  # flushed: released every 100 calls

    for _ in range(37):  # the buffer is mid-cycle when the check starts: the phase is irrelevant
        buffered()
    report = assert_no_leak(buffered)
    assert report.fired_by == (), report
    assert abs(report.bytes_per_call) < 64, report


# --------------------------------------------------------------------------- assert_no_leak


def test_assert_no_leak_message_gives_bytes_per_call_and_top_lines_as_file_line():
    with pytest.raises(LeakError) as caught:
        assert_no_leak(_keep_100_bytes, calls=200, warmup=10)
    message = str(caught.value)
    report = caught.value.report
    assert f"{report.bytes_per_call:,.1f} bytes per call" in message
    assert "limit 64" in message
    assert re.search(rf"test_testing\.py:{_line_of('KEEP-100')}\b", message), message
    assert report.calls == 200 and report.warmup == 10


def test_assert_no_leak_limit_is_max_bytes_per_call():
    report = assert_no_leak(_keep_100_bytes, calls=200, warmup=10, max_bytes_per_call=4096)
    assert not report.leaking and report.bytes_per_call > 100
    assert_no_leak_fails(_keep_100_bytes, calls=200, warmup=10, max_bytes_per_call=90)


def test_leak_report_passes_arguments_and_calls_exactly_warmup_plus_calls_times():
    seen: list[tuple] = []

    def record(a, b, *, c):
        seen.append((a, b, c))

    report = leak_report(record, 1, 2, c=3, calls=30, warmup=5)
    assert len(seen) == 35 and set(seen) == {(1, 2, 3)}
    assert report.calls == 30 and report.warmup == 5


def test_what_a_c_callable_keeps_is_charged_to_the_line_that_measured_it():
    kept: list[int] = []
    report = leak_report(kept.extend, range(10), calls=200, warmup=10)  # C-CALLABLE
    assert report.leaking and 80 <= report.bytes_per_call <= 100, report  # 10 slots per call
    _assert_names_line(report, "C-CALLABLE")


def test_an_exception_from_the_function_propagates():
    def boom():
        raise KeyError("from the workload")

    with pytest.raises(KeyError, match="from the workload"):
        leak_report(boom, calls=10)
    with pytest.raises(KeyError):
        leak_report(boom, calls=10, warmup=0)


def test_an_outer_tracemalloc_is_used_and_left_running_and_an_own_one_stopped():
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already runs for the whole session (-X tracemalloc)")
    leak_report(_keep_100_bytes, calls=20, warmup=1)
    assert not tracemalloc.is_tracing()
    tracemalloc.start(8)
    try:
        report = leak_report(_keep_100_bytes, calls=200, warmup=10)
        assert tracemalloc.is_tracing() and report.leaking
        _assert_names_line(report, "KEEP-100")
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- async


_ASYNC_KEPT: list[bytes] = []


async def _async_leak() -> None:
    await asyncio.sleep(0)
    _ASYNC_KEPT.append(bytes(1024))  # ASYNC-LEAK


async def _async_clean() -> int:
    await asyncio.sleep(0)
    return len([bytes(1024) for _ in range(4)])


def test_async_functions_are_awaited_per_call():
    try:
        report = leak_report(_async_leak, calls=300, warmup=10)
        assert report.leaking and len(_ASYNC_KEPT) == 310, report
        assert 1024 <= report.bytes_per_call <= 1100, report
        _assert_names_line(report, "ASYNC-LEAK")
        _assert_user_lines_only(report)
        assert not leak_report(_async_clean, calls=300, warmup=10).leaking
        # A partial of one, and a plain function returning a coroutine, are awaited too.
        _ASYNC_KEPT.clear()
        assert leak_report(functools.partial(_async_leak), calls=50, warmup=5).leaking
        assert len(_ASYNC_KEPT) == 55
        _ASYNC_KEPT.clear()
        assert leak_report(lambda: _async_leak(), calls=50, warmup=5).leaking
        assert len(_ASYNC_KEPT) == 55
    finally:
        _ASYNC_KEPT.clear()


def test_async_functions_are_measured_from_inside_a_running_loop():
    async def main() -> tuple[LeakReport, LeakReport]:
        return (leak_report(_async_leak, calls=200, warmup=10),
                leak_report(_async_clean, calls=200, warmup=10))

    try:
        leaky, clean = asyncio.run(main())
        assert leaky.leaking and not clean.leaking
        with pytest.raises(LeakError):
            asyncio.run(_assert_in_loop())
    finally:
        _ASYNC_KEPT.clear()


async def _assert_in_loop() -> None:
    assert_no_leak(_async_leak, calls=100, warmup=5)


# --------------------------------------------------------------------------- bad arguments


def _gen():
    yield 1


async def _agen():
    yield 1


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"fn": 42}, TypeError, "fn"),
        ({"fn": _gen}, TypeError, "fn"),
        ({"fn": _agen}, TypeError, "fn"),
        ({"calls": 0}, ValueError, "calls"),
        ({"calls": -5}, ValueError, "calls"),
        ({"calls": 1.5}, TypeError, "calls"),
        ({"calls": True}, TypeError, "calls"),
        ({"calls": "100"}, TypeError, "calls"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"warmup": 2.0}, TypeError, "warmup"),
        ({"max_bytes_per_call": -1}, ValueError, "max_bytes_per_call"),
        ({"max_bytes_per_call": math.nan}, ValueError, "max_bytes_per_call"),
        ({"max_bytes_per_call": "64"}, TypeError, "max_bytes_per_call"),
        ({"max_bytes_per_call": None}, TypeError, "max_bytes_per_call"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_argument_before_any_call(kwargs, error, name):
    called: list[int] = []
    fn = kwargs.pop("fn", lambda: called.append(1))
    with pytest.raises(error, match=name):
        assert_no_leak(fn, **kwargs)
    if "max_bytes_per_call" not in kwargs:
        with pytest.raises(error, match=name):
            leak_report(fn, **kwargs)
    assert called == []


# --------------------------------------------------------------------------- the pytest plugin

_MARKED = """
import asyncio
import pytest

kept = []

@pytest.mark.no_leak(calls=200, warmup=10)
def test_leaky():
    kept.append(bytes(1024))  # SYNC

@pytest.mark.no_leak(calls=200, warmup=10)
def test_clean(tmp_path):
    assert b"x" * 1000

@pytest.mark.no_leak(calls=200, warmup=10, max_bytes_per_call=4096)
def test_leaky_within_a_raised_limit():
    kept.append(bytes(1024))

@pytest.mark.no_leak(calls=100, warmup=5)
async def test_async_leaky():
    await asyncio.sleep(0)
    kept.append(bytes(2048))  # ASYNC

@pytest.mark.parametrize("calls", [3])
@pytest.mark.no_leak(calls=50, warmup=5)
def test_takes_an_argument_named_like_an_option(calls):
    assert calls == 3

def test_unmarked():
    pass
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytester whose runs load leaklab's plugin explicitly (and no other installed one)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def _run(pytester, *args):
    # In this process the plugin module is imported already: pytest cannot rewrite its asserts
    # (it has none) and says so.
    return pytester.runpytest_inprocess("-p", "leaklab.pytest_plugin", "--strict-markers",
                                        "-p", "no:cacheprovider",
                                        "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_the_marker_passes_a_clean_test_and_fails_a_leaky_one_with_the_report(inner):
    path = inner.makepyfile(test_marked=_MARKED)
    lines = path.read_text().splitlines()
    sync_line, async_line = (next(i for i, text in enumerate(lines, 1) if text.endswith(f"# {tag}"))
                             for tag in ("SYNC", "ASYNC"))
    result = _run(inner, "-rf")
    result.assert_outcomes(passed=4, failed=2)
    text = result.stdout.str()
    failed = set(re.findall(r"^FAILED test_marked\.py::(\w+)", text, re.MULTILINE))
    assert failed == {"test_leaky", "test_async_leaky"}, text
    result.stdout.fnmatch_lines([
        "*LeakError: test_leaky keeps memory: * bytes per call (limit 64) over 200 calls after "
        "10 warm-up calls",
        "*fired by: tracemalloc*",
        f"*test_marked.py:{sync_line} *B (* per call)",
    ])
    assert f"test_marked.py:{async_line} " in text  # the async body's line
    # pytest.fail(pytrace=False): the report, not a traceback through leaklab
    assert "leaklab/testing.py" not in text and "leaklab/measure" not in text


def test_the_marker_runs_the_body_warmup_plus_calls_times(inner):
    inner.makepyfile(test_counted="""
        import pytest
        runs = []

        @pytest.mark.no_leak(calls=40, warmup=7)
        def test_counted(tmp_path):
            runs.append(tmp_path)

        def test_after():
            assert len(runs) == 47 and len(set(runs)) == 1  # fixtures are set up once
    """)
    _run(inner).assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("no_leak(100)", "*keyword arguments only*"),
        ("no_leak(call=100)", "*unknown argument(s) call*"),
        ("no_leak(calls=0)", "*calls must be an int >= 1*"),
        ("no_leak(warmup=-1)", "*warmup must be an int >= 0*"),
        ("no_leak(max_bytes_per_call='64')", "*max_bytes_per_call must be a number*"),
    ],
)
def test_bad_marker_arguments_fail_the_test_naming_them(inner, marker, expected):
    inner.makepyfile(test_bad=f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked():
            pass
    """)
    result = _run(inner)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected])


def test_the_marker_is_registered_and_unmarked_tests_are_left_alone(inner):
    inner.makepyfile(test_plain="""
        def test_plain():
            assert True
    """)
    result = _run(inner, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.no_leak(calls=1000, warmup=100, "
                                 "max_bytes_per_call=64):*"])
    _run(inner).assert_outcomes(passed=1)


def test_installing_leaklab_registers_the_plugin_by_entry_point(pytestconfig):
    points = importlib.metadata.entry_points(group="pytest11")
    ours = [point for point in points if point.name == "leaklab"]
    assert [point.value for point in ours] == ["leaklab.pytest_plugin"]
    if not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        assert pytestconfig.pluginmanager.get_plugin("leaklab") is pytest_plugin


def test_top_lines_never_show_where_the_machine_keeps_its_files(tmp_path, monkeypatch):
    """A report read in a notebook (another working directory) names files as imported."""
    from leaklab.testing import TopLine
    import leaklab.caches.lru

    monkeypatch.chdir(tmp_path)
    line = TopLine(leaklab.caches.lru.__file__, 10, 100)
    assert str(line) == os.path.join("leaklab", "caches", "lru.py:10")
    assert str(TopLine("/somewhere/else/entirely.py", 3, 1)) == "entirely.py:3"
