"""The ``file`` backend: one file per key under a directory, shared by the processes of one machine.

:param data_dir: the directory that holds the data (required; created if absent). A data or shard directory
    removed while the application runs is a miss for reads, and the next write creates it again.
:param lock_dir: where the ``file`` lock keeps its lock files. The backend does not use it; it is accepted because
    Beaker's configuration passes it along, and the ``file`` lock reads it from the backend. When unset the lock
    uses ``<data_dir>/locks``.
:param file_mode: permission bits of the files it creates, whatever the umask: an int (``0o640``) or an octal
    string (``"0640"``, ``"0o640"``). Default ``0o600``, as a file holds its key (a session id) in clear. Widen it
    (``0o660``) for accounts of one group sharing the directory; it keeps at least the owner's ``rw``. The ``file``
    lock gives its lock files the same mode.
:param dir_mode: permission bits of the directories it creates (the data directory and its missing parents, shard
    directories, the lock directory), in the same forms. Default ``0o700``; it keeps at least the owner's ``rwx``,
    and may add setgid (``0o2770``) so that new files take the directory's group. See Permissions below.
:param fsync: flush each write's data to the disk before the call returns (slower). Without it a process crash
    still loses nothing written, but a power loss or kernel crash may take a key back to an older version or,
    rarely, lose it (a miss). Either way a torn value is never returned. Default false.

Layout: the sha256 of the key names its file, ``data_dir/ab/cd/abcd...`` (64 hex digits), so no key, however odd,
names a path outside ``data_dir``. A file is a header, written once, then two slots of ``slot size`` bytes::

    header: b"BKF2" | slot size: u64 | crc32 of the previous 12 bytes: u32
    slot:   crc32 of the rest of the slot header: u32 | crc32 of key and value: u32 | sequence: u64
            | flags: u8 (1 = has a deadline, 2 = unused) | deadline: f64 (epoch seconds) | key length: u32
            | value length: u64 | key | value | unused bytes up to the slot size

A slot is whole when both checksums match. The newest version of the key is the whole slot with the higher
sequence; the other slot holds an older version. The stored key lets :meth:`FileBackend.keys` enumerate keys and
turns a (theoretical) sha256 collision into a miss instead of the other key's value. A file whose header is damaged
(or written by another format) or with no whole slot is a miss and is removed.

Why two slots: renaming a new file over the old one costs a forced data flush on ext4 (its ``auto_da_alloc``
heuristic), about fifteen times the cost of rewriting a few hundred bytes of an existing file. So an update of an
existing key writes the new version in place, with one ``pwrite``, into the slot that does not hold the newest
version, with the sequence after the newest, under an exclusive ``flock`` on the file. The newest version is never
overwritten, so:

* a reader takes no lock. It reads the file, checks both slot headers and the slot with the higher sequence whole.
  When they all check, that version was the newest at some moment of the read: the other slot still has an older
  version's header, so the next version had not been written. Anything else means a write in progress (or the
  remnant of a crash): the reader reads again, then once more under a shared ``flock``, which waits for the writer.
  There a damaged slot is a crash's remnant: the reader takes the newest whole version and writes it again into
  the damaged slot, mending the file. A reader gets a whole old or a whole new version, never a torn one;
* a crash in the middle of a write damages only the slot being written: the previous version stays readable.

A version that does not fit the slot, or takes less than a quarter of a slot larger than 4 KiB (a read would then
mostly read padding), goes to a new file with a fitting slot size (1.5 times what the version needs, at least 512
bytes), written in the same directory as ``.tmp-*`` and renamed over the old one. A new key's file is written the
same way and hard-linked to the path (a link fails if another process created the path first). Most writes are
thus one ``pwrite``. Writers (set, add, delete, touch, incr, update and the removal of an expired or damaged file)
take the exclusive ``flock`` on the file currently at the path and check that it is still the file at the path (a
writer that replaced or removed it meanwhile makes them start over). So writes to one key are serialized across
processes: ``add``, ``incr`` and ``update`` are atomic, and no write is lost to a concurrent one. A data file this
process may read but not write (another user's, say) is replaced instead of written in place. The data directory
must be on a local file system with hard links and ``flock`` (not Windows, not most network file systems).

Permissions: every directory and file the backend and its lock create gets ``dir_mode`` or ``file_mode``
exactly (an explicit ``fchmod``, so the umask neither narrows nor widens it); a setgid bit a new directory inherits
is kept. A directory that already exists (``/var/cache/app`` made by a deploy script) is not changed, but when the
data directory grants the group or others a permission that ``dir_mode`` does not, startup logs one warning naming
it and the ``chmod`` that fixes it (or, for a shared directory such as ``/tmp``, asking for a directory of its own):
files written there by an older version, or under a wider umask, may be readable, and a writable data directory
lets another account replace the shard directories.

``touch`` writes the value with its new deadline as a new version. ``update`` is the atomic update capability
sessions use (see :mod:`beaker_core.backends`): the change runs under the key's lock, so sessions need no lock file
of their own. ``cleanup`` removes expired and damaged files, temporary files left by a crashed writer (older than
five minutes) and the shard directories left empty; ``clear`` removes every entry, and ``delete_prefix`` the shard
directories it empties. A writer never loses its write to a directory removed under it: it creates it again.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import secrets
import struct
import zlib
from typing import Any, Callable, Iterable, Iterator

from .. import clock
from ..exceptions import BackendError
from ..fs import (O_CLOEXEC, create_file, datasync, directory_option, fcntl, file_modes, make_directory, pwrite_all,
                  require_flock, warn_if_open)
from ..util import coerce_bool, unknown_options
from . import Backend, check_delta, check_ttl, deadline

_FILE_HEADER = struct.Struct(">4sQI")
_FIELDS = struct.Struct(">IQBdIQ")  # a slot header after its own checksum
_SLOT_HEADER = struct.Struct(">IIQBdIQ")
_CRC = struct.Struct(">I")
_MAGIC = b"BKF2"
_HAS_DEADLINE = 1
_UNUSED = 2
_MIN_SLOT = 512
_SHRINK_ABOVE = 4096  # a slot larger than this is shrunk when a version uses less than a quarter of it
_FIRST_READ = 65536
_PATH_MEMO_SIZE = 1024
_READ_ATTEMPTS = 2  # lock-free reads of a file with a damaged slot before reading under a shared lock
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 300.0
_HEX = frozenset("0123456789abcdef")
_DELETE = object()  # what a change returns to remove the file


# -- the format -------------------------------------------------------------------------------------------------------

def encode_slot(sequence: int, raw_key: bytes, value: bytes, expires: float | None, flags: int = 0) -> bytes:
    """A slot's used bytes: one version of the entry."""
    body = raw_key + value
    fields = _FIELDS.pack(zlib.crc32(body), sequence, flags | (0 if expires is None else _HAS_DEADLINE),
                          expires or 0.0, len(raw_key), len(value))
    return b"".join((_CRC.pack(zlib.crc32(fields)), fields, body))


