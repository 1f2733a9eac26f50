"""File-system helpers shared by the ``file`` and ``dbm`` backends, the dbm backend's store and the ``file`` lock.

Everything here works the same way for all of them:

* options: :func:`directory_option` checks a directory option, :func:`file_modes` the ``file_mode`` and
  ``dir_mode`` options (:func:`mode_option` one permission option);
* creating: :func:`make_directory` creates a directory and its missing parents with ``dir_mode`` exactly, again
  whenever one was removed while the application runs, and never through a symbolic link that appeared where a
  directory was (:func:`refuse_links`); :func:`create_file` creates a file with ``file_mode`` exactly, whatever the
  umask; :func:`warn_if_open` logs once when an existing data directory is wider than ``dir_mode``;
* descriptors: :data:`O_CLOEXEC` and :data:`O_NOFOLLOW` (0 where the platform lacks them), :func:`pwrite_all`,
  :func:`datasync`;
* locking: :data:`fcntl` is the :mod:`fcntl` module, or None where the platform lacks it (not POSIX), in which case
  :func:`require_flock` raises a configuration error. This module still imports there, so that the registry can list
  the backends that do not need it.
"""
from __future__ import annotations

import logging
import os
import stat
from typing import Any, Iterable

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

from .exceptions import BackendError, ConfigurationError

log = logging.getLogger(__name__)

#: ``os.O_CLOEXEC``, or 0: no descriptor opened here leaks into a child process started meanwhile
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: ``os.O_NOFOLLOW``, or 0
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: the default permissions: a data file holds its key (a session id) in clear
FILE_MODE = 0o600
DIR_MODE = 0o700
#: flush a file's data to the disk: ``os.fdatasync`` (which skips metadata a read does not need), else ``os.fsync``
datasync = getattr(os, "fdatasync", os.fsync)
_WARNED: set[str] = set()  # data directories whose permissions were warned about (once per process)


def require_flock(owner: str) -> None:
    """Raise ConfigurationError naming ``owner`` where this platform has no ``flock`` (:data:`fcntl` is None)."""
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


def make_directory(path: str, owner: str, no_links: Iterable[str] = (), mode: int = DIR_MODE) -> None:
    """Create the directory ``path`` and its missing parents, or raise BackendError naming what is in the way.

    Used at startup and whenever a directory has gone while the application runs (a tmp cleaner, a deploy,
    ``rm -r``, the file backend's ``cleanup`` removing an empty shard directory): the next write recreates it the way
    startup creates it. Each directory created here gets ``mode`` exactly, whatever the umask; one that exists
    (created by the operator, or meanwhile by another process) is left as it is. A path that exists as something
    other than a directory is an error, and so is any of ``no_links`` being a symbolic link (see
    :func:`refuse_links`).
    """
    refuse_links(owner, no_links)
    try:
        for attempt in range(5):
            try:
                _make_directories(path, mode)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
                # a parent created here was removed before its child was (cleanup() removing an empty shard)
    except OSError as exc:
        raise BackendError(f"{owner}: cannot create the directory {path}: "
                           f"{_in_the_way(path) or exc.strerror or exc}") from exc
    refuse_links(owner, no_links)  # one that appeared while the directories were created


def _make_directories(path: str, mode: int) -> None:
    missing = []
    while not os.path.isdir(path):  # a link to a directory is a directory: the operator's choice
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode & 0o777)  # never wider than asked, even for an instant
        except FileExistsError:
            if os.path.isdir(directory):
                continue  # created by another process meanwhile: its creator set its mode
            raise
        set_directory_mode(directory, mode)


