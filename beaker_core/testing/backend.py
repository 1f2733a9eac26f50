"""The backend contract, checked against a real backend.

:class:`ConformanceBase` holds what every part of the suite shares: the capability attributes a backend
distribution sets on its subclass, the fixtures, and the timing helpers. :class:`BackendContractTests` checks the
contract documented in :mod:`beaker_core.backends` (get, get_many, set, add, delete, touch, incr, keys,
delete_prefix, cleanup), TTL expiry, odd and long keys, binary values and concurrent use from threads.

Every test writes under a fresh random key prefix, so the suite can run against a shared server without clearing
it, and values are bytes, so a backend that keeps Python objects (``stores_objects = True``) passes the same way.

Tests that only apply to some backends say so with :func:`requires` (or, for every test of a mixin, the class
attribute ``requires_capability``). A test whose requirement the backend does not meet is not generated at all for
that backend's test class: a skipped test would read as an untested feature, while a missing one says "does not
apply". See :meth:`ConformanceBase.__init_subclass__`.
"""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any, Callable, Iterable

import pytest

from ..backends import Backend
from ..exceptions import ConfigurationError
from ..registry import Registry
from . import _workers
from .clock import FakeClock, fake_clock
from .concurrency import run_in_threads

#: capabilities read from the backend class (attributes of :class:`~beaker_core.backends.Backend`)
BACKEND_CAPABILITIES = ("shared", "atomic_records", "atomic_update", "stores_objects")
#: every capability a test may require; ``keys`` is the test class's ``supports_keys``. ``no_<capability>`` requires
#: its absence (``no_keys``: the test checks that enumeration is refused).
CAPABILITIES = BACKEND_CAPABILITIES + ("keys",)
_REQUIRES = "_conformance_requires"


def _capability_names(capabilities: str | Iterable[str], where: str) -> tuple[str, ...]:
    names = (capabilities,) if isinstance(capabilities, str) else tuple(capabilities)
    for name in names:
        base = name[3:] if isinstance(name, str) and name.startswith("no_") else name
        if base not in CAPABILITIES:
            known = ", ".join(CAPABILITIES)
            raise ValueError(f"{where}: unknown capability {name!r}; known: {known} (or no_<capability>)")
    return names


def requires(*capabilities: str) -> Callable[[Callable], Callable]:
    """Generate the decorated test only for backends that have every one of ``capabilities``.

    ``@requires("shared")`` (other processes see the data), ``@requires("atomic_records")``,
    ``@requires("atomic_update")``, ``@requires("stores_objects")``, ``@requires("keys")`` (the test class's
    ``supports_keys``), and the negations ``@requires("no_keys")``... An unknown name is a ``ValueError`` at once,
    so a typo cannot silently drop a test. Decorators stack; the requirements add up.
    """
    names = _capability_names(capabilities, "requires()")

    def mark(test: Callable) -> Callable:
        existing = getattr(test, _REQUIRES, ())
        setattr(test, _REQUIRES, existing + tuple(name for name in names if name not in existing))
        return test
    return mark


def _backend_factory(backend_name: str, factory: Any = None) -> Any:
    """``factory``, or else the class a plain :class:`Registry` finds for ``backend_name``; ``None`` when the lookup
    fails."""
    if factory is not None:
        return factory
    registry = Registry()
    try:
        return registry.backend_class(backend_name)
    except Exception:
        return None
    finally:
        registry.close()


def _resolve_capabilities(backend_name: str, factory: Any = None) -> dict[str, bool] | None:
    """The backend's declared capabilities, read from ``factory`` or else from the class a plain :class:`Registry`
    finds; ``None`` when the lookup fails (the tests then stay, and fail on building the backend, naming the
    problem)."""
    factory = _backend_factory(backend_name, factory)
    if factory is None:
        return None
    return {name: bool(getattr(factory, name, getattr(Backend, name))) for name in BACKEND_CAPABILITIES}


