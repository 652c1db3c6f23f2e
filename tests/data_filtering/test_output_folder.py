"""The filter's output folder: one filter writes it at a time (a second exits 2 naming the
first's PID), and a manifest that is not one exits 2 in one line instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from data_filtering.__main__ import main
from data_filtering.pipeline import DIFFICULTY_DIR, MANIFEST_FILE
from recipe.config import save_config
from tests.data_filtering.filter_world import filter_config, write_question_files

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys; from recipe.run_lock import acquire; acquire(sys.argv[1]); "
    "print('held', flush=True); sys.stdin.read()"
)


def test_a_second_filter_on_a_held_output_folder_exits_2(tmp_path, capsys):
    out = tmp_path / "filtered"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(
            ["--config", str(REPO / "configs/embedded/filter.yaml"), f"filter.output_dir={out}"]
        )
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pid {holder.pid}" in err and str(out) in err


def test_a_manifest_holding_a_list_exits_2_in_one_line(
    tmp_path, capsys, tiny_model_dir, demo_index
):
    out = tmp_path / "filtered"
    cfg = filter_config(out, tiny_model_dir, demo_index, write_question_files(tmp_path))
    manifest = out / DIFFICULTY_DIR / MANIFEST_FILE
    manifest.parent.mkdir(parents=True)
    manifest.write_text("[]")
    code = main(["--config", str(save_config(cfg, tmp_path, "filter.yaml"))])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(manifest) in err and "not a filter manifest" in err
    assert manifest.read_text() == "[]"  # left for the user to look at
