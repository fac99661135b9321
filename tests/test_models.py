"""The model registry, `dubprep models` and where a project's models are looked up."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dubprep.cli import main
from dubprep.errors import ModelError
from dubprep.models import ENV_VAR, ModelEntry, check_files, entry, failure_message, model_files, registry
from dubprep.stages.backends import dfn3

V2 = "bandit-v2-dnr3-multi"


def install(models_dir: Path, name: str) -> Path:
    """Files with a registered model's names (contents arbitrary) in ``models_dir/name``."""
    folder = models_dir / name
    folder.mkdir(parents=True)
    for item in entry(name).files:
        (folder / item.file).write_bytes(f"{name} {item.file}".encode())
    return folder


def table(capsys) -> dict[str, list[str]]:
    """`dubprep models list` output by model name: the row's cells."""
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["NAME", "ARCHITECTURE", "RATE_HZ", "STEMS", "INSTALLED", "PATH"]
    return {row[0]: row for row in rows[1:]}


def test_registry_lists_the_known_models_without_invented_checksums() -> None:
    known = registry()
    assert {"bandit-v2-dnr3-multi", "bandit-plus-dnr", "dfn3"} <= set(known)
    assert known[V2].sample_rate == 48_000 and known[V2].stems == ("speech", "music", "sfx")
    assert known["bandit-plus-dnr"].sample_rate == 44_100
    # The public Bandit checkpoints could not be hashed where the registry was written.
    assert all(item.sha256 is None for name in (V2, "bandit-plus-dnr") for item in known[name].files)
    assert known["dfn3"].checkpoint.sha256 == dfn3.WEIGHTS_SHA256


def test_list_shows_installed_models_and_their_folders(tmp_path: Path, capsys) -> None:
    assert main(["models", "list", "--dir", str(tmp_path)]) == 0
    rows = table(capsys)
    assert rows[V2][1:6] == ["bandit_v2", "48000", "speech,music,sfx", "no", str(tmp_path / V2)]
    assert rows["dfn3"][4:] == ["yes", str(dfn3.weights_path().parent)]
    install(tmp_path, V2)
    assert main(["models", "list", "--dir", str(tmp_path)]) == 0
    assert table(capsys)[V2][4] == "yes"


def test_models_dir_comes_from_the_environment_when_not_given(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "shared models"))
    assert main(["models", "path", V2]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "shared models" / V2)


def test_default_models_dir_is_in_the_user_cache(capsys, monkeypatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["models", "path", "bandit-plus-dnr"]) == 0
    assert capsys.readouterr().out.strip() == str(Path.home() / ".cache" / "dubprep" / "models" / "bandit-plus-dnr")


def test_path_of_an_unknown_model_lists_the_known_ones(capsys) -> None:
    assert main(["models", "path", "bandit-v9"]) == 1
    assert "unknown model 'bandit-v9'; known models: bandit-v2-dnr3-multi" in capsys.readouterr().err


def test_verify_missing_file_exits_1_naming_it(tmp_path: Path, capsys) -> None:
    folder = install(tmp_path, V2)
    (folder / "checkpoint-multi.ckpt").unlink()
    assert main(["models", "verify", V2, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: model {V2}: not found: {folder / 'checkpoint-multi.ckpt'}; get it:")
    assert len(err.splitlines()) == 1


def test_verify_without_pinned_checksum_says_unverified(tmp_path: Path, capsys) -> None:
    folder = install(tmp_path, V2)
    assert main(["models", "verify", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256((folder / "checkpoint-multi.ckpt").read_bytes()).hexdigest()
    assert f"{V2}: unverified" in out and f"sha256 {digest} (no pinned sha256" in out
    assert f"dfn3: ok         {dfn3.weights_path()}" in out
    assert "bandit-plus-dnr" not in out  # not installed, so not checked


def test_pinned_checksum_mismatch_names_file_and_expected_hash(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"altered")
    (tmp_path / "config.yaml").write_bytes(b"config")
    expected = hashlib.sha256(b"original").hexdigest()
    pinned = ModelEntry(
        name="pinned", architecture="bandit", sample_rate=48_000, stems=("speech",),
        config={"file": "config.yaml", "sha256": hashlib.sha256(b"config").hexdigest()},
        checkpoint={"file": "weights.pt", "sha256": expected}, source="the test",
    )
    config_check, checkpoint_check = check_files(pinned, tmp_path)
    assert config_check.status == "ok" and checkpoint_check.status == "mismatch"
    message = failure_message(pinned, checkpoint_check)
    assert f"{tmp_path / 'weights.pt'} has sha256 {hashlib.sha256(b'altered').hexdigest()}, expected {expected}" in message


def test_model_directory_needs_one_config_and_one_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("kwargs: {}\n")
    (tmp_path / "a.ckpt").write_bytes(b"a")
    assert model_files(tmp_path).checkpoint == tmp_path / "a.ckpt"
    (tmp_path / "b.pth").write_bytes(b"b")
    with pytest.raises(ModelError, match="exactly one YAML config and one checkpoint .*found 1 and 2"):
        model_files(tmp_path)
