"""The ``file`` backend: one file per key under a directory, shared by the processes of one machine.

:param data_dir: the directory that holds the data (required; created if absent).
:param lock_dir: where the ``file`` lock keeps its lock files. The backend does not use it; it is accepted because
    Beaker's configuration passes it along, and the ``file`` lock reads it from the backend. When unset the lock
    uses ``<data_dir>/locks``.
:param file_mode: permission bits of the data files, as an int (``0o640``) or an octal string (``"0640"``). By
    default a file gets ``0o666`` minus the process umask, like any file the process creates.
:param fsync: flush each write to the disk before it becomes visible (slower; survives a power loss). Default false.

Layout: the sha256 of the key names its file, ``data_dir/ab/cd/abcd...`` (64 hex digits), so no key, however odd,
names a path outside ``data_dir``. A file holds a fixed header, the key, then the value::

    b"BKF1" | flags: u8 (1 = has a deadline) | deadline: f64 (epoch seconds) | key length: u32
            | value length: u64 | crc32 of key and value: u32 | key | value

The stored key lets :meth:`FileBackend.keys` enumerate keys and turns a (theoretical) sha256 collision into a miss
instead of the other key's value. A file whose header, lengths or checksum do not match is a miss and is removed.

Concurrency: a data file is never modified in place. Every write goes to a temporary file in the same directory
(``.tmp-*``), which is then renamed over the old file, or hard-linked to the path when there is none (a link fails
if another process created the path first). A reader therefore sees a whole old or a whole new version and takes no
lock: a hit is one open and one read. Writers (set, add, delete, touch, incr and the removal of an expired or corrupt
file) take an exclusive ``flock`` on the file currently at the path and check that it is still the file at the path
(a writer that replaced or removed it meanwhile makes them start over) before replacing or unlinking it. So writes to
one key are serialized across processes: ``add`` and ``incr`` are atomic, and no write is lost to a concurrent one.
The data directory must be on a local file system with hard links and ``flock`` (not Windows, not most network
file systems).

``touch`` rewrites the whole file under that lock (cost proportional to the value's size), so that a reader can
never see a half-written deadline. ``cleanup`` removes expired and corrupt files, temporary files left by a crashed
writer (older than five minutes) and empty shard directories.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import secrets
import struct
import time
import zlib
from typing import Any, Callable, Iterable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: the module still imports, so that the registry can list the other backends
    fcntl = None

from ..exceptions import BackendError, ConfigurationError
from ..util import coerce_bool, unknown_options
from . import Backend, deadline

_HEADER = struct.Struct(">4sBdIQI")
_MAGIC = b"BKF1"
_HAS_DEADLINE = 1
_FIRST_READ = 65536
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 300.0
_HEX = frozenset("0123456789abcdef")
_DELETE = object()  # what an update returns to remove the file
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def require_flock(owner: str) -> None:
    if fcntl is None:
        raise ConfigurationError(f"{owner} needs fcntl.flock, which this platform lacks")


def directory_option(option: str, value: Any, *, required: bool, owner: str) -> str | None:
    """Check a directory option (a str or path object) and return it as an absolute path."""
    if value is None:
        if required:
            raise ConfigurationError(f"{owner} needs the {option} option: the directory that holds its files")
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{option} must be a directory path (a string), not {value!r}")
    if not value.strip() or "\x00" in value:
        raise ConfigurationError(f"{option} must be a non-empty directory path without NUL bytes, not {value!r}")
    return os.path.abspath(value)


def _mode_option(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            number = int(text[2:] if text.startswith("0o") else text, 8)
        except ValueError:
            raise ConfigurationError(f"file_mode must be an octal permission such as '0640', not {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ConfigurationError(f"file_mode must be an int or an octal string such as '0640', not {value!r}")
    if not 0 <= number <= 0o777:
        raise ConfigurationError(f"file_mode must be permission bits between 0 and 0o777, not {value!r}")
    return number


def encode_entry(raw_key: bytes, value: bytes, expires: float | None) -> bytes:
    checksum = zlib.crc32(value, zlib.crc32(raw_key))
    header = _HEADER.pack(_MAGIC, 0 if expires is None else _HAS_DEADLINE, expires or 0.0,
                          len(raw_key), len(value), checksum)
    return b"".join((header, raw_key, value))


def decode_entry(data: bytes) -> tuple[bytes, bytes, float | None] | None:
    """``(raw_key, value, deadline)`` from a file's bytes, or None if they are not a whole, intact entry."""
    if len(data) < _HEADER.size:
        return None
    magic, flags, expires, key_length, value_length, checksum = _HEADER.unpack_from(data)
    start = _HEADER.size
    if magic != _MAGIC or flags & ~_HAS_DEADLINE or len(data) != start + key_length + value_length:
        return None
    raw_key, value = data[start:start + key_length], data[start + key_length:]
    if zlib.crc32(value, zlib.crc32(raw_key)) != checksum:
        return None
    if not flags:
        return raw_key, value, None
    return (raw_key, value, expires) if math.isfinite(expires) else None


