"""The ``file`` lock: excludes the processes (and threads) of one machine that use the same name and directory.

:param lock_dir: the directory of the lock files. Created if absent, and created again by the next acquisition if
    it is removed while the application runs. When unset: the backend's ``lock_dir`` if it has one, else
    ``<data_dir>/locks`` for the ``data_dir`` option, else ``<backend.data_dir>/locks``; a lock with none of these
    is a configuration error. This is the one place that decides Beaker's default lock directory: the cache and the
    sessions hand the lock the ``lock_dir`` and ``data_dir`` they were configured with.
:param data_dir: Beaker's shared data directory, used only for that default (``<data_dir>/locks``) when neither
    the ``lock_dir`` option nor the backend's ``lock_dir`` is set: a ``file`` lock on a backend that keeps no files
    (``lock_type = file`` with the memory backend) still finds its directory.
:param file_mode: permission bits of the lock files, whatever the umask (an int, or an octal string such as
    ``"0660"``, checked as the ``file`` backend's option). When unset, the backend's ``file_mode`` if it has one
    (the ``file`` and ``dbm`` backends), else ``0o600``.
:param dir_mode: permission bits of the lock directory and its missing parents when the lock creates them; when
    unset, the backend's ``dir_mode``, else ``0o700``. An existing lock directory is left as it is.
:param timeout: how long ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (seconds, a number >= 0; None waits forever).
:param expire: accepted for compatibility with distributed locks and not enforced: the lock is an ``flock`` on an
    open file, which the kernel releases when its holder exits or crashes, so a dead holder never blocks anyone.

Each name maps to ``<lock_dir>/<sha256 of the name>.lock``. Acquiring opens that file and polls a non-blocking
``flock`` with growing sleeps (1 ms doubling up to 50 ms). Lock files do not pile up: the holder unlinks the file
before unlocking it, and whoever then obtains the lock on that unlinked file notices (the inode at the path is no
longer the one it locked) and starts over with a fresh file. A file left by a crashed holder is reused and removed by
the next holder of that name.

``flock`` belongs to an open file description, and every acquisition opens its own, so two lock objects in two
threads of one process exclude each other as two processes do. One lock object may also be shared by threads, like
a ``threading.Lock``; it is not reentrant (acquiring it again in its holder waits for the timeout).
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from typing import Any

from ..exceptions import BackendError, ConfigurationError
from ..fs import O_CLOEXEC, create_file, directory_option, fcntl, file_modes, make_directory, require_flock
from ..util import coerce_float, unknown_options
from . import DEFAULT_EXPIRE, DEFAULT_TIMEOUT, Backoff, Lock


def _seconds(option: str, value: Any) -> float | None:
    """None, or a number of seconds >= 0 (numeric strings accepted, as configuration files give them)."""
    if value is None:
        return None
    number = coerce_float(f"the file lock's {option}", value, minimum=0.0)
    if math.isnan(number):
        raise ConfigurationError(f"the file lock's {option} must be a number of seconds >= 0, not {value!r}")
    return number


def resolve_lock_dir(lock_dir: Any, data_dir: Any, backend: Any) -> str:
    """The lock directory, decided here only: the ``lock_dir`` option, else the backend's ``lock_dir``, else
    ``<data_dir>/locks`` for the ``data_dir`` option, else ``<backend.data_dir>/locks``."""
    if lock_dir is not None:
        return directory_option("lock_dir", lock_dir, required=True, owner="the file lock")
    if getattr(backend, "lock_dir", None):
        return directory_option("lock_dir", backend.lock_dir, required=True, owner="the file lock")
    data_dir = data_dir or getattr(backend, "data_dir", None)  # an empty data_dir is unset, as in Beaker
    if data_dir:
        return os.path.join(directory_option("data_dir", data_dir, required=True, owner="the file lock"), "locks")
    raise ConfigurationError(
        "the file lock needs a lock_dir (the directory of its lock files); set lock_dir or data_dir, or use it with "
        "a backend that has a data_dir")


class FileLock(Lock):
    __doc__ = __doc__

    kind = "file"

    def __init__(self, name: str, *, backend: Any = None, expire: Any = DEFAULT_EXPIRE,
                 timeout: Any = DEFAULT_TIMEOUT, lock_dir: Any = None, data_dir: Any = None, file_mode: Any = None,
                 dir_mode: Any = None, **options: Any):
        if options:
            unknown_options("the file lock", options,
                            ("backend", "expire", "timeout", "lock_dir", "data_dir", "file_mode", "dir_mode"))
        require_flock("the file lock")
        super().__init__(name, backend=backend, expire=_seconds("expire", expire), timeout=_seconds("timeout", timeout))
        self.lock_dir = resolve_lock_dir(lock_dir, data_dir, backend)
        self.file_mode, self.dir_mode = file_modes(
            getattr(backend, "file_mode", None) if file_mode is None else file_mode,
            getattr(backend, "dir_mode", None) if dir_mode is None else dir_mode)
        self.path = os.path.join(self.lock_dir, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
                                 + ".lock")
        self._fd: int | None = None
        self._guard = threading.Lock()  # serializes bookkeeping of _fd between threads sharing this object

    def _open(self) -> int:
        made_directory = False
        while True:
            try:
                return create_file(self.path, os.O_RDWR, self.file_mode)
            except FileExistsError:
                try:
                    return os.open(self.path, os.O_RDWR | O_CLOEXEC)
                except FileNotFoundError:
                    continue  # its holder removed it meanwhile: create it
            except (FileNotFoundError, NotADirectoryError):
                if made_directory:
                    raise
                # the first lock, or the directory was removed while the application ran: (re)create it, never
                # through a link that appeared in its place
                make_directory(self.lock_dir, f"file lock {self.name!r}", no_links=(self.lock_dir,),
                               mode=self.dir_mode)
                made_directory = True

    def _try_lock(self, fd: int) -> bool | None:
        """True: locked the file at the path. False: held by someone else. None: the file was replaced, reopen."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        locked = os.fstat(fd)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino, current.st_dev) == (locked.st_ino, locked.st_dev):
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)  # we won a file its last holder already removed
        return None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (forever if None) unless ``blocking`` is false."""
        if timeout is not None:
            timeout = _seconds("timeout", timeout)
        backoff = Backoff(blocking, timeout)
        fd = None
        try:
            while True:
                if fd is None:
                    fd = self._open()
                state = self._try_lock(fd)
                if state:
                    with self._guard:
                        self._fd, fd = fd, None
                    return True
                if state is None:
                    os.close(fd)
                    fd = None
                    continue
                if not backoff.wait():
                    return False
        except OSError as exc:
            raise BackendError(f"file lock {self.name!r}: cannot lock {self.path}: {exc.strerror or exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)

    def release(self) -> None:
        with self._guard:
            fd, self._fd = self._fd, None
        if fd is None:
            raise RuntimeError(f"release of the unheld lock {self.name!r}")
        try:
            os.unlink(self.path)  # before unlocking, so the next holder knows to start over with a fresh file
        except OSError:
            pass  # the lock is released all the same; the file is reused and removed by the next holder
        finally:
            os.close(fd)  # closing the last descriptor of the file releases the flock

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
