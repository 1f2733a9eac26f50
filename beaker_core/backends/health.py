"""A server's down mark: after a failure, calls fail fast instead of each waiting for a server that does not answer.

A hung server (stopped, overloaded, behind a network that drops packets) costs its reply timeout on every call, for
the whole outage. A network backend keeps one :class:`DownMark` per server (for redis, per shared client). A call
that fails to reach the server marks it down; while it is marked, calls do not go to the server: the backend
raises its usual :class:`~beaker_core.exceptions.BackendError` naming the server at once, or, for a cache read or
write that may degrade, answers a miss. When the mark is due, the next caller probes the server: a cheap command
(memcached's ``version``, redis's ``PING``) on a new connection with a short timeout (:data:`PROBE_TIMEOUT`). One
caller probes at a time; the others keep failing fast meanwhile. A probe that gets an answer clears the mark and its
caller goes on with its own command; one that does not marks the server down again.

How long a mark lasts depends on what the failure cost:

* a call that **waited** (a reply or connect timeout, an unreachable host or a failing name lookup) marks the server
  down for the backend's ``dead_retry`` seconds (:data:`DEFAULT_DEAD_RETRY` unless configured);
* a call that was **turned away at once** (connection refused, reset or closed: the host answered, the server
  process is gone or restarting) costs nothing to repeat, so its mark is due at once. The next call probes, and a
  restarted server is used again by the first call after it is back, not an interval later.

Why a probe with a short timeout rather than letting the next call through with its own: while the server is
still hung, that call would cost the full reply timeout again, once per interval for the whole outage. A probe
costs at most :data:`PROBE_TIMEOUT` per interval; a live server answers it in a fraction of that, and one that
cannot is treated as still down.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
import time
import weakref
from typing import Any, Callable

#: seconds a server that stopped answering is marked down before a probe checks whether it is back
DEFAULT_DEAD_RETRY = 2.0
#: seconds a probe waits for a connection, and then for the server's answer
PROBE_TIMEOUT = 0.25
#: probes a probe's caller may take at most, in units of PROBE_TIMEOUT, before another caller may probe
#: (only reached when the probing caller vanished, as in a child forked while its parent was probing)
_LEASE_PROBES = 8

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ETIMEDOUT}


def waited(error: BaseException, timeouts: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether a failed call waited for the server rather than being turned away at once: ``error`` or one of its
    causes is a timeout (``TimeoutError``; ``BlockingIOError``, which a blocking socket with a kernel timeout
    raises; one of the client library's ``timeouts``), an unreachable host or network, or a failed name lookup."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 8:
        if isinstance(current, (TimeoutError, BlockingIOError, socket.gaierror, *timeouts)):
            return True
        if isinstance(current, OSError) and current.errno in _UNREACHABLE:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def describe_error(error: BaseException) -> str:
    """``Type: message`` (or just ``Type`` when the message is empty), for the mark's ``last_error``."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class DownMark:
    """Whether one server is marked down, and who may probe it.

    :param probe: called without arguments to check that the server answers; it returns when it does and raises
        when it does not. The backend gives it a short timeout (see :data:`PROBE_TIMEOUT`).
    :param interval: seconds a server that made a call wait is marked down (the backend's ``dead_retry``);
        0 lets the next call probe at once.
    :param probe_timeout: the probe's timeout, which bounds how long other callers leave the probe to one caller.
    :param timeouts: the client library's timeout exceptions, for :func:`waited`.
    :param describe: turns a probe's exception into ``last_error`` (a backend scrubs its password here).
    :param clock: a monotonic clock in seconds, injected by tests.

    ``down_until`` is 0.0 while the server is up: hot paths test only that attribute, and call :meth:`admits` (which
    may probe) when it is set.
    """

    def __init__(self, probe: Callable[[], Any], interval: float = DEFAULT_DEAD_RETRY, *,
                 probe_timeout: float = PROBE_TIMEOUT, timeouts: tuple[type[BaseException], ...] = (),
                 describe: Callable[[BaseException], str] = describe_error,
                 clock: Callable[[], float] = time.monotonic):
        self.down_until = 0.0
        self.last_error = ""
        self.interval = interval
        self._probe = probe
        self._describe = describe
        self._timeouts = timeouts
        self._lease = _LEASE_PROBES * probe_timeout
        self._clock = clock
        self._guard = threading.Lock()
        _live_marks.add(self)

    def admits(self) -> bool:
        """Whether a call may go to the server now: always while it is not marked down; while it is, only the call
        that finds the mark due, takes the probe and gets an answer. False means: fail fast."""
        until = self.down_until
        if not until:
            return True
        now = self._clock()
        if now < until:
            return False
        with self._guard:
            if self.down_until != until:  # another caller took the probe, or the mark was cleared, meanwhile
                return not self.down_until
            self.down_until = now + self._lease  # the other callers fail fast while this one probes
        try:
            self._probe()
        except Exception as exc:
            self.mark_down(self._describe(exc), waited(exc, self._timeouts))
            return False
        self.mark_up()
        return True

    def mark_down(self, detail: str, after_wait: bool = True) -> bool:
        """Mark the server down after a failed call (``detail`` says how it failed; ``after_wait``: the call cost
        a timeout, see :func:`waited`). True when this begins an outage: the moment to log it, once."""
        with self._guard:
            began = not self.down_until
            self.down_until = self._clock() + (self.interval if after_wait else 0.0)
            self.last_error = detail
        return began

    def mark_up(self) -> None:
        """The server answered: calls go to it again."""
        self.down_until = 0.0

    def __repr__(self) -> str:
        state = f"down ({self.last_error})" if self.down_until else "up"
        return f"<{type(self).__name__} {state}>"


_live_marks: "weakref.WeakSet[DownMark]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for mark in list(_live_marks):
        mark._guard = threading.Lock()  # a lock another thread of the parent held stays held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
