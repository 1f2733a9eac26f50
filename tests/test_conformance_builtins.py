"""The conformance suite against the built-in backends: memory, file and dbm."""
import os

from beaker_core.testing import BackendConformance


class TestMemoryBackend(BackendConformance):
    backend = "memory"


class TestFileBackend(BackendConformance):
    backend = "file"

    def make_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "data")}


class TestDBMBackend(BackendConformance):
    backend = "dbm"

    def make_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "data")}
