"""Which ffmpeg runs: DUBPREP_FFMPEG if set, else the one on PATH, else the bundled static build."""

from pathlib import Path

import pytest

from dubprep.errors import ToolMissingError
from dubprep.tools import bundled, find_tool, version

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg


@pytest.fixture
def fresh_lookup(monkeypatch):
    """find_tool forgets its answer before and after the test, so the environment set here counts."""
    monkeypatch.delenv("DUBPREP_FFMPEG", raising=False)
    find_tool.cache_clear()
    yield monkeypatch
    find_tool.cache_clear()


def test_the_ffmpeg_on_path_wins_over_the_bundled_one(fresh_lookup, tmp_path):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "ffmpeg").symlink_to(bundled("ffmpeg"))
    fresh_lookup.setenv("PATH", f"{shim}:/usr/bin:/bin")
    assert find_tool("ffmpeg") == shim / "ffmpeg"


def test_without_ffmpeg_on_path_the_bundled_one_runs(fresh_lookup, tmp_path):
    fresh_lookup.setenv("PATH", str(tmp_path))
    assert find_tool("ffmpeg") == bundled("ffmpeg")
    assert version(find_tool("ffmpeg")).startswith("ffmpeg version ")


def test_an_explicit_binary_that_does_not_run_is_an_error_not_a_fallback(fresh_lookup, tmp_path):
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    fresh_lookup.setenv("DUBPREP_FFMPEG", str(broken))
    with pytest.raises(ToolMissingError) as err:
        find_tool("ffmpeg")
    assert str(err.value) == f"DUBPREP_FFMPEG={broken}: does not run ('{broken} -version' fails); fix or unset it"


def test_an_explicit_binary_wins_over_path(fresh_lookup):
    fresh_lookup.setenv("DUBPREP_FFMPEG", str(bundled("ffmpeg")))
    assert find_tool("ffmpeg") == Path(bundled("ffmpeg"))
