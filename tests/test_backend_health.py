"""The down mark of network backends (beaker_core.backends.health), on an injected clock: nothing sleeps."""
import errno
import socket
import threading

import pytest

from beaker_core.backends.health import DownMark, describe_error, waited


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class Server:
    """A probe target: answers or not, and counts the probes."""

    def __init__(self):
        self.failure = None
        self.probes = 0

    def probe(self):
        self.probes += 1
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server():
    return Server()


@pytest.fixture
def mark(server, clock):
    return DownMark(server.probe, 5.0, probe_timeout=0.25, clock=clock)


def test_an_unmarked_server_admits_every_call_without_probing(mark, server):
    assert mark.down_until == 0.0
    assert all(mark.admits() for _ in range(10))
    assert server.probes == 0


def test_a_timeout_marks_the_server_down_for_the_interval(mark, server, clock):
    assert mark.mark_down("no reply within 2 seconds", after_wait=True) is True
    assert mark.last_error == "no reply within 2 seconds"
    for offset in (0.0, 1.0, 4.99):
        clock.now = 1000.0 + offset
        assert mark.admits() is False
    assert server.probes == 0  # failing fast costs nothing, not even a probe


def test_once_due_one_probe_that_gets_an_answer_clears_the_mark(mark, server, clock):
    mark.mark_down("no reply", after_wait=True)
    clock.now += 5.0
    assert mark.admits() is True
    assert server.probes == 1
    assert mark.down_until == 0.0
    assert mark.admits() is True and server.probes == 1


def test_a_probe_without_an_answer_marks_the_server_down_again(mark, server, clock):
    mark.mark_down("no reply", after_wait=True)
    server.failure = TimeoutError("timed out")
    clock.now += 5.0
    assert mark.admits() is False
    assert server.probes == 1
    assert mark.last_error == "TimeoutError: timed out"
    clock.now += 4.9
    assert mark.admits() is False and server.probes == 1  # a full interval again, from the probe's failure
    clock.now += 0.1
    server.failure = None
    assert mark.admits() is True and server.probes == 2


def test_a_refused_connection_is_probed_again_by_the_next_call(mark, server, clock):
    """Being turned away costs nothing: a restarted server is used by the first call after it is back."""
    assert mark.mark_down("ConnectionRefusedError: [Errno 111]", after_wait=False) is True
    assert mark.down_until != 0.0  # marked: a backend that degrades knows the server is failing
    server.failure = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert mark.admits() is False and server.probes == 1
    assert mark.admits() is False and server.probes == 2  # refused again: due again at once, no interval
    server.failure = None
    assert mark.admits() is True and server.probes == 3


def test_only_one_caller_probes_while_the_others_fail_fast(server, clock):
    probing = threading.Event()
    release = threading.Event()

    def slow_probe():
        server.probes += 1
        probing.set()
        release.wait(10)

    mark = DownMark(slow_probe, 5.0, probe_timeout=0.25, clock=clock)
    mark.mark_down("no reply")
    clock.now += 5.0
    results = []
    prober = threading.Thread(target=lambda: results.append(mark.admits()))
    prober.start()
    assert probing.wait(10)
    assert [mark.admits() for _ in range(20)] == [False] * 20  # the probe is taken
    release.set()
    prober.join(10)
    assert results == [True] and server.probes == 1
    assert mark.admits() is True


def test_a_probe_that_never_reported_gives_way_after_its_lease(mark, server, clock):
    """A probe interrupted before it could report (KeyboardInterrupt, or a child forked while its parent was probing)
    holds the probe for eight probe timeouts; then another caller probes."""
    mark.mark_down("no reply")
    clock.now += 5.0
    server.failure = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        mark.admits()
    server.failure = None
    clock.now += 1.99
    assert mark.admits() is False and server.probes == 1
    clock.now += 0.01
    assert mark.admits() is True and server.probes == 2


def test_an_outage_begins_once(mark, server, clock):
    assert mark.mark_down("first", after_wait=True) is True
    assert mark.mark_down("second", after_wait=True) is False
    server.failure = OSError("down")
    clock.now += 5.0
    mark.admits()
    assert mark.mark_down("third") is False  # still the same outage: log it once
    mark.mark_up()
    assert mark.mark_down("again") is True


def test_interval_zero_probes_at_once_after_a_timeout(server, clock):
    mark = DownMark(server.probe, 0.0, clock=clock)
    mark.mark_down("no reply", after_wait=True)
    assert mark.admits() is True and server.probes == 1


def test_describe_scrubs_what_the_probe_raised(server, clock):
    mark = DownMark(server.probe, 1.0, describe=lambda exc: str(exc).replace("s3cret", "***"), clock=clock)
    mark.mark_down("x", after_wait=False)
    server.failure = ConnectionError("AUTH s3cret refused")
    assert mark.admits() is False
    assert mark.last_error == "AUTH *** refused"


class LibraryTimeout(Exception):
    pass


def _raised_inside(outer, inner):
    try:
        try:
            raise inner
        except BaseException:
            raise outer
    except BaseException as exc:
        return exc


@pytest.mark.parametrize("error, expected", [
    (TimeoutError("timed out"), True),
    (socket.timeout("timed out"), True),
    (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), True),  # a kernel reply timeout
    (OSError(errno.EHOSTUNREACH, "No route to host"), True),
    (socket.gaierror(-3, "Temporary failure in name resolution"), True),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), False),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), False),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), False),
    (RuntimeError("closed by server"), False),
    (LibraryTimeout("Timeout reading from socket"), True),
    (_raised_inside(RuntimeError("wrapped"), BlockingIOError(errno.EAGAIN, "again")), True),
    (_raised_inside(RuntimeError("wrapped"), ConnectionRefusedError(errno.ECONNREFUSED, "refused")), False),
])
def test_waited_tells_timeouts_from_refusals(error, expected):
    assert waited(error, (LibraryTimeout,)) is expected


def test_describe_error():
    assert describe_error(TimeoutError("timed out")) == "TimeoutError: timed out"
    assert describe_error(TimeoutError()) == "TimeoutError"