def _test_members(cls: type) -> dict[str, tuple[Any, type]]:
    """Every ``test*`` attribute of ``cls`` as ``(value, class whose body defined it)``, most derived first, seeing
    through tests an ancestor removed (so a subclass naming another backend gets them back)."""
    found: dict[str, tuple[Any, type]] = {}
    for klass in cls.__mro__:
        removed = vars(klass).get("_conformance_removed", {})
        for name, value in vars(klass).items():
            if name.startswith("test") and name not in found:
                found[name] = removed.get(name, (value, klass))
    return found


class ConformanceBase:
    """Attributes and fixtures shared by every part of the conformance suite.

    A subclass sets:

    :param backend: the registered backend name (``"file"``, ``"redis"``...).
    :param options: keyword arguments for the backend's constructor; or override :meth:`make_options`.
    :param supports_keys: the backend can enumerate its keys (``keys`` and ``delete_prefix``); when False the suite
        checks that ``keys`` raises ``NotImplementedError`` instead.
    :param ttl_resolution: how coarse the store's expiry clock is, in seconds (``1.0`` for stores with whole-second
        TTLs such as memcached or redis ``EXPIRE``). Tests wait that much longer before expecting a value gone.
    :param native_expiry: the store expires entries by itself, so ``cleanup`` may report 0.
    :param lock_type: the lock the lock tests use; ``None`` means the backend's ``preferred_lock``.
    :param processes: how many processes the cross-process tests (locks, add, incr) run.
    :param backend_class: the backend's class, only for a backend that a plain ``Registry()`` does not find (one
        registered in an overridden ``registry`` fixture): the suite reads the capabilities from it. Set it together
        with ``backend``.

    A mixin whose every test needs a capability sets ``requires_capability`` (a name or a tuple of names, as for
    :func:`requires`); it applies to the tests defined in that class's own body.

    The backend's capabilities (``shared``, ``atomic_records``, ``atomic_update``, ``stores_objects``) are read
    from its class, as the registry resolves ``backend``. ``max_value_size`` is not a requirement: the large-value
    test sizes its value to the limit instead (the limit may depend on the options, as for memcached).

    Fixtures (methods, so every subclass has them): ``backend_options`` (``make_options(tmp_path)``), ``registry``
    (a :class:`~beaker_core.registry.Registry` that loads installed plugins), ``store`` (the backend built from
    both, closed after the test) and ``prefix`` (a random key prefix for the test). Tests that start processes are
    marked ``slow``; the pytest plugin :mod:`beaker_core.testing.pytest_plugin` registers that marker.
    """

    backend: str = ""
    options: dict[str, Any] = {}
    supports_keys = True
    ttl_resolution = 0.05
    native_expiry = False
    lock_type: str | None = None
    processes = 4
    backend_class: type | None = None
    requires_capability: str | tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Remove, from a subclass that names its ``backend``, every test whose requirement the backend misses.

        A removed test is set to ``None`` on the subclass, which pytest does not collect. When neither
        ``backend_class`` is set nor the registry resolves ``backend``, nothing is removed, so that every test fails
        on building the backend with the registry's message rather than the suite quietly shrinking. The capabilities found are kept in
        ``_conformance_capabilities``; the ``store`` fixture checks that the built backend agrees with them.
        """
        super().__init_subclass__(**kwargs)
        _capability_names(vars(cls).get("requires_capability", ()), f"{cls.__name__}.requires_capability")
        if not cls.backend:
            return
        factory = _backend_factory(cls.backend, cls.backend_class)
        capabilities = None if factory is None else _resolve_capabilities(cls.backend, factory)
        cls._conformance_capabilities = capabilities
        cls._conformance_local_expiry = bool(getattr(factory, "local_expiry", False))
        cls._conformance_removed = {}
        for name, (test, owner) in _test_members(cls).items():
            if not callable(test):
                continue  # set to None by hand: stays out
            needed = getattr(test, _REQUIRES, ()) + _capability_names(
                vars(owner).get("requires_capability", ()), owner.__name__)
            if capabilities is not None and not all(
                    cls._has_capability(capabilities, requirement) for requirement in needed):
                cls._conformance_removed[name] = (test, owner)
                setattr(cls, name, None)
            elif getattr(cls, name) is not test:
                setattr(cls, name, test)  # removed by an ancestor that named another backend

    @classmethod
    def _has_capability(cls, capabilities: dict[str, bool], requirement: str) -> bool:
        absent = requirement.startswith("no_")
        name = requirement[3:] if absent else requirement
        present = bool(cls.supports_keys) if name == "keys" else capabilities[name]
        return present != absent

    # -- hooks a subclass may override -------------------------------------------------------------------------

    def make_options(self, tmp_path) -> dict[str, Any]:
        """Constructor options for one test; override to point the backend at ``tmp_path`` or a server URL.

        The result is passed to other processes too, so it must be picklable (strings and numbers).
        """
        return dict(self.options)

    def make_lock_options(self, tmp_path) -> dict[str, Any]:
        """Options for the lock under test, besides ``backend`` (picklable: worker processes rebuild the lock).

        The default gives a per-test ``lock_dir``, which the suite drops for a lock type whose constructor has no
        ``lock_dir`` parameter.
        """
        return {"lock_dir": str(tmp_path / "locks")}

    # -- fixtures ----------------------------------------------------------------------------------------------

    @pytest.fixture
    def backend_options(self, tmp_path) -> dict[str, Any]:
        if not self.backend:
            pytest.fail(f"{type(self).__name__} must set the class attribute `backend` to a backend name")
        return self.make_options(tmp_path)

    @pytest.fixture
    def registry(self):
        """A registry that loads installed plugins, so a backend distribution is found by its name."""
        registry = Registry()
        yield registry
        registry.close()

    @pytest.fixture
    def store(self, registry, backend_options):
        """The backend under test. Fails if the instance declares other capabilities than its class: the tests
        generated for this class were chosen from the class's declarations."""
        store = registry.backend_class(self.backend)(**backend_options)
        try:
            declared = getattr(type(self), "_conformance_capabilities", None) or {}
            differing = {name: bool(getattr(store, name, False)) for name, value in declared.items()
                         if bool(getattr(store, name, False)) != value}
            if differing:
                pytest.fail(f"the {self.backend} backend instance declares {differing}, its class the opposite; "
                            f"the conformance suite chooses its tests from the class attributes, so declare the "
                            f"capabilities there (or use one backend name per set of capabilities)")
            yield store
        finally:
            store.close()

    @pytest.fixture
    def prefix(self) -> str:
        """A key prefix no other test (or earlier run against the same server) uses."""
        return f"bkconf-{uuid.uuid4().hex[:16]}:"

    # -- timing helpers ----------------------------------------------------------------------------------------

    @property
    def short_ttl(self) -> float:
        """A TTL long enough to read a value back right after writing it, short enough to wait out."""
        return max(0.3, 2 * self.ttl_resolution)

    @pytest.fixture(autouse=True)
    def _conformance_clock(self):
        """Holds the fake clock :meth:`advance_clock` puts in effect, until the end of the test."""
        with contextlib.ExitStack() as stack:
            self._clock_stack = stack
            self._clock: FakeClock | None = None
            yield

    def wait_past(self, ttl: float) -> None:
        """Until an entry the backend stored ``ttl`` seconds ago has certainly expired in the backend.

        A backend whose class declares ``local_expiry`` (its entries expire by :data:`beaker_core.clock.now` in this
        process: memory, file, dbm) sees the clock moved forward by :meth:`advance_clock`; for a server that
        expires entries on its own clock (redis, memcached), the test sleeps.
        """
        seconds = ttl + self.ttl_resolution + 0.25
        if getattr(type(self), "_conformance_local_expiry", False):
            self.advance_clock(seconds)
        else:
            time.sleep(seconds)

    def wait_past_in_core(self, ttl: float) -> None:
        """Until a deadline ``ttl`` seconds away that the core itself checks on :data:`beaker_core.clock.now` has
        certainly passed (a cached value's ``expire``, a region's): the clock moves, on every backend.

        A server backend still holds the entry, so what the test sees is the core's decision alone.
        """
        self.advance_clock(ttl + self.ttl_resolution + 0.25)

    def advance_clock(self, seconds: float) -> float:
        """Move :data:`beaker_core.clock.now` ``seconds`` forward; returns the new time.

        The first call puts a :class:`~beaker_core.testing.clock.FakeClock` in effect, starting at the real time,
        for the rest of the test, so deadlines computed before it (on the real clock) are passed as well. Only this
        process sees it: worker processes keep the real clock.
        """
        if self._clock is None:
            self._clock = self._clock_stack.enter_context(fake_clock())
        return self._clock.advance(seconds)


