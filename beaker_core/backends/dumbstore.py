"""The store behind the dbm backend's ``dumb`` module: dbm.dumb's layout, written so that a crash loses nothing.

``dbm.dumb`` overwrites a value in place when it fits the blocks of the old one, and rewrites its index only when
the database is closed: a writer killed in between leaves the old index over the new bytes, and one killed while the
index is being written leaves it empty or cut. It also never reuses the space of deleted values. This store keeps
its idea (a data file of 512-byte blocks, ``<path>.dat``, and an index of ``key -> (offset, size)`` read whole into
memory) and changes how it writes:

* a value never overwrites a live one: it goes into blocks that no committed index entry uses (the first free run
  of blocks that fits, else the end of the data), so an interrupted write only leaves unused bytes behind;
* the index is written to two files in turn, ``<path>.dir`` and ``<path>.bak``: the one that does not hold the
  current index is overwritten in place with the new one, which carries a sequence number and a CRC32. Opening
  reads the whole index with the higher sequence; one cut by a crash fails its CRC and the other one is used. So a
  change becomes visible all at once when its index is written, and a crash at any point leaves the previous state
  or the new one. Writing in place (no rename) keeps the pages of both files: a delete on a full disk writes an
  index no larger than one the file held before, and needs no free space;
* the blocks of deleted and replaced values become free once an index without them is written; :meth:`compact`
  moves values down into free blocks and cuts the end of the data file, and a write that finds the disk full
  compacts, then tries once more.

Both index files are written by this module only (a header, then ``offset, size, key length, key`` per entry, in
binary): ``dbm.dumb`` cannot read them, and a ``.dir`` written by ``dbm.dumb`` is refused as not an index of this
store. The caller serializes access (the dbm backend holds an ``flock``), and checksums its values itself: a value
is returned as stored, and after a power loss without ``fsync`` (or damage to the newer index) the index that is
read may point at blocks whose bytes did not reach the disk, or that a later write reused.
"""
from __future__ import annotations

import contextlib
import errno
import os
import struct
import zlib
from typing import Any, Iterator

from ..fs import O_CLOEXEC, create_file, datasync, pwrite_all

BLOCK = 512
SLOTS = (".dir", ".bak")
_MAGIC = b"BKD1"
_SLOT = struct.Struct(">4sIQQ")  # magic | crc32 of the rest of the header and of the body | sequence | body length
_FIELDS = struct.Struct(">QQ")  # the header after its checksum
_ENTRY = struct.Struct(">QQI")  # offset | size | key length, then the key
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_COMPACT_PASSES = 8
_RESERVE_UNIT = 4096


class DamagedIndex(ValueError):
    """No whole index, or a ``.dir``/``.bak`` this store did not write."""


def recognizes(path: str) -> bool:
    """Whether ``path`` names a database of this store (``dbm.whichdb`` does not know its index files)."""
    if not os.path.exists(path + ".dat"):
        return False
    for suffix in SLOTS:
        try:
            with open(path + suffix, "rb") as handle:
                head = handle.read(len(_MAGIC))
        except OSError:
            continue
        if head and _MAGIC.startswith(head):
            return True
    return False