def _is_dead(raw_key: bytes | None, data: bytes, now: float) -> bool:
    """Whether a file may be removed: corrupt, or an expired entry (of ``raw_key`` unless that is None)."""
    entry = decode_entry(data)
    if entry is None:
        return True
    if raw_key is not None and entry[0] != raw_key:
        return False
    return entry[2] is not None and entry[2] <= now


def _read_all(fd: int) -> bytes:
    """The whole file: usually one read, since the header says how long the file should be."""
    data = os.read(fd, _FIRST_READ)
    if len(data) < _FIRST_READ:
        return data
    chunks = [data]
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class FileBackend(Backend):
    __doc__ = __doc__

    name = "file"
    preferred_lock = "file"
    shared = True

    def __init__(self, data_dir: Any = None, lock_dir: Any = None, file_mode: Any = None, fsync: Any = False,
                 **unknown: Any):
        if unknown:
            unknown_options("the file backend", unknown, ("data_dir", "lock_dir", "file_mode", "fsync"))
        require_flock("the file backend")
        self.data_dir = directory_option("data_dir", data_dir, required=True, owner="the file backend")
        self.lock_dir = directory_option("lock_dir", lock_dir, required=False, owner="the file backend")
        self.file_mode = _mode_option(file_mode)
        self.fsync = coerce_bool("fsync", fsync)
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise self._error("create the directory", self.data_dir, exc) from exc

    # -- paths and errors ------------------------------------------------------------------------------------------

    def _path(self, key: str) -> tuple[bytes, str]:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        raw_key = key.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw_key).hexdigest()
        return raw_key, os.path.join(self.data_dir, digest[:2], digest[2:4], digest)

    def _error(self, action: str, path: str, exc: OSError) -> BackendError:
        return BackendError(f"file backend at {self.data_dir}: cannot {action} {path}: {exc.strerror or exc}")

    # -- reading ---------------------------------------------------------------------------------------------------

    def _read(self, path: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("open", path, exc) from exc
        try:
            return _read_all(fd)
        except OSError as exc:
            raise self._error("read", path, exc) from exc
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes | None:
        raw_key, path = self._path(key)
        data = self._read(path)
        if data is None:
            return None
        entry = decode_entry(data)
        if entry is not None and entry[0] == raw_key and (entry[2] is None or entry[2] > time.time()):
            return entry[1]
        if entry is None or entry[0] == raw_key:
            try:
                self._discard(path, raw_key)
            except BackendError:
                pass  # a miss all the same; cleanup() reports what it cannot remove
        return None

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        get = self.get
        return [get(key) for key in keys]

    # -- writing ---------------------------------------------------------------------------------------------------

    def _lock_current(self, path: str, *, blocking: bool = True, read: bool = True) -> tuple[int, bytes] | None:
        """Lock the file at ``path`` exclusively; return its fd and content (if ``read``), or None when there is none.

        With ``blocking=False``, None also means that another process holds the lock.
        """
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    return None
                locked = os.fstat(fd)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is not None and (current.st_ino, current.st_dev) == (locked.st_ino, locked.st_dev):
                    return fd, (_read_all(fd) if read else b"")
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # replaced or removed while we waited: lock whatever is there now

    def _write_temp(self, directory: str, data: bytes) -> str:
        temp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))
        for attempt in range(5):
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
                # a new shard directory, or one that cleanup() just removed because it was empty
                os.makedirs(directory, exist_ok=True)
        try:
            if self.file_mode is not None:
                os.fchmod(fd, self.file_mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        return temp

    def _update(self, raw_key: bytes, path: str,
                change: Callable[[tuple[bytes, float | None] | None], tuple[Any, Any]], read: bool = True) -> Any:
        """Apply ``change`` to the key's live entry ``(value, deadline)`` (or None) under the key's file lock.

        ``change`` returns ``(new_file_bytes | None | _DELETE, result)``; None leaves the file as it is. With
        ``read=False`` the current file is not read and ``change`` always gets None (for a plain overwrite).
        """
        directory = os.path.dirname(path)
        temp = None
        try:
            while True:
                held = self._lock_current(path, read=read)
                entry = None
                foreign = False
                if held is not None and read:
                    decoded = decode_entry(held[1])
                    foreign = decoded is not None and decoded[0] != raw_key
                    if decoded is not None and not foreign and (decoded[2] is None or decoded[2] > time.time()):
                        entry = decoded[1], decoded[2]
                try:
                    content, result = change(entry)
                    if held is None:
                        if content is None or content is _DELETE:
                            return result
                        temp = self._write_temp(directory, content)
                        try:
                            os.link(temp, path)
                        except FileExistsError:
                            continue  # created by another process meanwhile: start over with its file
                        return result
                    if content is _DELETE:
                        if not foreign:
                            os.unlink(path)
                    elif content is not None:
                        temp = self._write_temp(directory, content)
                        os.replace(temp, path)
                        temp = None
                    return result
                finally:
                    if held is not None:
                        os.close(held[0])
                    if temp is not None:
                        os.unlink(temp)
                        temp = None
        except OSError as exc:
            raise self._error("write", path, exc) from exc

    def _discard(self, path: str, raw_key: bytes | None) -> bool:
        """Remove the file at ``path`` if it is still corrupt or expired; never waits for a writer."""
        try:
            held = self._lock_current(path, blocking=False)
            if held is None:
                return False
            try:
                if _is_dead(raw_key, held[1], time.time()):
                    os.unlink(path)
                    return True
                return False
            finally:
                os.close(held[0])
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error("remove", path, exc) from exc

    @staticmethod
    def _check_value(key: str, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"the file backend stores bytes, not {type(value).__name__} (key {key!r})")

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raw_key, path = self._path(key)
        content = encode_entry(raw_key, self._check_value(key, value), deadline(ttl))
        self._update(raw_key, path, lambda entry: (content, None), read=False)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        raw_key, path = self._path(key)
        content = encode_entry(raw_key, self._check_value(key, value), deadline(ttl))
        return self._update(raw_key, path, lambda entry: (None, False) if entry is not None else (content, True))

    def delete(self, key: str) -> bool:
        raw_key, path = self._path(key)
        return self._update(raw_key, path, lambda entry: (_DELETE, entry is not None))

    def touch(self, key: str, ttl: float | None) -> bool:
        raw_key, path = self._path(key)
        expires = deadline(ttl)

        def change(entry):
            if entry is None:
                return None, False
            return encode_entry(raw_key, entry[0], expires), True
        return self._update(raw_key, path, change)

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomic across processes. An existing deadline is kept; a new counter never expires."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"incr needs an int delta, not {delta!r}")
        raw_key, path = self._path(key)

        def change(entry):
            if entry is None:
                number, expires = delta, None
            else:
                try:
                    number = int(entry[0]) + delta
                except ValueError:
                    raise ValueError(f"the value under {key!r} is not an integer, cannot increment it") from None
                expires = entry[1]
            return encode_entry(raw_key, str(number).encode("ascii"), expires), number
        return self._update(raw_key, path, change)

    # -- enumeration and maintenance -------------------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[str, os.DirEntry]]:
        """``(shard_dir, entry)`` for every file in the shard directories (data and temporary files)."""
        try:
            tops = sorted(e.path for e in os.scandir(self.data_dir) if _is_shard(e))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error("list", self.data_dir, exc) from exc
        for top in tops:
            try:
                subs = sorted(e.path for e in os.scandir(top) if _is_shard(e))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for sub in subs:
                try:
                    entries = list(os.scandir(sub))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for entry in entries:
                    yield sub, entry

    def keys(self, prefix: str = "") -> Iterator[str]:
        now = time.time()
        for _, entry in self._scan():
            if len(entry.name) != 64:
                continue
            data = self._read(entry.path)
            decoded = decode_entry(data) if data is not None else None
            if decoded is None or (decoded[2] is not None and decoded[2] <= now):
                continue
            key = decoded[0].decode("utf-8", "surrogatepass")
            if key.startswith(prefix):
                yield key

    def cleanup(self) -> int:
        """Remove expired and corrupt entries, stale temporary files and empty shard directories."""
        removed = 0
        now = time.time()
        for _, entry in self._scan():
            if entry.name.startswith(TEMP_PREFIX):
                try:
                    if entry.stat().st_mtime < now - STALE_TEMP_SECONDS:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise self._error("remove", entry.path, exc) from exc
            elif len(entry.name) == 64:
                data = self._read(entry.path)
                if data is not None and _is_dead(None, data, now):
                    removed += self._discard(entry.path, None)
        self._remove_empty_shards()
        return removed

    def _remove_empty_shards(self) -> None:
        # A writer that loses its directory to this recreates it (see _write_temp).
        try:
            tops = [e.path for e in os.scandir(self.data_dir) if _is_shard(e)]
        except OSError:
            return
        for top in tops:
            try:
                subs = [e.path for e in os.scandir(top) if _is_shard(e)]
            except OSError:
                continue
            for directory in subs + [top]:
                try:
                    os.rmdir(directory)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                        raise self._error("remove", directory, exc) from exc

    def describe(self) -> str:
        return f"file backend at {self.data_dir}"


def _is_shard(entry: os.DirEntry) -> bool:
    return len(entry.name) == 2 and set(entry.name) <= _HEX and entry.is_dir(follow_symlinks=False)
