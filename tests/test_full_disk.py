"""A full disk: the ``file`` and ``dbm`` caches and ``file`` sessions on a tmpfs of a few hundred kilobytes.

Writes go on until the disk is full, down to small values. Then:

* the failing write raises :class:`BackendError` naming the data directory, with "No space left on device" (the
  ``OSError`` with ``ENOSPC`` is chained);
* every value written before reads back intact, also the one a failed write tried to replace, and also through a
  new backend object (another process's view);
* a session save that fails raises out of the request (an error, not a silent loss), and the session keeps what it
  held before;
* once entries are deleted, writes work again.

Mounting needs root, as CI runs. A process that is not root skips these tests; root that cannot mount fails them.
"""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError
from beaker_core.middleware import SessionMiddleware

DISK_SIZE = "300k"
FILL_SIZES = (8192, 1024, 128)  # large values until one fails, then smaller ones to use what is left


@pytest.fixture
def small_disk(tmp_path):
    """A directory on a tmpfs of ``DISK_SIZE``, unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the full-disk tests needs root (CI runs them as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"running as root, yet mounting a tmpfs on {mount_point} failed: "
                    f"{(mounted.stderr or mounted.stdout).strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)  # something still holds it open


def assert_disk_full(exc: BaseException, data_dir: str) -> None:
    """``exc`` is a clear error: a BackendError naming ``data_dir``, with ENOSPC chained and its message
    ("No space left on device") in the error's own message or in the one chained."""
    assert isinstance(exc, BackendError), f"{type(exc).__name__}: {exc}"
    assert data_dir in str(exc), f"the error does not name the data directory: {exc}"
    chain, cause = [], exc
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(getattr(cause, "errno", None) == errno.ENOSPC for cause in chain), chain
    assert any("No space left on device" in str(cause) for cause in chain), chain


def value_for(index: int, size: int) -> str:
    return f"{index}:" + (f"{index:08d}" * (size // 8 + 1))[:size]


def fill(cache: Cache, written: dict[str, str]) -> BackendError:
    """Put values of decreasing sizes until the disk is full; the error of the last failed write."""
    index = 0
    failure = None
    for size in FILL_SIZES:
        for _ in range(10_000):
            index += 1
            value = value_for(index, size)
            try:
                cache.put(f"fill-{index}", value)
            except BackendError as exc:
                failure = exc
                break
            written[f"fill-{index}"] = value
        else:
            raise AssertionError(f"a {DISK_SIZE} disk took 10,000 values of {size} bytes")
    return failure


def read(cache: Cache, key: str) -> str | None:
    try:
        return cache.get(key)
    except KeyError:
        return None


def assert_intact(cache: Cache, written: dict[str, str]) -> None:
    damaged = [key for key, value in written.items() if read(cache, key) != value]
    assert not damaged, f"{len(damaged)} of {len(written)} values lost or changed, such as {damaged[:5]}"


def full_cache(kind: str, disk) -> tuple[Cache, dict[str, str], str]:
    """A cache on ``disk`` filled until a write failed: ``(cache, values written, data directory)``."""
    data_dir = str(disk / "data")
    cache = Cache("full", type=kind, data_dir=data_dir)
    written = {"kept": value_for(0, 2000)}
    cache.put("kept", written["kept"])
    failure = fill(cache, written)
    assert failure is not None
    assert_disk_full(failure, data_dir)
    assert len(written) > 10, f"the disk was full after {len(written)} values"
    return cache, written, data_dir


@pytest.mark.parametrize("kind", ["file", "dbm"])
def test_a_full_disk_is_a_clear_error_and_keeps_what_was_written(kind, small_disk):
    cache, written, data_dir = full_cache(kind, small_disk)
    # a bigger value over one written before fails, and the old one stays
    with pytest.raises(BackendError) as replaced:
        cache.put("kept", value_for(0, 60_000))
    assert_disk_full(replaced.value, data_dir)
    # a value of the same size over one written before: written in place when the file has room, else refused
    first = next(key for key in written if key.startswith("fill-"))
    try:
        cache.put(first, written[first][::-1])
    except BackendError as exc:
        assert_disk_full(exc, data_dir)
    else:
        written[first] = written[first][::-1]
    assert_intact(cache, written)
    assert_intact(Cache("full", type=kind, data_dir=data_dir), written)  # as another process sees it


@pytest.mark.parametrize("kind", ["file", "dbm"])
def test_deleting_entries_on_a_full_disk_lets_writes_work_again(kind, small_disk):
    cache, written, data_dir = full_cache(kind, small_disk)
    for key in list(written)[1::2]:
        cache.remove_value(key)
        del written[key]
    cache.put("kept", value_for(0, 60_000))
    written["kept"] = value_for(0, 60_000)
    cache.put("after", "written once space was freed")
    written["after"] = "written once space was freed"
    assert_intact(Cache("full", type=kind, data_dir=data_dir), written)


def test_dbm_cleanup_on_a_full_disk_gives_the_space_of_deleted_entries_back(small_disk):
    """dbm: cleanup() compacts the database in place (no copy of it, so it needs no free space)."""
    cache, written, data_dir = full_cache("dbm", small_disk)
    for key in list(written)[1::2]:
        cache.remove_value(key)
        del written[key]
    data_file = os.path.join(data_dir, "beaker.dbm.dat")
    before = os.path.getsize(data_file)
    cache.backend.cleanup()
    assert os.path.getsize(data_file) < before * 0.6
    disk = os.statvfs(small_disk)
    assert disk.f_bavail * disk.f_frsize > before * 0.4
    assert_intact(Cache("full", type="dbm", data_dir=data_dir), written)


def session_app(environ, start_response):
    session = environ["beaker.session"]
    path = environ["PATH_INFO"]
    if path == "/note":
        session["note"] = "written before the disk filled"
    elif path == "/big":
        session["blob"] = value_for(1, 60_000)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr((session.is_new, sorted(session), session.get("note"), len(session.get("blob", "")))).encode()]


def request(app, path: str, cookie: str | None = None) -> tuple[str, str | None]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http"}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    headers = []
    body = b"".join(app(environ, lambda status, response_headers, exc_info=None: headers.extend(response_headers)))
    set_cookie = next((value.split(";")[0] for name, value in headers if name == "Set-Cookie"), None)
    return body.decode(), set_cookie


def test_a_session_save_on_a_full_disk_fails_the_request_and_keeps_the_session(small_disk):
    data_dir = str(small_disk / "data")
    app = SessionMiddleware(session_app, {"session.type": "file", "session.data_dir": data_dir})
    _, cookie = request(app, "/note")
    assert cookie is not None
    filler = Cache("filler", type="file", data_dir=data_dir)
    written: dict[str, str] = {}
    assert_disk_full(fill(filler, written), data_dir)

    with pytest.raises(BackendError) as failed:
        request(app, "/big", cookie)
    assert_disk_full(failed.value, data_dir)
    body, _ = request(app, "/", cookie)
    assert body == repr((False, ["note"], "written before the disk filled", 0))

    # a new session that cannot be saved fails its request too
    with pytest.raises(BackendError) as failed:
        request(app, "/big")
    assert_disk_full(failed.value, data_dir)

    for key in list(written)[::2]:
        filler.remove_value(key)
    body, _ = request(app, "/big", cookie)
    assert body == repr((False, ["blob", "note"], "written before the disk filled", 60_002))
    body, _ = request(app, "/", cookie)
    assert body == repr((False, ["blob", "note"], "written before the disk filled", 60_002))
    assert_intact(filler, {key: value for key, value in list(written.items())[1::2]})