def _blocks(size: int) -> int:
    return -(-size // BLOCK)


class DumbStore:
    """A mapping of bytes to bytes on disk (``get``, ``[]``, ``del``, ``keys``); ``close`` writes the changes.

    :param flag: ``"r"`` to read, ``"c"`` to read and write (creating the files when missing).
    :param mode: the permission bits of the files it creates, exactly.
    :param fsync: flush the data, then the index, to the disk before a change counts as written.
    """

    def __init__(self, path: str, flag: str = "r", mode: int = 0o600, fsync: bool = False):
        if flag not in ("r", "c"):
            raise ValueError(f"flag must be 'r' or 'c', not {flag!r}")
        self._writable = flag == "c"
        self._mode, self._fsync = mode, fsync
        self._dat_path = path + ".dat"
        self._slot_paths = tuple(path + suffix for suffix in SLOTS)
        self._index: dict[bytes, tuple[int, int]] = {}
        self._sequence = 0
        self._current: int | None = None  # the index file holding the committed index
        self._slot_sizes = [0, 0]  # of the index files
        self._modified = False
        self._released: list[tuple[int, int]] = []  # extents the committed index still uses, gone from _index
        self._gaps: list[list[int]] | None = None  # free runs [first block, blocks], computed at the first write
        self._end = 0  # the block after the last one in use
        self._dat: int | None = self._open_data()
        try:
            self._load()
        except BaseException:
            self._close_data()
            raise

    # -- files -----------------------------------------------------------------------------------------------

    def _open_data(self) -> int:
        if not self._writable:
            return os.open(self._dat_path, os.O_RDONLY | O_CLOEXEC)
        try:
            return os.open(self._dat_path, os.O_RDWR | O_CLOEXEC)
        except FileNotFoundError:
            fd = create_file(self._dat_path, os.O_RDWR, self._mode)
            self._sync_directory()
            return fd

    def _sync_directory(self) -> None:
        if self._fsync:
            fd = os.open(os.path.dirname(self._dat_path) or ".", os.O_RDONLY | O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _close_data(self) -> None:
        fd, self._dat = self._dat, None
        if fd is not None:
            os.close(fd)

    def _load(self) -> None:
        """Read the whole index with the highest sequence."""
        found = []
        try:
            for number, path in enumerate(self._slot_paths):
                try:
                    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
                except FileNotFoundError:
                    continue
                found.append((fd, number, path))
            headers = []
            for fd, number, path in found:
                self._slot_sizes[number] = os.fstat(fd).st_size
                head = os.pread(fd, _SLOT.size, 0)
                lead = head[:len(_MAGIC)]
                if lead != _MAGIC[:len(lead)] and lead.strip(b"\0"):  # zeros: a file reserved for an index
                    raise DamagedIndex(f"{path} is not an index of beaker-core's dumb store (written by dbm.dumb, "
                                       f"or damaged)")
                if len(head) == _SLOT.size:
                    _, crc, sequence, length = _SLOT.unpack(head)
                    headers.append((sequence, number, crc, length, fd, head))
            for sequence, number, crc, length, fd, head in sorted(headers, reverse=True):
                if length > self._slot_sizes[number] - _SLOT.size:
                    continue  # cut
                body = os.pread(fd, length, _SLOT.size)
                if len(body) == length and zlib.crc32(body, zlib.crc32(head[8:])) == crc:
                    self._index, self._sequence, self._current = _parse(body), sequence, number
                    return
        finally:
            for fd, _, _ in found:
                os.close(fd)
        if os.fstat(self._dat).st_size:
            raise DamagedIndex(f"no whole index in {' or '.join(self._slot_paths)}")
        self._modified = self._writable  # a new database: its first index is written at close

    def _write_index(self) -> None:
        body = b"".join([_ENTRY.pack(pos, size, len(key)) + key for key, (pos, size) in self._index.items()])
        fields = _FIELDS.pack(self._sequence + 1, len(body))
        data = _MAGIC + struct.pack(">I", zlib.crc32(body, zlib.crc32(fields))) + fields + body
        if self._fsync:
            datasync(self._dat)  # the values before the index that points at them
        target = 0 if self._current is None else 1 - self._current
        # Both index files are kept at least this long (zeros after the index), so that the next index, when it is
        # not longer than this one (a delete, a replaced value), is written into pages the file already has.
        reserve = -(-(len(data) + len(data) // 8) // _RESERVE_UNIT) * _RESERVE_UNIT
        # in place, never shrunk: the file keeps its pages
        with self._slot(target) as fd:
            padding = reserve - len(data) if self._slot_sizes[target] < reserve else 0
            try:
                pwrite_all(fd, data + bytes(padding) if padding else data, 0)
            except OSError as exc:
                if exc.errno not in _NO_SPACE:
                    raise
                self._cut_data()
                pwrite_all(fd, data, 0)
            if self._fsync:
                datasync(fd)
            self._slot_sizes[target] = os.fstat(fd).st_size
        other = 1 - target
        if self._slot_sizes[other] < reserve:
            # (so a new database has both index files from the start, the second one with zeros: no index yet)
            with contextlib.suppress(OSError), self._slot(other) as fd:
                size = self._slot_sizes[other] = os.fstat(fd).st_size
                if size < reserve:
                    pwrite_all(fd, bytes(reserve - size), size)  # zeros after its index: it stays whole
                    self._slot_sizes[other] = reserve
        self._current, self._sequence = target, self._sequence + 1

    @contextlib.contextmanager
    def _slot(self, number: int) -> Iterator[int]:
        path = self._slot_paths[number]
        try:
            fd = os.open(path, os.O_RDWR | O_CLOEXEC)
        except FileNotFoundError:
            fd = create_file(path, os.O_RDWR, self._mode)
            self._slot_sizes[number] = 0
            self._sync_directory()
        try:
            yield fd
        finally:
            os.close(fd)

    # -- free space -----------------------------------------------------------------------------------------

    def _extents(self) -> Iterator[tuple[int, int]]:
        """Every extent the committed index or this session's changes use."""
        yield from self._index.values()
        yield from self._released

    def _find_gaps(self) -> None:
        gaps: list[list[int]] = []
        cursor = 0
        for pos, size in sorted(extent for extent in self._extents() if extent[1]):
            first = pos // BLOCK
            if first > cursor:
                gaps.append([cursor, first - cursor])
            cursor = max(cursor, first + _blocks(size))
        self._gaps, self._end = gaps, cursor

    def _allocate(self, blocks: int, below: int | None = None) -> int | None:
        """The first block of ``blocks`` free ones: the first free run that fits, else (unless ``below`` is given)
        the end of the data."""
        if self._gaps is None:
            self._find_gaps()
        for number, gap in enumerate(self._gaps):
            if below is not None and gap[0] >= below:
                return None
            if gap[1] >= blocks:
                first = gap[0]
                if gap[1] == blocks:
                    del self._gaps[number]
                else:
                    gap[0] += blocks
                    gap[1] -= blocks
                return first
        if below is not None:
            return None
        first, self._end = self._end, self._end + blocks
        return first

    def _cut_data(self) -> None:
        """Give the data file's blocks after the last one in use back to the file system (a failed or killed
        write's)."""
        end = max((pos + size for pos, size in self._extents() if size), default=0)
        if os.fstat(self._dat).st_size > end:
            os.ftruncate(self._dat, end)
        if self._gaps is not None:
            self._end = min(self._end, _blocks(end))

    def unused_bytes(self) -> int:
        """Bytes of the data file that no value uses: what :meth:`compact` may give back."""
        used = sum(_blocks(size) for _, size in self._index.values()) * BLOCK
        return max(0, os.fstat(self._dat).st_size - used)

    def compact(self) -> None:
        """Write the changes, move values from the end into free blocks nearer the start (writing the index after
        each pass, as a write does), and cut the data file after the last value."""
        self._check_writable()
        self.sync()
        for _ in range(_COMPACT_PASSES):
            self._find_gaps()
            largest = max((gap[1] for gap in self._gaps), default=0)
            for key, (pos, size) in sorted(self._index.items(), key=lambda item: item[1][0], reverse=True):
                blocks = _blocks(size)
                if not blocks or blocks > largest:
                    continue
                first = self._allocate(blocks, below=pos // BLOCK)
                if first is None:
                    continue
                pwrite_all(self._dat, os.pread(self._dat, size, pos), first * BLOCK)
                self._index[key] = (first * BLOCK, size)
                self._released.append((pos, size))
                self._modified = True
                largest = max((gap[1] for gap in self._gaps), default=0)
            if not self._modified:
                break
            self.sync()
        self._cut_data()

    # -- the mapping ----------------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._dat is None:
            raise OSError("the database is closed")
        if not self._writable:
            raise OSError("the database is open for reading only")

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        entry = self._index.get(key)
        if entry is None:
            return default
        return os.pread(self._dat, entry[1], entry[0]) if entry[1] else b""

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> list[bytes]:
        return list(self._index)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._check_writable()
        blocks = _blocks(len(value))
        first = 0
        if blocks:
            try:
                first = self._allocate(blocks)
                pwrite_all(self._dat, value, first * BLOCK)
            except OSError as exc:
                if exc.errno not in _NO_SPACE:
                    raise
                self.compact()  # the blocks just taken are free again: nothing refers to them
                first = self._allocate(blocks)
                pwrite_all(self._dat, value, first * BLOCK)
        old = self._index.get(key)
        if old is not None:
            self._released.append(old)
        self._index[key] = (first * BLOCK, len(value))
        self._modified = True

    def __delitem__(self, key: bytes) -> None:
        self._check_writable()
        self._released.append(self._index.pop(key))
        self._modified = True

    def sync(self) -> None:
        """Write the index, if something changed: the changes are then visible, and survive a crash."""
        if self._modified:
            self._write_index()
            self._modified = False
            self._released.clear()
            self._gaps = None

    def close(self) -> None:
        if self._dat is None:
            return
        try:
            if self._writable:
                self.sync()
        finally:
            self._close_data()
            self._index = {}

    def __del__(self, _close: Any = os.close) -> None:
        # never writes (a database left open by an error keeps its last index); what it calls is bound here, as
        # this module's globals may be gone (None) at interpreter exit
        fd, self._dat = getattr(self, "_dat", None), None
        if fd is not None:
            try:
                _close(fd)
            except OSError:
                pass


def _parse(body: bytes) -> dict[bytes, tuple[int, int]]:
    index = {}
    unpack, header = _ENTRY.unpack_from, _ENTRY.size
    offset, end = 0, len(body)
    while offset < end:
        pos, size, length = unpack(body, offset)
        offset += header + length
        index[body[offset - length:offset]] = (pos, size)
    return index