def set_directory_mode(directory: str, mode: int) -> None:
    """Give a directory this process just created ``mode`` exactly (the umask took bits off), keeping the setgid bit
    it inherited from a setgid parent (a shared-group directory), through a descriptor that cannot follow a link."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    try:
        current = os.fstat(fd).st_mode
        wanted = mode | (current & stat.S_ISGID)
        if stat.S_IMODE(current) != wanted:
            os.fchmod(fd, wanted)
    finally:
        os.close(fd)


def create_file(path: str, flags: int, mode: int) -> int:
    """Create the file ``path`` (it must not exist) with ``mode`` exactly, whatever the umask; return its descriptor.

    ``flags`` are the access flags (``os.O_WRONLY``...). Raises FileExistsError when the path exists.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off a widened mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def warn_if_open(directory: str, dir_mode: int, owner: str) -> None:
    """Log one warning (per directory and process) when ``directory`` grants the group or others a permission that
    ``dir_mode`` does not: files written there before (by an older version, or under a wider umask) may be readable,
    and a writable one lets another account replace what is in it. The directory itself is not changed: it may be
    the operator's, shared with other programs."""
    try:
        info = os.stat(directory)
    except OSError:
        return
    extra = stat.S_IMODE(info.st_mode) & 0o077 & ~dir_mode
    if not extra or directory in _WARNED:
        return
    _WARNED.add(directory)
    granted = ", and ".join(f"{who} {_permission_words(bits)}" for who, bits in
                            (("the group", (extra >> 3) & 7), ("others", extra & 7)) if bits)
    risk = "may be readable by them"
    if extra & 0o022:
        risk += ", and they can remove or replace what is there"
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        fix = f"give the backend a directory of its own, owned by this account, such as a subdirectory of {directory}"
    else:
        symbolic = ",".join(f"{who}-{_permission_letters(bits)}" for who, bits in
                            (("g", (extra >> 3) & 7), ("o", extra & 7)) if bits)
        fix = f"run: chmod -R {symbolic} {directory}"
    log.warning("%s: the data directory %s has mode %04o, which lets %s (dir_mode is %04o). What beaker-core creates "
                "there gets file_mode and dir_mode, but files written before (by an older version, or under another "
                "umask) %s. To fix it, %s; or set dir_mode and file_mode if this access is intended", owner, directory,
                stat.S_IMODE(info.st_mode), granted, dir_mode, risk, fix)


def _permission_letters(bits: int) -> str:
    return "".join(letter for letter, bit in (("r", 4), ("w", 2), ("x", 1)) if bits & bit)


def _permission_words(bits: int) -> str:
    words = [word for word, bit in (("read", 4), ("write", 2), ("enter", 1)) if bits & bit]
    return (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]) + " it"


def refuse_links(owner: str, paths: Iterable[str]) -> None:
    """Raise BackendError when one of ``paths`` is a symbolic link: a link that appeared where a directory was
    removed may lead anywhere, and no file is written there."""
    for path in paths:
        if os.path.islink(path):
            raise BackendError(f"{owner}: {path} is a symbolic link to {os.readlink(path)} where a directory was "
                               f"expected; refusing to write there")


def _in_the_way(path: str) -> str | None:
    """What keeps ``path`` from being a directory: the first of it and its parents that exists as something else
    (a file, a link leading nowhere), or None."""
    while True:
        if os.path.lexists(path) and not os.path.isdir(path):
            if os.path.islink(path):
                return f"{path} is a symbolic link to {os.readlink(path)}, which is not a directory"
            return f"{path} exists and is not a directory"
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def mode_option(option: str, value: Any, default: int, *, owner_bits: int, extra_bits: int = 0) -> int:
    """Permission bits from an int (``0o640``) or an octal string (``"0640"``, ``"0o640"``), ``default`` for None.

    The bits must include ``owner_bits`` (the backend's own access) and stay within ``0o777 | extra_bits``.
    """
    if value is None:
        return default
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            number = int(text[2:] if text.startswith("0o") else text, 8)
        except ValueError:
            raise ConfigurationError(f"{option} must be an octal permission such as '{default | 0o040:04o}', "
                                     f"not {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ConfigurationError(f"{option} must be an int or an octal string such as '{default | 0o040:04o}', "
                                 f"not {value!r}")
    allowed = 0o777 | extra_bits
    if number < 0 or number & ~allowed:
        raise ConfigurationError(f"{option} must be permission bits within {allowed:#o}, not {value!r}")
    if number & owner_bits != owner_bits:
        raise ConfigurationError(f"{option} must keep the owner's permissions ({owner_bits:#o}), not {value!r}: "
                                 f"it can only widen the default {default:#o}")
    return number


def file_modes(file_mode: Any, dir_mode: Any) -> tuple[int, int]:
    """The ``file_mode`` and ``dir_mode`` options of the file and dbm backends and the file lock, checked."""
    return (mode_option("file_mode", file_mode, FILE_MODE, owner_bits=0o600),
            mode_option("dir_mode", dir_mode, DIR_MODE, owner_bits=0o700, extra_bits=stat.S_ISGID))


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` may write less: a signal, a full disk on the way)."""
    written = os.pwrite(fd, data, offset)
    if written < len(data):  # rare
        view = memoryview(data)[written:]
        offset += written
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
