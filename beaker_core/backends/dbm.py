"""The ``dbm`` backend: one key-value database in a directory, shared by the processes of one machine.

:param data_dir: the directory that holds the database (required; created if absent). The database is
    ``<data_dir>/beaker.dbm`` (plus the extensions its module adds) and its lock file ``<data_dir>/beaker.dbm.lock``.
:param lock_dir: accepted for Beaker compatibility and read by the ``file`` lock (see the file backend).
:param dbm_module: ``"dumb"``, ``"gnu"`` or ``"ndbm"``: the implementation of a new database. By default (``None``
    or ``"auto"``) an existing database keeps the module that wrote it, and a new one uses ``dumb``, the only one
    that a killed writer cannot damage (below). Naming a module that this Python lacks, or that differs from the one
    of the existing database, is a configuration error.
:param file_mode: permission bits of the database and lock files, whatever the umask: an int or an octal string
    (``"0660"``). Default ``0o600``, as the database holds the keys (session ids) in clear; widen it for accounts of
    one group sharing the database.
:param dir_mode: permission bits of the directories it creates (the data directory and its missing parents, the
    lock directory). Default ``0o700``. Both options are checked, and an existing data directory is treated, as by
    the ``file`` backend: left as it is, with one warning at startup when it is wider than ``dir_mode``.
:param fsync: flush each write to the disk before the call returns (slower; ``dumb`` and ``gnu`` only). Without it
    a process killed at any moment still loses nothing written, but a power loss or kernel crash may take keys back
    to an older value or lose them (misses). Either way a torn value is never returned. Default false.

Keys are stored as their UTF-8 bytes; a value is a 13-byte header (a CRC32 of the key, of the rest of the header
and of the value; a flag; the float64 deadline) then the bytes. A value that does not check (torn, or left under
another key) is a miss and is removed, whatever the module.

``dumb``, the default, is beaker-core's own store (:mod:`beaker_core.backends.dumbstore`): dbm.dumb's layout of a
data file and an index read whole, written so that a crash loses nothing. A value never overwrites a live one, and
a write takes effect all at once when its index is written over the older of two index files (each with a sequence
number and a CRC32), so a writer killed at any moment leaves every key with its previous value or its new one:
never a torn value, never a lost key. Later writes reuse the space of deleted and replaced values. On a full disk a
delete still works (its index goes into pages the index files already have), and a write that finds no room moves
values into the free space, gives the rest back to the file system and tries once more: it fails (ENOSPC) when the
live values and the new one do not fit, or when a free run is left that no value farther in the file fits into.
``dbm.dumb`` cannot read this store, and a database written by ``dbm.dumb`` (or by an earlier version of
beaker-core) is refused with an error naming its index: remove its files.

``gnu`` and ``ndbm`` (Python's :mod:`dbm.gnu` and :mod:`dbm.ndbm`) are used for a database they wrote, or when
named. With many keys their writes cost less (they do not rewrite an index), but they are not crash-safe: gdbm
writes a value of the same size over the old one, so a writer killed inside that write leaves it torn, which the
checksum turns into a miss (the value is lost); neither library promises that its files survive a writer killed
inside a write.

No dbm module is safe between processes, so every access takes an ``flock`` on the lock file: shared to read,
exclusive to write. A read keeps its database handle open for the next reads as long as nobody wrote: a writer
increments a counter stored in the lock file before it changes anything, and a reader whose handle predates the
counter's value reopens the database (a reopen reads the database's index; for ``dumb`` that is the whole index).
A write always opens the database, changes it and closes it, so that the next process sees the change; with
``dumb`` each write therefore costs time proportional to the number of keys. Threads of one process are serialized
by a lock of the backend object.

A data directory removed while the backend runs (a tmp cleaner, a deploy) is a miss for reads and is recreated,
with a new database, by the next write. Each access checks with one ``stat`` that the lock file it holds is still
the one at its path, and when it is not, opens the new one and drops its database handle. Removing the lock file
alone is still a mistake: a process writing at that moment holds the old one, so another may write alongside it.

:meth:`DBMBackend.cleanup` removes expired and corrupt entries and gives free space back to the file system:
``dumb`` compacts its data file in place (which needs no free space), ``gnu`` is reorganized.
"""
from __future__ import annotations