_UNUSED_SLOT = encode_slot(0, b"", b"", None, _UNUSED)


def slot_size_for(used: int) -> int:
    """The slot size of a new file whose first version takes ``used`` bytes: room to grow by half."""
    return max(_MIN_SLOT, -(-(used + used // 2) // 256) * 256)


def new_file(raw_key: bytes, value: bytes, expires: float | None) -> tuple[list[tuple[int, bytes]], int]:
    """A new file as ``([(offset, bytes), ...], length)``: the header, the entry in slot 0, slot 1 unused."""
    slot = encode_slot(1, raw_key, value, expires)
    size = slot_size_for(len(slot))
    head = _FILE_HEADER.pack(_MAGIC, size, 0)[:12]
    header = head + _CRC.pack(zlib.crc32(head))
    return [(0, header + slot), (_FILE_HEADER.size + size, _UNUSED_SLOT)], _FILE_HEADER.size + 2 * size


def _head(data: bytes, fd: int | None, start: int) -> tuple | None:
    """The fields of the slot header at ``start`` followed by ``start``, or None when the header is damaged."""
    buf, at = data, start
    if start + _SLOT_HEADER.size > len(data):  # a large file: past the first read
        if fd is None:
            return None
        buf, at = os.pread(fd, _SLOT_HEADER.size, start), 0
        if len(buf) < _SLOT_HEADER.size:
            return None
    fields = _SLOT_HEADER.unpack_from(buf, at)
    if zlib.crc32(buf[at + 4:at + _SLOT_HEADER.size]) != fields[0]:
        return None
    return fields + (start,)


def read_heads(data: bytes, fd: int | None = None) -> tuple[bytes, int, list] | None:
    """``(data, slot size, [slot 0's header, slot 1's header])`` from a file's first bytes (reading what else is
    needed from ``fd``), or None when the file header is damaged."""
    if len(data) < _FILE_HEADER.size:
        return None
    magic, size, checksum = _FILE_HEADER.unpack_from(data)
    if magic != _MAGIC or checksum != zlib.crc32(data[:12]) or size < _SLOT_HEADER.size:
        return None
    return data, size, [_head(data, fd, _FILE_HEADER.size), _head(data, fd, _FILE_HEADER.size + size)]


def _entry(data: bytes, fd: int | None, size: int, head: tuple) -> tuple[bytes, bytes, float | None] | None:
    """``(raw_key, value, deadline)`` of the slot whose header is ``head`` when the slot is whole, else None
    (also for an unused slot)."""
    _, checksum, _, flags, expires, key_length, value_length, start = head
    if flags & ~_HAS_DEADLINE or (flags and not math.isfinite(expires)):
        return None
    length = key_length + value_length
    if _SLOT_HEADER.size + length > size:
        return None
    at = start + _SLOT_HEADER.size
    buf = data
    if at + length > len(data):
        if fd is None:
            return None
        buf, at = os.pread(fd, length, at), 0
        if len(buf) < length:
            return None
    # key and value follow each other: one checksum over both (the crc of the key continued over the value)
    body = buf[at:at + length]  # no copy when buf was read for this entry alone
    if zlib.crc32(body) != checksum:
        return None
    return body[:key_length], body[key_length:], expires if flags else None


def _newest(read: tuple, fd: int | None) -> tuple[int, tuple] | None:
    """``(slot index, entry)`` of the whole version with the highest sequence, or None when there is none."""
    data, size, (first, second) = read
    if first is None:
        order = () if second is None else (1,)
    elif second is None:
        order = (0,)
    else:
        order = (1, 0) if second[2] > first[2] else (0, 1)
    for index in order:
        entry = _entry(data, fd, size, read[2][index])
        if entry is not None:
            return index, entry
    return None


def decode_file(data: bytes) -> tuple[bytes, bytes, float | None] | None:
    """``(raw_key, value, deadline)`` of the newest whole version in a file's bytes, or None."""
    read = read_heads(data)
    newest = None if read is None else _newest(read, None)
    return None if newest is None else newest[1]


def _is_dead(raw_key: bytes | None, entry: tuple | None, now: float) -> bool:
    """Whether a file may be removed: damaged, or an expired entry (of ``raw_key`` unless that is None)."""
    if entry is None:
        return True
    if raw_key is not None and entry[0] != raw_key:
        return False
    return entry[2] is not None and entry[2] <= now


def _read(fd: int) -> tuple[bytes, int, list] | None:
    return read_heads(os.pread(fd, _FIRST_READ, 0), fd)


class FileBackend(Backend):
    __doc__ = __doc__

    name = "file"
    local_expiry = True
    preferred_lock = "file"
    shared = True
    atomic_update = True

    def __init__(self, data_dir: Any = None, lock_dir: Any = None, file_mode: Any = None, dir_mode: Any = None,
                 fsync: Any = False, **unknown: Any):
        if unknown:
            unknown_options("the file backend", unknown, ("data_dir", "lock_dir", "file_mode", "dir_mode", "fsync"))
        require_flock("the file backend")
        self.data_dir = directory_option("data_dir", data_dir, required=True, owner="the file backend")
        self.lock_dir = directory_option("lock_dir", lock_dir, required=False, owner="the file backend")
        self.file_mode, self.dir_mode = file_modes(file_mode, dir_mode)
        self.fsync = coerce_bool("fsync", fsync)
        self._root = os.path.join(self.data_dir, "")
        # key -> (raw key, path): a session's key is hashed at load and again at save; a bounded memo, emptied
        # when full
        self._paths: dict[str, tuple[bytes, str]] = {}
        make_directory(self.data_dir, self.describe(), mode=self.dir_mode)
        warn_if_open(self.data_dir, self.dir_mode, self.describe())
        # a data directory configured as a link stays allowed to be one when a write recreates what it leads to
        self._data_dir_is_link = os.path.islink(self.data_dir)

    # -- paths and errors ------------------------------------------------------------------------------------------

    def _path(self, key: str) -> tuple[bytes, str]:
        exact = type(key) is str  # only exact str keys are memoized: a subclass may hash or encode otherwise
        if exact:
            known = self._paths.get(key)
            if known is not None:
                return known
        elif not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        raw_key = key.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw_key).hexdigest()
        known = raw_key, f"{self._root}{digest[:2]}{os.sep}{digest[2:4]}{os.sep}{digest}"
        if exact:
            if len(self._paths) >= _PATH_MEMO_SIZE:
                self._paths.clear()
            self._paths[key] = known
        return known

    def _error(self, action: str, path: str, exc: OSError) -> BackendError:
        return BackendError(f"file backend at {self.data_dir}: cannot {action} {path}: {exc.strerror or exc}")

    # -- reading ---------------------------------------------------------------------------------------------------

    def _load(self, path: str) -> tuple[tuple | None, bool] | None:
        """``(entry, mend)`` of the file at ``path``, None when there is none.

        ``entry`` is ``(raw_key, value, deadline)`` of the newest whole version, or None when the file is damaged.
        ``mend`` says that a slot was found damaged although no writer held the file: a crash's remnant.
        """
        try:
            fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
        except FileNotFoundError:  # also when the data or shard directory is gone: a miss, created by a write
            return None
        except OSError as exc:
            raise self._error("open", path, exc) from exc
        try:
            for _ in range(_READ_ATTEMPTS):
                read = _read(fd)
                if read is None:
                    return None, False
                data, size, (first, second) = read
                if first is not None and second is not None:
                    entry = _entry(data, fd, size, first if first[2] > second[2] else second)
                    if entry is not None:
                        return entry, False
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits for the writer, if one is writing
            read = _read(fd)
            newest = None if read is None else _newest(read, fd)
            if newest is None:
                return None, False
            other = read[2][1 - newest[0]]
            return newest[1], other is None or other[2] > read[2][newest[0]][2]
        except OSError as exc:
            raise self._error("read", path, exc) from exc
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes | None:
        raw_key, path = self._path(key)
        loaded = self._load(path)
        if loaded is None:
            return None
        entry, mend = loaded
        if entry is not None and entry[0] == raw_key and (entry[2] is None or entry[2] > clock.now()):
            if mend:
                try:
                    self._update(raw_key, path, lambda current: (current, None))  # the version again, whole
                except BackendError:
                    pass  # the next write mends it
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

    def _lock_current(self, path: str, *, blocking: bool = True) -> tuple[int, bool, tuple | None] | None:
        """Lock the file at ``path`` exclusively: ``(fd, writable, newest)``, or None when there is none.

        ``newest`` is ``(slot index, entry, sequence, slot size)`` of the newest whole version, or None when the file
        is damaged.

        With ``blocking=False``, None also means that another process holds the lock. ``writable`` is False when
        the file can only be opened for reading (it is then replaced rather than written in place).
        """
        while True:
            writable = True
            try:
                try:
                    fd = os.open(path, os.O_RDWR | O_CLOEXEC)
                except PermissionError:
                    writable = False
                    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                return None  # a new key, or its directories are gone: the write creates them (see _write_temp)
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
                    read = _read(fd)
                    newest = None if read is None else _newest(read, fd)
                    if newest is not None:
                        newest += (read[2][newest[0]][2], read[1])
                    return fd, writable, newest
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # replaced or removed while we waited: lock whatever is there now

    def _write_temp(self, directory: str, raw_key: bytes, value: bytes, expires: float | None) -> str:
        parts, length = new_file(raw_key, value, expires)
        temp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))
        for attempt in range(5):
            try:
                fd = create_file(temp, os.O_WRONLY, self.file_mode)
                break
            except (FileNotFoundError, NotADirectoryError):
                if attempt == 4:
                    raise
                # a new shard directory, one that cleanup() just removed because it was empty, or a data directory
                # removed while the backend ran
                self._make_shard(directory)
        try:
            for offset, data in parts:
                pwrite_all(fd, data, offset)
            os.ftruncate(fd, length)  # the rest of both slots: holes, filled by later versions
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        return temp

    def _make_shard(self, directory: str) -> None:
        """Create a shard directory, and the data directory above it when that has gone."""
        make_directory(directory, self.describe(), mode=self.dir_mode, no_links=(
            directory, os.path.dirname(directory), *(() if self._data_dir_is_link else (self.data_dir,))))

    def _write_in_place(self, fd: int, newest: tuple, raw_key: bytes, value: bytes, expires: float | None) -> bool:
        """Write a new version into the slot that does not hold the newest one; False when it does not fit."""
        index, _, sequence, size = newest
        data = encode_slot(sequence + 1, raw_key, value, expires)
        if len(data) > size or (size > _SHRINK_ABOVE and len(data) * 4 < size):
            return False
        pwrite_all(fd, data, _FILE_HEADER.size + (1 - index) * size)
        if self.fsync:
            datasync(fd)
        return True

    def _update(self, raw_key: bytes, path: str,
                change: Callable[[tuple[bytes, float | None] | None], tuple[Any, Any]]) -> Any:
        """Apply ``change`` to the key's live entry ``(value, deadline)`` (or None) under the key's file lock.

        ``change`` returns ``(new, result)``: ``new`` is ``(value, deadline)`` to store, None to leave the file as
        it is, or ``_DELETE`` to remove it; ``result`` is returned. ``change`` is called again if the file was
        replaced while this call waited for it.
        """
        temp = None
        vanished = False  # the key's directory was removed in the middle of this write
        try:
            while True:
                held = self._lock_current(path)
                entry = None
                found = None if held is None or held[2] is None else held[2][1]
                own = found is not None and found[0] == raw_key  # else damaged, or another key's (sha256 collision)
                if own and (found[2] is None or found[2] > clock.now()):
                    entry = found[1], found[2]
                try:
                    new, result = change(entry)
                    if new is None or (held is None and new is _DELETE):
                        return result
                    try:
                        if held is None:
                            temp = self._write_temp(os.path.dirname(path), raw_key, *new)
                            try:
                                os.link(temp, path)
                            except FileExistsError:
                                continue  # created by another process meanwhile: start over with its file
                        elif new is _DELETE:
                            if own or found is None:  # another key's file stays
                                os.unlink(path)
                        elif not (own and held[1] and self._write_in_place(held[0], held[2], raw_key, *new)):
                            temp = self._write_temp(os.path.dirname(path), raw_key, *new)
                            os.replace(temp, path)
                            temp = None
                    except FileNotFoundError:
                        if new is _DELETE:
                            return result  # removed with its directory meanwhile: gone all the same
                        if vanished:
                            raise
                        vanished = True
                        continue  # once more: _write_temp recreates the directory
                    return result
                finally:
                    if held is not None:
                        os.close(held[0])
                    if temp is not None:
                        try:
                            os.unlink(temp)
                        except FileNotFoundError:
                            pass  # went with its directory
                        temp = None
        except OSError as exc:
            raise self._error("write", path, exc) from exc

    def _discard(self, path: str, raw_key: bytes | None) -> bool:
        """Remove the file at ``path`` if it is still damaged or expired; never waits for a writer."""
        try:
            held = self._lock_current(path, blocking=False)
            if held is None:
                return False
            try:
                if _is_dead(raw_key, None if held[2] is None else held[2][1], clock.now()):
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
        if type(value) is bytes:
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"the file backend stores bytes, not {type(value).__name__} (key {key!r})")

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raw_key, path = self._path(key)
        new = self._check_value(key, value), deadline(ttl)
        self._update(raw_key, path, lambda entry: (new, None))

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        raw_key, path = self._path(key)
        new = self._check_value(key, value), deadline(ttl)
        return self._update(raw_key, path, lambda entry: (None, False) if entry is not None else (new, True))

    def delete(self, key: str) -> bool:
        raw_key, path = self._path(key)
        return self._update(raw_key, path, lambda entry: (_DELETE, entry is not None))

    def touch(self, key: str, ttl: float | None) -> bool:
        raw_key, path = self._path(key)
        expires = deadline(ttl)
        return self._update(raw_key, path, lambda entry: (None, False) if entry is None else
                            ((entry[0], expires), True))

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomic across processes. An existing deadline is kept; a new counter never expires."""
        check_delta(delta)
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
            return (str(number).encode("ascii"), expires), number
        return self._update(raw_key, path, change)

    def update(self, key: str, change: Callable[[bytes | None], Any], ttl: float | None = None) -> bool:
        """Replace the value under ``key`` with ``change(current)`` under the key's exclusive file lock.

        ``change`` gets the live value (or None) and returns the new value (bytes), or None to leave the key as it
        is; the new value is stored with ``ttl``. Returns whether something was stored. ``change`` may be called
        again (when the file was replaced while the call waited for it). It runs while this call holds the key's
        lock, so it must not use the same key through the backend.
        """
        raw_key, path = self._path(key)
        check_ttl(ttl)

        def apply(entry):
            value = change(None if entry is None else entry[0])
            if value is None:
                return None, False
            return (self._check_value(key, value), deadline(ttl)), True
        return self._update(raw_key, path, apply)

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
        now = clock.now()
        for _, entry in self._scan():
            if len(entry.name) != 64:
                continue
            loaded = self._load(entry.path)
            found = None if loaded is None else loaded[0]
            if _is_dead(None, found, now):
                continue
            key = found[0].decode("utf-8", "surrogatepass")
            if key.startswith(prefix):
                yield key

    def cleanup(self) -> int:
        """Remove expired and damaged entries, stale temporary files and empty shard directories."""
        removed = 0
        now = clock.now()
        for _, entry in self._scan():
            if entry.name.startswith(TEMP_PREFIX):
                self._remove_stale_temp(entry, now)
            elif len(entry.name) == 64:
                loaded = self._load(entry.path)
                if loaded is not None and _is_dead(None, loaded[0], now):
                    removed += self._discard(entry.path, None)
        self._remove_empty_shards()
        return removed

    def clear(self) -> int:
        """Remove every entry, stale temporary files and the shard directories left empty; return how many entries
        were removed. A write running at the same time survives or not, as if it came before or after the clear."""
        removed = 0
        now = clock.now()
        for _, entry in self._scan():
            if entry.name.startswith(TEMP_PREFIX):
                self._remove_stale_temp(entry, now)  # a fresh one is a writer's, about to become an entry
            elif len(entry.name) == 64:
                try:
                    held = self._lock_current(entry.path)
                    if held is not None:
                        try:
                            os.unlink(entry.path)
                            removed += 1
                        finally:
                            os.close(held[0])
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise self._error("remove", entry.path, exc) from exc
        self._remove_empty_shards()
        return removed

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``, and the shard directories that this empties."""
        removed = 0
        for key in list(self.keys(prefix)):
            if self.delete(key):
                removed += 1
                shard = os.path.dirname(self._path(key)[1])
                for directory in (shard, os.path.dirname(shard)):
                    if not self._remove_shard(directory):
                        break
        return removed

    def _remove_stale_temp(self, entry: os.DirEntry, now: float) -> None:
        try:
            if entry.stat(follow_symlinks=False).st_mtime < now - STALE_TEMP_SECONDS:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("remove", entry.path, exc) from exc

    def _remove_empty_shards(self) -> None:
        """Remove the shard directories (``ab/`` and ``ab/cd/`` under the data directory, by name) that are empty;
        nothing else, and never the data directory itself."""
        try:
            tops = [e.path for e in os.scandir(self.data_dir) if _is_shard(e)]
        except OSError:
            return
        for top in tops:
            try:
                subs = [e.path for e in os.scandir(top) if _is_shard(e)]
            except OSError:
                continue
            emptied = all([self._remove_shard(sub) for sub in subs])
            if emptied:
                self._remove_shard(top)

    def _remove_shard(self, directory: str) -> bool:
        """Remove a shard directory if it is empty; whether it is gone.

        A writer may be about to create its file there: rmdir fails on a directory that holds anything (the writer's
        temporary file, then the entry), and a writer that finds its directory gone creates it again (see
        :meth:`_write_temp`), so no write is lost.
        """
        try:
            os.rmdir(directory)
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return True
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise self._error("remove", directory, exc) from exc

    def describe(self) -> str:
        return f"file backend at {self.data_dir}"


def _is_shard(entry: os.DirEntry) -> bool:
    return len(entry.name) == 2 and set(entry.name) <= _HEX and entry.is_dir(follow_symlinks=False)
