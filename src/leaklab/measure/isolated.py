"""RSS sampled while a function runs in a fresh Python process (chapter 00, then every chapter).

:func:`track_isolated` is how the chapters compare variants side by side: each runs in a new
interpreter, so every curve starts from the same baseline. This module is the parent's side: it
names the target, sends it with its arguments by pickle, waits (with an optional timeout), and
turns what comes back into a :class:`~leaklab.measure.MemoryTrace`, the child's exception, or a
RuntimeError that says how the child ended. The child's side is :mod:`leaklab._isolated`, which
runs :func:`~leaklab.measure.sampling.sample_rss`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from typing import Any

from leaklab._checks import check_callable, check_seconds
from leaklab.measure.trace import MemoryTrace, _frame


def _target_name(target: Any) -> str:
    """Turn an importable function (or a ``"module:function"`` string) into its import path."""
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"target must look like 'package.module:function', got {target!r}")
        return target
    if not callable(target):
        raise TypeError(
            f"target must be an importable function or a 'package.module:function' string, "
            f"got {type(target).__name__}: {target!r}"
        )
    bound_to = getattr(target, "__self__", None)
    if bound_to is not None and not isinstance(bound_to, (type, types.ModuleType)):
        # Its import path names the plain function: the child would call it without the object.
        raise TypeError(
            f"target {target!r} is a bound method: a fresh process cannot rebuild the "
            f"{type(bound_to).__name__} object it is bound to; pass a module-level function "
            "(a classmethod or staticmethod works too) that builds what it needs"
        )
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"target {target!r} cannot be imported by a fresh process (defined in a notebook, "
            "a lambda or a nested function); put it in a module, e.g. under leaklab.scenarios"
        )
    return f"{module}:{qualname}"


def resolve_target(name: str) -> Callable[..., Any]:
    """Import ``"package.module:attr.path"`` and return the callable it names."""
    module_name, _, attr_path = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    check_callable("target", obj)
    return obj


def track_isolated(
    target: Any, *args: Any, interval: float = 0.01, timeout: float | None = None, **kwargs: Any
) -> MemoryTrace:
    """Like :func:`track`, but the function runs in a fresh Python process.

    Every variant measured this way starts from the same baseline (a new interpreter that has
    imported leaklab), which is what side-by-side RSS curves need. ``target`` is an importable
    function or a ``"package.module:function"`` string (not a bound method: the child could not
    rebuild its object); the arguments and the result travel by pickle. An exception in the child
    is raised again here (a RuntimeError with the child's traceback if it cannot be unpickled).

    If the target ends its process instead (``sys.exit()``, ``os._exit()``, a KeyboardInterrupt
    raised in it, a crash), a RuntimeError says so. ``timeout`` (seconds, default none) stops a
    run that takes longer with a TimeoutError. Nothing is left behind in any case: the child runs
    in a session of its own, which is killed when the run ends; the child and its sampler end
    with this process if it dies first; request and response travel in unnamed temporary files.
    ``interval`` and ``timeout`` are this function's own: they are not passed to the target.
    """
    name = _target_name(target)
    check_seconds("interval", interval)
    if timeout is not None:
        check_seconds("timeout", timeout)
    request = pickle.dumps((name, args, kwargs, interval))  # fails here, before any process starts
    with tempfile.TemporaryFile() as request_file, tempfile.TemporaryFile() as response_file, \
            tempfile.TemporaryFile() as stderr_file:
        request_file.write(request)
        request_file.flush()
        request_file.seek(0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "leaklab._isolated", str(response_file.fileno()), str(os.getpid())],
            stdin=request_file,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            pass_fds=(response_file.fileno(),),
            start_new_session=True,
        )
        try:
            finished = _wait_for_exit(proc, timeout)
        finally:
            _end_session(proc)  # also on KeyboardInterrupt here
        if not finished:
            raise TimeoutError(
                f"isolated run of {name} did not finish within timeout={timeout} s and was stopped"
            )
        stderr_file.seek(0)
        tail = stderr_file.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        stderr_text = ("; its stderr ended with:\n" + "\n".join(tail)) if tail else ""
        response_file.seek(0)
        payload = response_file.read()
    if not payload:
        code = proc.returncode
        how = (f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}")
        raise RuntimeError(f"isolated run of {name}: the child process {how} without a result"
                           + stderr_text)
    try:
        outcome = pickle.loads(payload)
    except Exception as exc:
        raise RuntimeError(
            f"isolated run of {name}: its result could not be unpickled in this process "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if "ended" in outcome:
        raise RuntimeError(f"isolated run of {name}: the target {outcome['ended']}" + stderr_text)
    if "error" in outcome:
        error, reason = None, "it could not be pickled and rebuilt in the child"
        if outcome["error"] is not None:
            try:
                error = pickle.loads(outcome["error"])
            except Exception as exc:  # its class is not importable here, say
                reason = f"it cannot be unpickled here: {type(exc).__name__}: {exc}"
        if error is None:
            raise RuntimeError(
                f"isolated run of {name} raised {outcome['error_type']}: {outcome['error_text']}\n"
                f"({reason}, so it arrives as this RuntimeError); the child's traceback:\n"
                f"{outcome['traceback']}"
            )
        raise error
    return MemoryTrace(frame=_frame(outcome["frame"]), result=outcome["result"])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _wait_for_exit(proc: subprocess.Popen[Any], timeout: float | None) -> bool:
    """Wait until ``proc`` has exited, without reaping it (its pid stays its own, so its process
    group can still be killed safely). False when ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:  # an old kernel
            pidfd = None
    try:
        delay = 0.001
        while True:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if pidfd is not None:
                select.select([pidfd], [], [], left)  # readable once the process has exited
            else:
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, 0.05)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _end_session(proc: subprocess.Popen[Any]) -> None:
    """Kill whatever still runs in the child's session (the child, its sampler, anything the
    target started there), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