import contextlib
import dbm
import errno
import importlib
import math
import os
import stat
import struct
import threading
import zlib
from typing import Any, Iterable, Iterator

from .. import clock
from ..exceptions import BackendError, ConfigurationError
from ..util import coerce_bool, unknown_options
from ..fs import (O_CLOEXEC, create_file, directory_option, fcntl, file_modes, make_directory, refuse_links,
                  require_flock, warn_if_open)
from . import Backend, check_delta, deadline, dumbstore

_HEADER = struct.Struct(">IBd")  # crc32 of the key and of what follows it | flags | deadline
_FIELDS = struct.Struct(">Bd")
_CRC = struct.Struct(">I")
_HAS_DEADLINE = 1
_COUNTER = struct.Struct(">Q")
_MODULES = ("dumb", "gnu", "ndbm")
_OPEN_ERRORS = (dumbstore.DamagedIndex,)


def _encode(raw_key: bytes, value: bytes, expires: float | None) -> bytes:
    fields = _FIELDS.pack(0 if expires is None else _HAS_DEADLINE, expires or 0.0)
    return _CRC.pack(zlib.crc32(value, zlib.crc32(fields, zlib.crc32(raw_key)))) + fields + value


def _decode(raw_key: bytes, stored: bytes) -> tuple[bytes, float | None] | None:
    """``(value, deadline)``, or None for bytes that are not a whole entry of ``raw_key``."""
    if len(stored) < _HEADER.size:
        return None
    crc, flags, expires = _HEADER.unpack_from(stored)
    if zlib.crc32(memoryview(stored)[_CRC.size:], zlib.crc32(raw_key)) != crc:
        return None
    if flags & ~_HAS_DEADLINE or (flags and not math.isfinite(expires)):
        return None
    return stored[_HEADER.size:], (expires if flags else None)


def _live(raw_key: bytes, stored: bytes | None, now: float) -> tuple[bytes, float | None] | None:
    entry = _decode(raw_key, stored) if stored is not None else None
    if entry is None or (entry[1] is not None and entry[1] <= now):
        return None
    return entry


def _import(module: str) -> Any:
    if module == "dumb":
        return dumbstore
    try:
        return importlib.import_module(f"dbm.{module}")
    except ImportError:
        return None


def _existing_module(path: str) -> str | None:
    """The module of the database at ``path``, None when there is none, "" for a file that is not a database."""
    if dumbstore.recognizes(path):
        return "dumb"
    found = dbm.whichdb(path)
    return found[len("dbm."):] if found else found