def _counter(value: Any) -> int:
    return int(value)  # bytes or int, depending on stores_objects


#: keys a backend must store as they are and keep apart: (test id, suffix appended to the test's prefix)
ODD_KEYS = [
    ("space", "a key with spaces"),
    ("newline", "line one\nline two\r\n"),
    ("nul", "nul\x00byte"),
    ("control", "".join(chr(code) for code in range(1, 32))),
    ("parent_dirs", "../../../../etc/passwd"),
    ("absolute", "/tmp/absolute"),
    ("backslashes", "..\\..\\windows"),
    ("dot", "."),
    ("empty_suffix", ""),
    ("percent", "%2e%2e%2f%00"),
    ("unicode", "clé-ключ-鍵-🔑"),
    ("long_2000", "L" * 2000),
    ("case_lower", "mixedcase"),
    ("case_upper", "MIXEDCASE"),
    ("case_mixed", "MixedCase"),
    ("past_250_a", "x" * 260 + "a"),
    ("past_250_b", "x" * 260 + "b"),
    ("unicode_past_250_a", "é" * 200 + "a"),
    ("unicode_past_250_b", "é" * 200 + "b"),
    ("memcached_like", "key\tkey key"),
]

BINARY_VALUES = [
    ("all_byte_values", bytes(range(256))),
    ("empty", b""),
    ("nul_run", b"\x00" * 1000),
    ("not_utf8", b"\xff\xfe\xc3\x28\x80"),
    ("json_looking", b'{"__bk__": "bytes", "v": "AA=="}'),
    ("pickle_looking", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."),
]


class BackendContractTests(ConformanceBase):
    """The :class:`~beaker_core.backends.Backend` contract."""

    # -- round trips -------------------------------------------------------------------------------------------

    def test_get_missing_is_none(self, store, prefix):
        assert store.get(prefix + "missing") is None

    def test_set_then_get_round_trips_bytes(self, store, prefix):
        store.set(prefix + "k", b"value")
        value = store.get(prefix + "k")
        assert value == b"value"
        assert isinstance(value, bytes)

    def test_set_replaces_the_value(self, store, prefix):
        store.set(prefix + "k", b"first")
        store.set(prefix + "k", b"second")
        assert store.get(prefix + "k") == b"second"

    def test_get_many_keeps_order_and_fills_missing_with_none(self, store, prefix):
        store.set(prefix + "a", b"1")
        store.set(prefix + "c", b"3")
        keys = [prefix + "c", prefix + "missing", prefix + "a", prefix + "c"]
        assert store.get_many(keys) == [b"3", None, b"1", b"3"]
        assert store.get_many(iter(keys)) == [b"3", None, b"1", b"3"]  # any iterable, not only a list
        assert store.get_many([]) == []

    def test_set_many(self, store, prefix):
        store.set_many({prefix + "a": b"1", prefix + "b": b"2"})
        assert store.get_many([prefix + "a", prefix + "b"]) == [b"1", b"2"]

    def test_add_stores_only_when_absent(self, store, prefix):
        assert store.add(prefix + "k", b"first") is True
        assert store.add(prefix + "k", b"second") is False
        assert store.get(prefix + "k") == b"first"

    def test_delete_reports_whether_something_was_removed(self, store, prefix):
        store.set(prefix + "k", b"v")
        assert store.delete(prefix + "k") is True
        assert store.get(prefix + "k") is None
        assert store.delete(prefix + "k") is False

    def test_delete_many(self, store, prefix):
        store.set_many({prefix + "a": b"1", prefix + "b": b"2", prefix + "c": b"3"})
        store.delete_many([prefix + "a", prefix + "b", prefix + "missing"])
        assert store.get_many([prefix + "a", prefix + "b", prefix + "c"]) == [None, None, b"3"]

    def test_touch_missing_key_is_false(self, store, prefix):
        assert store.touch(prefix + "missing", 10) is False
        assert store.get(prefix + "missing") is None

    def test_touch_keeps_the_value(self, store, prefix):
        store.set(prefix + "k", b"v", ttl=60)
        assert store.touch(prefix + "k", 120) is True
        assert store.get(prefix + "k") == b"v"

    def test_incr_starts_at_zero_and_returns_the_new_value(self, store, prefix):
        key = prefix + "counter"
        assert store.incr(key) == 1
        assert store.incr(key) == 2
        assert store.incr(key, 5) == 7
        assert store.incr(key, -3) == 4
        assert _counter(store.get(key)) == 4
        for delta in (1.5, True, "1", None):
            with pytest.raises(ConfigurationError, match="incr needs an integer delta"):
                store.incr(key, delta)
        assert _counter(store.get(key)) == 4

    def test_incr_keeps_the_deadline_of_the_value_it_changes(self, store, prefix):
        ttl = self.short_ttl
        store.set(prefix + "expiring", b"5", ttl=ttl)
        assert store.incr(prefix + "expiring") == 6
        self.wait_past(ttl)
        assert store.get(prefix + "expiring") is None

    def test_invalid_ttl_is_a_configuration_error(self, store, prefix):
        for ttl in (0, -1, "10", True):
            with pytest.raises(ConfigurationError):
                store.set(prefix + "k", b"v", ttl=ttl)
        assert store.get(prefix + "k") is None
        store.set(prefix + "k", b"v")
        with pytest.raises(ConfigurationError):
            store.touch(prefix + "k", -5)

    def test_describe_names_the_backend(self, store):
        description = store.describe()
        assert isinstance(description, str) and description

    # -- enumeration -------------------------------------------------------------------------------------------

    @requires("keys")
    def test_keys_lists_live_keys_under_a_prefix(self, store, prefix):
        store.set_many({prefix + "one": b"1", prefix + "two": b"2", prefix + "other:three": b"3"})
        assert sorted(store.keys(prefix)) == sorted([prefix + "one", prefix + "two", prefix + "other:three"])
        assert list(store.keys(prefix + "other:")) == [prefix + "other:three"]
        assert list(store.keys(prefix + "nothing")) == []

    @requires("no_keys")
    def test_keys_unsupported_is_not_implemented(self, store, prefix):
        """Only for ``supports_keys = False``: enumeration is refused, never an empty or partial answer."""
        with pytest.raises(NotImplementedError):
            list(store.keys(prefix))

    @requires("keys")
    def test_delete_prefix_removes_only_that_prefix(self, store, prefix):
        store.set_many({prefix + "a:1": b"1", prefix + "a:2": b"2", prefix + "b:1": b"3"})
        assert store.delete_prefix(prefix + "a:") == 2
        assert store.get_many([prefix + "a:1", prefix + "a:2", prefix + "b:1"]) == [None, None, b"3"]
        assert store.delete_prefix(prefix + "a:") == 0

    # -- expiry ------------------------------------------------------------------------------------------------

    def test_ttl_value_disappears_after_expiry(self, store, prefix):
        ttl = self.short_ttl
        store.set(prefix + "short", b"v", ttl=ttl)
        store.set(prefix + "forever", b"f")
        store.set(prefix + "long", b"l", ttl=3600)
        assert store.get(prefix + "short") == b"v"
        self.wait_past(ttl)
        assert store.get(prefix + "short") is None
        assert store.get_many([prefix + "short", prefix + "forever", prefix + "long"]) == [None, b"f", b"l"]
        assert store.touch(prefix + "short", 60) is False
        assert store.add(prefix + "short", b"again") is True  # an expired entry does not block add
        assert store.get(prefix + "short") == b"again"
        if self.supports_keys:
            store.set(prefix + "gone", b"g", ttl=ttl)
            self.wait_past(ttl)
            assert prefix + "gone" not in set(store.keys(prefix))

    def test_an_expired_entry_not_read_since_is_absent_for_every_operation(self, store, prefix):
        # nothing reads these keys between their expiry and the operation, so no lazy removal has happened yet
        ttl = self.short_ttl
        store.set_many({prefix + name: b"7" for name in ("add", "incr", "touch", "delete")}, ttl=ttl)
        self.wait_past(ttl)
        assert store.add(prefix + "add", b"new") is True
        assert store.get(prefix + "add") == b"new"
        assert int(store.incr(prefix + "incr")) == 1
        assert store.touch(prefix + "touch", 60) is False
        assert store.get(prefix + "touch") is None
        store.delete(prefix + "delete")
        assert store.get(prefix + "delete") is None

    def test_fractional_ttl_below_one_second_expires(self, store, prefix):
        # A store with whole-second TTLs must round up, never down to 0 (which often means "never expire").
        store.set(prefix + "k", b"v", ttl=0.5)
        self.wait_past(max(0.5, self.ttl_resolution))
        assert store.get(prefix + "k") is None

    def test_touch_extends_or_removes_the_ttl(self, store, prefix):
        ttl = self.short_ttl
        store.set(prefix + "extended", b"e", ttl=ttl)
        store.set(prefix + "persisted", b"p", ttl=ttl)
        store.set(prefix + "untouched", b"u", ttl=ttl)
        assert store.touch(prefix + "extended", 3600) is True
        assert store.touch(prefix + "persisted", None) is True
        self.wait_past(ttl)
        assert store.get_many([prefix + "extended", prefix + "persisted", prefix + "untouched"]) == [
            b"e", b"p", None]

    def test_set_without_ttl_clears_a_previous_ttl(self, store, prefix):
        ttl = self.short_ttl
        store.set(prefix + "k", b"old", ttl=ttl)
        store.set(prefix + "k", b"new")
        self.wait_past(ttl)
        assert store.get(prefix + "k") == b"new"

    def test_cleanup_removes_expired_entries_and_keeps_live_ones(self, store, prefix):
        ttl = self.short_ttl
        store.set_many({prefix + "x1": b"1", prefix + "x2": b"2"}, ttl=ttl)
        store.set(prefix + "live", b"l", ttl=3600)
        store.set(prefix + "forever", b"f")
        self.wait_past(ttl)
        removed = store.cleanup()
        assert isinstance(removed, int) and removed >= 0
        if not self.native_expiry:
            assert removed >= 2, "cleanup must report the expired entries it removed"
        assert store.get_many([prefix + "x1", prefix + "x2", prefix + "live", prefix + "forever"]) == [
            None, None, b"l", b"f"]
        if self.supports_keys:
            assert sorted(store.keys(prefix)) == [prefix + "forever", prefix + "live"]

    # -- odd keys and binary values ----------------------------------------------------------------------------

    @pytest.mark.parametrize("suffix", [suffix for _, suffix in ODD_KEYS], ids=[name for name, _ in ODD_KEYS])
    def test_odd_key_round_trips(self, store, prefix, suffix):
        key = prefix + suffix
        store.set(key, b"value of " + key.encode("utf-8"))
        assert store.get(key) == b"value of " + key.encode("utf-8")
        assert store.touch(key, 60) is True
        assert store.delete(key) is True
        assert store.get(key) is None

    def test_odd_keys_do_not_collide(self, store, prefix):
        keys = [prefix + suffix for _, suffix in ODD_KEYS]
        for index, key in enumerate(keys):
            store.set(key, str(index).encode("ascii"))
        assert store.get_many(keys) == [str(index).encode("ascii") for index in range(len(keys))]
        if self.supports_keys:
            assert sorted(store.keys(prefix)) == sorted(keys)  # keys come back exactly as they were given
        for key in keys:
            store.delete(key)
        assert store.get_many(keys) == [None] * len(keys)

    @pytest.mark.parametrize("value", [value for _, value in BINARY_VALUES], ids=[name for name, _ in BINARY_VALUES])
    def test_binary_value_round_trips(self, store, prefix, value):
        store.set(prefix + "bin", value)
        stored = store.get(prefix + "bin")
        assert stored == value
        assert isinstance(stored, bytes)
        assert store.get_many([prefix + "bin"]) == [value]

    def test_empty_value_is_not_missing(self, store, prefix):
        store.set(prefix + "empty", b"")
        assert store.get(prefix + "empty") == b""
        assert store.add(prefix + "empty", b"other") is False
        assert store.touch(prefix + "empty", 60) is True
        assert store.delete(prefix + "empty") is True

    def test_large_value_round_trips(self, store, prefix):
        """500 kB, or exactly ``max_value_size`` bytes for a backend that declares less: the declared limit is the
        largest value the store accepts, so a value of that size must round trip."""
        limit = store.max_value_size
        assert limit is None or (type(limit) is int and limit > 0), f"max_value_size must be None or > 0: {limit!r}"
        size = 500_000 if limit is None else min(500_000, limit)
        value = os.urandom(size)
        store.set(prefix + "large", value)
        assert store.get(prefix + "large") == value

    # -- concurrency -------------------------------------------------------------------------------------------

    def test_concurrent_set_and_get_from_threads(self, store, prefix):
        threads_count, rounds = 8, 40
        shared_key = prefix + "shared"
        shared_values = {bytes([index]) * 64 for index in range(threads_count)}
        store.set(shared_key, bytes([0]) * 64)

        def work(index: int) -> None:
            own = bytes([index]) * 64
            for round_number in range(rounds):
                key = f"{prefix}t{index}:{round_number % 5}"
                value = own + str(round_number).encode("ascii")
                store.set(key, value)
                assert store.get(key) == value, f"thread {index} lost its own write to {key!r}"
                store.set(shared_key, own)
                seen = store.get(shared_key)
                assert seen in shared_values, f"thread {index} read {seen!r} from the shared key"  # never torn

        run_in_threads(work, threads_count)

    def test_add_from_threads_has_one_winner(self, store, prefix):
        results = run_in_threads(lambda index: store.add(prefix + "once", str(index).encode("ascii"), ttl=3600), 8)
        assert results.count(True) == 1
        assert store.get(prefix + "once") == str(results.index(True)).encode("ascii")

    def test_incr_from_threads_loses_no_increment(self, store, prefix):
        def work(index: int) -> None:
            for _ in range(25):
                store.incr(prefix + "counter")

        run_in_threads(work, 8)
        assert int(store.get(prefix + "counter")) == 8 * 25

    @pytest.mark.slow
    @requires("shared")
    def test_add_from_processes_has_one_winner(self, store, backend_options, prefix):
        args = [(self.backend, backend_options, prefix + "once", f"worker{index}".encode("ascii"))
                for index in range(self.processes)]
        results = _workers.run_in_processes(_workers.add_once, args, synchronized=True)
        assert sorted(results) == [False] * (self.processes - 1) + [True]
        assert store.get(prefix + "once") == f"worker{results.index(True)}".encode("ascii")

    @pytest.mark.slow
    @requires("shared")
    def test_incr_from_processes_loses_no_increment(self, store, backend_options, prefix):
        args = (self.backend, backend_options, prefix + "counter", 50)
        assert _workers.run_in_processes(_workers.incr_counter, [args] * self.processes,
                                         synchronized=True) == [50] * self.processes
        assert int(store.get(prefix + "counter")) == self.processes * 50
