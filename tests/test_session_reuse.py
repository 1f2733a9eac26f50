"""A save reuses the data its request decoded at load when the stored bytes have not changed since, and only then.

On the real file backend (the atomic update path) and the real dbm backend (the lock, re-read and write path). The
serializer is the json one with a count of the documents it decoded.
"""
import pytest

from beaker_core.serializers import JSONSerializer
from beaker_core.session import Session
from beaker_core.session import KEY_PREFIX


class CountingJSON(JSONSerializer):
    def __init__(self):
        self.decoded = 0

    def loads(self, data):
        self.decoded += 1
        return super().loads(data)


@pytest.fixture(params=["file", "dbm"])
def open_session(request, tmp_path):
    serializer = CountingJSON()
    options = {"type": request.param, "data_dir": str(tmp_path / "data"), "lock_dir": str(tmp_path / "locks"),
               "data_serializer": serializer}
    first = Session({}, **options)

    def open_session(session_id=None):
        cookie = None if session_id is None else f"beaker.session.id={session_id}"
        return Session({"cookie": cookie}, manager=first._manager)
    open_session.serializer = serializer
    return open_session


def stored(session):
    return session._manager.serializer.loads(session.namespace.get(KEY_PREFIX + session.id))["d"]


def new_session(open_session, **data):
    session = open_session()
    session.update(data)
    session.save()
    return session.id


def test_an_unchanged_record_is_decoded_once_per_request(open_session):
    session_id = new_session(open_session, counter=1, name="x", when=None)
    for count in (2, 3):
        open_session.serializer.decoded = 0
        session = open_session(session_id)
        session["counter"] = count
        session.persist()
        assert open_session.serializer.decoded == 1  # at load; the save reused it
    open_session.serializer.decoded = 0
    session = open_session(session_id)
    session.save()  # every key
    assert open_session.serializer.decoded == 1
    assert stored(session) == {"counter": 3, "name": "x", "when": None}


def test_a_record_written_since_the_load_is_decoded_and_merged(open_session):
    session_id = new_session(open_session, counter=1)
    slow, quick = open_session(session_id), open_session(session_id)
    quick["quick"] = True
    quick.persist()
    open_session.serializer.decoded = 0
    slow["slow"] = True
    slow.persist()
    assert open_session.serializer.decoded == 1  # the bytes differ: the stored record was decoded again
    assert stored(slow) == {"counter": 1, "quick": True, "slow": True}


def test_a_deleted_key_stays_deleted(open_session):
    session_id = new_session(open_session, a=1, b=2, c=3)
    session = open_session(session_id)
    del session["b"]
    session.pop("c")
    session["d"] = 4
    session.persist()
    assert stored(session) == {"a": 1, "d": 4}


@pytest.mark.parametrize("value, change", [
    ([1], lambda value: value.append(2)),
    ({"n": 1}, lambda value: value.update(n=2)),
    ((1, [2]), lambda value: value[1].append(3)),
    ({1, 2}, lambda value: value.add(3)),
], ids=["list", "dict", "list in a tuple", "set"])
def test_a_value_changed_in_place_and_not_marked_is_not_saved(open_session, value, change):
    # as without the reuse: only what the request set or deleted is written, so the stored value stays
    session_id = new_session(open_session, held=value, counter=1)
    original = stored(open_session(session_id))["held"]
    session = open_session(session_id)
    change(session["held"])
    session["counter"] = 2
    session.persist()
    assert stored(session) == {"held": original, "counter": 2}


def test_a_value_changed_in_place_and_marked_is_saved(open_session):
    session_id = new_session(open_session, cart=["a"])
    session = open_session(session_id)
    session["cart"].append("b")
    session.changed("cart")
    session.persist()
    assert stored(session) == {"cart": ["a", "b"]}


def test_a_second_save_in_one_request_keeps_both_changes(open_session):
    session_id = new_session(open_session, a=1)
    session = open_session(session_id)
    session["b"] = 2
    session.persist()
    session["c"] = [3]
    session.persist()
    session["c"].append(4)  # not marked: not saved
    session["d"] = 5
    session.persist()
    assert stored(session) == {"a": 1, "b": 2, "c": [3], "d": 5}


def test_a_reverted_session_saves_against_the_record_it_read_again(open_session):
    session_id = new_session(open_session, a=1)
    session = open_session(session_id)
    other = open_session(session_id)
    other["b"] = 2
    other.persist()
    session["x"] = "dropped"
    session.revert()
    assert dict(session) == {"a": 1, "b": 2}
    session["c"] = 3
    session.persist()
    assert stored(session) == {"a": 1, "b": 2, "c": 3}


def test_a_record_corrupted_since_the_load_is_not_taken_for_the_one_read(open_session):
    # session.invalidate_corrupt is on by default: the unreadable record gives way to this request's changes
    session_id = new_session(open_session, a=1)
    session = open_session(session_id)
    session.namespace.set(KEY_PREFIX + session_id, b"{not json")
    session["b"] = 2
    session.persist()
    assert stored(session) == {"b": 2}