class DBMBackend(Backend):
    __doc__ = __doc__

    name = "dbm"
    local_expiry = True
    preferred_lock = "file"
    shared = True

    def __init__(self, data_dir: Any = None, lock_dir: Any = None, dbm_module: Any = None, file_mode: Any = None,
                 dir_mode: Any = None, fsync: Any = False, **unknown: Any):
        if unknown:
            unknown_options("the dbm backend", unknown,
                            ("data_dir", "lock_dir", "dbm_module", "file_mode", "dir_mode", "fsync"))
        require_flock("the dbm backend")
        self.data_dir = directory_option("data_dir", data_dir, required=True, owner="the dbm backend")
        self.lock_dir = directory_option("lock_dir", lock_dir, required=False, owner="the dbm backend")
        self.path = os.path.join(self.data_dir, "beaker.dbm")
        self.lock_path = self.path + ".lock"
        self.file_mode, self.dir_mode = file_modes(file_mode, dir_mode)
        make_directory(self.data_dir, f"dbm backend at {self.data_dir}", mode=self.dir_mode)
        warn_if_open(self.data_dir, self.dir_mode, f"dbm backend at {self.data_dir}")
        # a data directory configured as a link stays allowed to be one when a write recreates what it leads to
        self._data_dir_is_link = os.path.islink(self.data_dir)
        self.fsync = coerce_bool("fsync", fsync)
        existing = _existing_module(self.path)
        self.module_name = self._choose_module(dbm_module, existing)
        if self.fsync and self.module_name == "ndbm":
            raise ConfigurationError("fsync is not available with dbm_module ndbm (dbm.ndbm cannot flush its files)")
        self._module = _import(self.module_name)
        self._errors = tuple({OSError, *dbm.error, getattr(self._module, "error", OSError)})
        self._lock_fd: int | None = None
        self._lock_id: tuple[int, int] | None = None
        # set when this process created the lock file, so probably the database too: gnu and ndbm create theirs with
        # the mode minus the umask, and the next write gives this process's files file_mode exactly
        self._new_files = False
        self._reset()
        if existing is None:
            with self._access(write=True):
                pass  # creates the database, so that readers can always open it

    def _choose_module(self, option: Any, existing: str | None) -> str:
        if option is not None and (not isinstance(option, str) or option.strip().lower() not in _MODULES + ("auto",)):
            raise ConfigurationError(f"dbm_module must be one of {', '.join(_MODULES)} or auto, not {option!r}")
        wanted = None if option is None or option.strip().lower() == "auto" else option.strip().lower()
        if existing == "":
            raise BackendError(f"dbm backend at {self.data_dir}: {self.path} is not a dbm database")
        if wanted and existing and wanted != existing:
            raise ConfigurationError(
                f"dbm_module is {wanted!r} but the database {self.path} was written with dbm_module {existing!r}")
        chosen = wanted or existing or "dumb"
        if _import(chosen) is None:
            available = ", ".join(name for name in _MODULES if _import(name) is not None)
            if existing == chosen:
                raise BackendError(f"dbm backend at {self.data_dir}: {self.path} was written by dbm.{chosen}, "
                                   f"which this Python lacks (available: {available})")
            raise ConfigurationError(f"dbm_module {chosen!r} is not available in this Python (available: {available})")
        return chosen

    def _error(self, action: str, path: str, exc: BaseException) -> BackendError:
        detail = getattr(exc, "strerror", None) or exc
        return BackendError(f"dbm backend at {self.data_dir}: cannot {action} {path}: {detail}")

    # -- access under the lock file ----------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Fresh per-process state (also after a fork: an inherited lock file descriptor would share our flocks)."""
        inherited, self._lock_fd, self._lock_id = self._lock_fd, None, None
        if inherited is not None:
            with contextlib.suppress(OSError):
                os.close(inherited)
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._reader: Any = None
        self._reader_generation = -1

    def _open_db(self, write: bool) -> Any:
        flag = "c" if write else "r"
        if self.module_name == "dumb":
            return dumbstore.DumbStore(self.path, flag, self.file_mode, self.fsync)
        if self.module_name == "gnu":
            # "u": our flock does the locking; "s": every change is flushed to the disk
            return self._module.open(self.path, flag + "u" + ("s" if self.fsync else ""), self.file_mode)
        return self._module.open(self.path, flag, self.file_mode)

    def _generation(self) -> int:
        raw = os.pread(self._lock_fd, _COUNTER.size, 0)
        return _COUNTER.unpack(raw)[0] if len(raw) == _COUNTER.size else 0

    def _open_lock_file(self, write: bool) -> bool:
        """Open the lock file; False when a read finds the data directory gone (nothing is stored then).

        A write recreates a data directory removed while the backend ran (a tmp cleaner, a deploy, ``rm -r``).
        """
        owner, no_links = f"dbm backend at {self.data_dir}", () if self._data_dir_is_link else (self.data_dir,)
        refuse_links(owner, no_links)  # a data directory replaced by a link to elsewhere (rare: once per lock file)
        made_directory = False
        while True:
            try:
                fd = create_file(self.lock_path, os.O_RDWR, self.file_mode)
                self._new_files = True
                break
            except FileExistsError:
                try:
                    fd = os.open(self.lock_path, os.O_RDWR | O_CLOEXEC)
                    break
                except FileNotFoundError:
                    continue  # removed meanwhile (with its directory): create it
            except (FileNotFoundError, NotADirectoryError) as exc:
                if not write and isinstance(exc, FileNotFoundError):
                    return False
                if made_directory:
                    raise
                make_directory(self.data_dir, owner, no_links, mode=self.dir_mode)
                made_directory = True
        opened = os.fstat(fd)
        self._lock_fd, self._lock_id = fd, (opened.st_dev, opened.st_ino)
        return True

    def _lock(self, write: bool) -> bool:
        """Flock the lock file at ``lock_path``, shared to read, exclusive to write; False as for _open_lock_file."""
        while True:
            if self._lock_fd is None and not self._open_lock_file(write):
                return False
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            # One stat per access, and it cannot be saved: when the directory is removed, nothing this process does
            # with its open lock file and database handle fails (both work on the unlinked files), so without it
            # this process would lock a file the other processes no longer see and read a database nobody writes.
            try:
                current = os.stat(self.lock_path)
            except (FileNotFoundError, NotADirectoryError):
                current = None
            if current is not None and (current.st_dev, current.st_ino) == self._lock_id:
                return True
            # removed (or replaced): drop the lock file and the handle of the database that went with it
            fd, self._lock_fd, self._lock_id = self._lock_fd, None, None
            os.close(fd)
            self._close_reader()
            self._reader_generation = -1

    @contextlib.contextmanager
    def _access(self, write: bool) -> Iterator[Any]:
        """The database, under the lock file's shared (read) or exclusive (write) flock.

        A read of a data directory or a database that is not there (removed while the backend ran) gets an empty
        mapping; a write recreates them.
        """
        if self._pid != os.getpid():
            self._reset()
        with self._thread_lock:
            try:
                locked = self._lock(write)
            except OSError as exc:
                raise self._error("lock", self.lock_path, exc) from exc
            if not locked:
                yield {}
                return
            try:
                try:
                    if write:
                        # announced before the change: a writer that dies halfway still invalidates readers' handles
                        os.pwrite(self._lock_fd, _COUNTER.pack(self._generation() + 1), 0)
                        database = self._open_db(write=True)
                        if self._new_files:
                            self._set_file_modes()
                    else:
                        generation = self._generation()
                        if self._reader is None or generation != self._reader_generation:
                            self._close_reader()
                            self._reader = self._open_db(write=False)
                            self._reader_generation = generation
                        database = self._reader
                except self._errors + _OPEN_ERRORS as exc:
                    if write or getattr(exc, "errno", None) != errno.ENOENT:
                        raise self._error("open", self.path, exc) from exc
                    database = {}  # the directory was recreated (by a lock, say) without the database: a miss
                try:
                    yield database
                except self._errors as exc:
                    raise self._error("write" if write else "read", self.path, exc) from exc
                finally:
                    if write:
                        try:
                            database.close()
                        except self._errors as exc:
                            raise self._error("write", self.path, exc) from exc
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _set_file_modes(self) -> None:
        """Give the database files this process owns ``file_mode`` exactly (the dbm module's mode lost the bits the
        umask takes off)."""
        self._new_files = False
        prefix = os.path.basename(self.path)
        euid = os.geteuid()
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                if not entry.name.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and info.st_uid == euid and \
                            stat.S_IMODE(info.st_mode) != self.file_mode:
                        os.chmod(entry.path, self.file_mode)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(*self._errors):
                reader.close()

    @staticmethod
    def _key(key: str) -> bytes:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        return key.encode("utf-8", "surrogatepass")

    @staticmethod
    def _value(key: str, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"the dbm backend stores bytes, not {type(value).__name__} (key {key!r})")

    # -- the backend surface ---------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        raw_keys = [self._key(key) for key in keys]
        with self._access(write=False) as database:
            stored = [database.get(raw_key) for raw_key in raw_keys]
        now = clock.now()
        values = []
        dead = []
        for raw_key, item in zip(raw_keys, stored):
            entry = _live(raw_key, item, now)
            values.append(entry[0] if entry is not None else None)
            if item is not None and entry is None:
                dead.append(raw_key)
        if dead:
            self._remove_dead(dead)
        return values

    def _remove_dead(self, raw_keys: list[bytes]) -> int:
        """Delete the entries that are (still, under the write lock) expired or corrupt."""
        with self._access(write=True) as database:
            return self._remove_dead_in(database, raw_keys)

    @staticmethod
    def _remove_dead_in(database: Any, raw_keys: list[bytes]) -> int:
        removed = 0
        now = clock.now()
        for raw_key in raw_keys:
            item = database.get(raw_key)
            if item is not None and _live(raw_key, item, now) is None:
                del database[raw_key]
                removed += 1
        return removed

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raw_key = self._key(key)
        stored = _encode(raw_key, self._value(key, value), deadline(ttl))
        with self._access(write=True) as database:
            database[raw_key] = stored

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        raw_key = self._key(key)
        stored = _encode(raw_key, self._value(key, value), deadline(ttl))
        with self._access(write=True) as database:
            if _live(raw_key, database.get(raw_key), clock.now()) is not None:
                return False
            database[raw_key] = stored
            return True

    def delete(self, key: str) -> bool:
        raw_key = self._key(key)
        with self._access(write=True) as database:
            item = database.get(raw_key)
            if item is None:
                return False
            del database[raw_key]
            return _live(raw_key, item, clock.now()) is not None

    def touch(self, key: str, ttl: float | None) -> bool:
        raw_key = self._key(key)
        expires = deadline(ttl)
        with self._access(write=True) as database:
            entry = _live(raw_key, database.get(raw_key), clock.now())
            if entry is None:
                return False
            database[raw_key] = _encode(raw_key, entry[0], expires)
            return True

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomic across processes. An existing deadline is kept; a new counter never expires."""
        check_delta(delta)
        raw_key = self._key(key)
        with self._access(write=True) as database:
            entry = _live(raw_key, database.get(raw_key), clock.now())
            try:
                number = (int(entry[0]) if entry is not None else 0) + delta
            except ValueError:
                raise ValueError(f"the value under {key!r} is not an integer, cannot increment it") from None
            database[raw_key] = _encode(raw_key, str(number).encode("ascii"), entry[1] if entry is not None else None)
            return number

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._access(write=False) as database:
            items = [(raw_key, database.get(raw_key)) for raw_key in list(database.keys())]
        now = clock.now()
        found = []
        for raw_key, item in items:
            key = raw_key.decode("utf-8", "surrogatepass")
            if key.startswith(prefix) and _live(raw_key, item, now) is not None:
                found.append(key)
        return iter(found)

    def cleanup(self) -> int:
        """Remove expired and corrupt entries, and give free space back: compact dumb's data file (in place: it needs
        no free space), reorganize gnu."""
        with self._access(write=False) as database:
            now = clock.now()
            dead = [raw_key for raw_key in list(database.keys()) if _live(raw_key, database.get(raw_key), now) is None]
            unused = database.unused_bytes() if isinstance(database, dumbstore.DumbStore) else 0
        if self.module_name == "dumb":
            if not dead and not unused:
                return 0
            with self._access(write=True) as database:
                removed = self._remove_dead_in(database, dead)
                database.compact()
            return removed
        removed = self._remove_dead(dead) if dead else 0
        if removed and self.module_name == "gnu":
            self._new_files = True  # reorganize writes a new file, with the mode minus the umask
            with self._access(write=True) as database:
                database.reorganize()
        return removed

    def close(self) -> None:
        if self._pid != os.getpid():
            self._reset()
            return
        with self._thread_lock:
            self._close_reader()
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)

    def describe(self) -> str:
        return f"dbm backend at {self.data_dir} ({self.module_name})"

    def __del__(self, _getpid: Any = os.getpid, _close: Any = os.close) -> None:
        # what it calls is bound here: at interpreter exit this module's globals may be gone (None) before it runs
        fd = getattr(self, "_lock_fd", None)
        if fd is not None and getattr(self, "_pid", None) == _getpid():
            try:
                _close(fd)
            except OSError:
                pass
