"""``python -m beaker_core.demo`` runs on its own and exits 0."""
import io
import subprocess
import sys

from beaker_core import demo


def test_demo_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "beaker_core.demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    visits = [line for line in lines if "This is visit" in line]
    assert [line.split("This is visit ")[1][0] for line in visits] == ["1", "2", "3", "1"]
    assert any("/health" in line and "no Set-Cookie" in line for line in lines)
    assert any("/logout" in line and "clears the cookie" in line for line in lines)
    assert "computed 1 time(s)" in result.stdout and lines[-1] == "done"


def test_demo_run_in_process_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    out = io.StringIO()
    assert demo.run(out) == 0
    assert "done" in out.getvalue()
    assert list(tmp_path.iterdir()) == []
