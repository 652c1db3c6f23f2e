"""Checkpoints verify what they load: every file's size (and hash) is recorded in MANIFEST.json
when it is written; a resume skips a checkpoint whose DeepSpeed state, trainer_state.pt or HF
export was cut short or changed, with one line naming the file, and takes the one before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recipe.training.checkpoint import CheckpointStore
from recipe.training.checkpoint_manifest import MANIFEST, verify_checkpoint, write_manifest
from recipe.training.errors import TrainingError
from recipe.training.resume import load_resume_state
from tests.recipe.tiny_world import tiny_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEEPSPEED_STATE = "deepspeed/state/mp_rank_00_model_states.pt"
DAMAGEABLE = (DEEPSPEED_STATE, "trainer_state.pt", "hf/model.safetensors")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trainer (its engine loads checkpoints) and a run folder with checkpoints of steps 1, 2
    and 3, saved by the trainer without training: the files are what verification is about."""
    run = tmp_path_factory.mktemp("verify") / "run"
    trainer = tiny_trainer(run, steps=3, keep_checkpoints=3)
    for step in (1, 2, 3):
        trainer._save(step)
    return trainer, run


@pytest.fixture
def trained(saved) -> Path:
    return saved[1]


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_the_manifest_lists_every_file_of_a_checkpoint(trained):
    folder = trained / "checkpoints" / "step-000003"
    files = json.loads((folder / MANIFEST).read_text())["files"]
    on_disk = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, "COMPLETE")
    }
    assert set(files) == on_disk
    assert set(DAMAGEABLE) <= set(files)
    assert all(entry["sha256"] for entry in files.values())  # all below the default limit
    assert verify_checkpoint(folder) is None


@pytest.mark.parametrize("name", DAMAGEABLE)
@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_damaged_file_is_named(run, name, damage):
    folder = run / "checkpoints" / "step-000003"
    damage(folder / name)
    problem = verify_checkpoint(folder)
    assert problem is not None and str(folder / name) in problem


def test_above_the_hash_limit_only_the_size_is_checked(tmp_path):
    (tmp_path / "small").write_bytes(b"a" * 100)
    (tmp_path / "big").write_bytes(b"b" * (2 << 20))
    write_manifest(tmp_path, hash_limit_mb=1)
    files = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert files["small"]["sha256"] and files["big"]["sha256"] is None
    flip_a_byte(tmp_path / "big")
    assert verify_checkpoint(tmp_path) is None
    flip_a_byte(tmp_path / "small")
    assert "small" in verify_checkpoint(tmp_path)
    (tmp_path / MANIFEST).write_text("[]")
    assert "not a checkpoint manifest" in verify_checkpoint(tmp_path)
    (tmp_path / MANIFEST).unlink()
    assert "no MANIFEST.json" in verify_checkpoint(tmp_path)


def test_resume_skips_damaged_checkpoints_to_the_last_good_one(saved, run):
    trainer = saved[0]
    checkpoints = run / "checkpoints"
    truncate(checkpoints / "step-000003" / "trainer_state.pt")
    truncate(checkpoints / "step-000002" / "hf" / "model.safetensors")
    store = CheckpointStore(run, keep=3)
    lines: list[str] = []
    checked = []
    folder, state = load_resume_state(
        store, trainer.engine, "auto", lines.append, lambda: checked.append(1)
    )
    assert folder.name == "step-000001" and state["step"] == 1 and checked == [1]
    assert len(lines) == 2
    assert str(checkpoints / "step-000003" / "trainer_state.pt") in lines[0]
    assert str(checkpoints / "step-000002" / "hf" / "model.safetensors") in lines[1]

    # A file changed where only its size was recorded: it fails to load, and is skipped too.
    (checkpoints / "step-000003" / "trainer_state.pt").write_bytes(b"garbage!" * 100)
    write_manifest(checkpoints / "step-000003", hash_limit_mb=0)
    lines.clear()
    folder, _ = load_resume_state(store, trainer.engine, "auto", lines.append, lambda: None)
    assert folder.name == "step-000001"
    assert "did not load" in lines[0] and "step-000003" in lines[0]

    with pytest.raises(TrainingError, match="trainer.resume: checkpoint .*step-000002"):
        load_resume_state(store, trainer.engine, str(checkpoints / "step-000002"), print, list)
    truncate(checkpoints / "step-000001" / DEEPSPEED_STATE)
    with pytest.raises(TrainingError, match="none of the 3 checkpoints"):
        load_resume_state(store, trainer.engine, "auto", lines.append, lambda: None)


@pytest.mark.slow
def test_a_run_resumes_past_a_truncated_latest_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_trainer(run, steps=3, keep_checkpoints=3).fit()
    truncate(run / "checkpoints" / "step-000003" / DEEPSPEED_STATE)
    trainer = tiny_trainer(run, steps=3, keep_checkpoints=3)
    trainer.fit()
    out = capsys.readouterr().out
    assert f"skipping checkpoint {run / 'checkpoints' / 'step-000003'}" in out
    assert "resumed from" in out and "(step 2)" in out
    assert trainer.step_done == 3
    assert verify_checkpoint(run / "checkpoints" / "step-000003") is None  # saved anew
