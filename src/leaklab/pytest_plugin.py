"""leaklab's pytest plugin: the ``no_leak`` marker, a leak regression test in one line.

Installing leaklab registers it (the ``pytest11`` entry point ``leaklab``); ``-p no:leaklab``
turns it off. It does nothing for a test without the marker::

    @pytest.mark.no_leak(calls=1000, warmup=100, max_bytes_per_call=64)
    def test_handle_request_keeps_nothing(service):
        service.handle(make_request())

A marked test's body runs ``warmup`` times, then ``calls`` times (all keyword arguments optional,
with :func:`leaklab.testing.assert_no_leak`'s defaults), and the test fails with the report of
:func:`leaklab.testing.assert_no_leak` (bytes per call, the top lines as ``file:line``) when the
body keeps more than ``max_bytes_per_call`` bytes per call. Notes:

- Fixtures are set up once: every run of the body gets the same fixture values. What a fixture
  keeps between runs (a list the body appends to) counts as kept by the body.
- The body should be quick: it runs ``warmup + calls`` times.
- An ``async def`` test is awaited on leaklab's own event loop, one loop run per call, with or
  without an async plugin; fixtures bound to another plugin's loop cannot be used there.
- Bad marker arguments fail the test with a message naming the argument.
- The report is also recorded in the test's ``user_properties`` (``leak_bytes_per_call``).

It works wherever CPython runs (tracemalloc and psutil), without memray.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

MARKER = "no_leak"
_OPTIONS = ("calls", "warmup", "max_bytes_per_call")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(calls=1000, warmup=100, max_bytes_per_call=64): run the test's body warmup "
        "times, then calls times, and fail it if each half of the calls keeps more than "
        "max_bytes_per_call bytes per call (leaklab.testing.assert_no_leak)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        return None  # not ours: pytest (or another plugin) calls the test as usual
    # Imported here: a run without the marker never imports leaklab's measuring code.
    from leaklab.testing import _checked, _report

    if marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} takes keyword arguments only "
                    f"({', '.join(_OPTIONS)}), got positional {marker.args!r}", pytrace=False)
    unknown = sorted(set(marker.kwargs) - set(_OPTIONS))
    if unknown:
        pytest.fail(f"@pytest.mark.{MARKER} got unknown argument(s) {', '.join(unknown)}; "
                    f"it takes {', '.join(_OPTIONS)}", pytrace=False)
    options = {"calls": 1000, "warmup": 100, "max_bytes_per_call": 64, **marker.kwargs}
    body = pyfuncitem.obj
    try:
        calls, warmup, limit = _checked(body, options["calls"], options["warmup"],
                                        options["max_bytes_per_call"])
    except (TypeError, ValueError) as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: {exc}", pytrace=False)
    report = _report(body, (), _test_arguments(pyfuncitem), calls=calls, warmup=warmup,
                     threshold=limit)
    pyfuncitem.user_properties.append(("leak_bytes_per_call", round(report.bytes_per_call, 1)))
    if report.leaking:
        pytest.fail(f"LeakError: {report.message()}", pytrace=False)
    return True


def _test_arguments(pyfuncitem: pytest.Function) -> dict[str, Any]:
    """The fixture values the test function takes, as pytest's own call passes them."""
    funcargs = pyfuncitem.funcargs
    info = getattr(pyfuncitem, "_fixtureinfo", None)
    names = getattr(info, "argnames", None)
    if names is None:  # pytest's private attribute moved: the signature says the same
        names = [name for name in inspect.signature(pyfuncitem.obj).parameters if name in funcargs]
    return {name: funcargs[name] for name in names}
