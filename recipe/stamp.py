"""Run a pipeline step only when what it depends on changed; keep every finished run.

`python -m recipe.stamp run STEP [--config F] [--input F] [--code MODULE] [--override K=V]
[--overrides-env NAME] [--run-dir DIR --done FILE] -- COMMAND...` fingerprints the step
(`recipe.fingerprint`: configs, overrides, inputs, the code it imports) and compares it with
the stamp its last run left (`<stamps>/STEP.json`):
- same fingerprint and the run finished: nothing to do;
- otherwise the command runs, with the overrides appended. A finished run folder from other
  inputs is first moved aside to `DIR.<UTC time>/` (never deleted: `clean-old` removes those);
  an unfinished one is resumed when it was started with the same fingerprint, else moved aside
  too, since resuming it would mix two settings.

`--adopt` takes a finished run that has no stamp (one made before stamps, or by hand) as
matching the current fingerprint instead of redoing it: the user vouches that it was made from
the current inputs.

Overrides come from the environment (`--overrides-env STAGE1_ARGS`) so that make hands them over
verbatim, whatever quotes they hold. `python -m recipe.stamp clean-old [--runs runs]` removes
the moved-aside folders.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from recipe.atomic import write_json
from recipe.fingerprint import changed_parts, step_fingerprint
from recipe.run_lock import FolderBusy, folder_lock

DEFAULT_STAMPS = "runs/.stamps"
MOVED_ASIDE = re.compile(r"^.+\.\d{8}T\d{6}Z(-\d+)?$")
SHOWN_CHANGES = 6


def _read_stamp(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def move_aside(run_dir: Path, stamp: dict) -> Path:
    """Rename `run_dir` to `run_dir.<UTC time>` (a suffix if taken), its stamp kept inside."""
    when = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = run_dir.with_name(f"{run_dir.name}.{when}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.{when}-{n}")
    run_dir.rename(target)
    if stamp:
        write_json(target / "stamp.json", stamp)
    return target


def _reason(step: str, old: dict, new: dict, finished: bool) -> str:
    if not old:
        return f"{step}: no record of a run with these inputs"
    changes = changed_parts(old, new)
    if not changes:
        return f"{step}: the last run did not finish" if not finished else f"{step}: rerun"
    shown = ", ".join(changes[:SHOWN_CHANGES])
    more = f" and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
    return f"{step}: changed since the last run: {shown}{more}"


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.override)
    for name in args.overrides_env:
        overrides += shlex.split(os.environ.get(name, ""))
    return overrides


def _prepare_run_dir(step: str, run_dir: Path, done: Path | None, old: dict, fp: str) -> None:
    if not run_dir.exists():
        return
    try:  # a run another process still writes is neither moved nor joined
        with folder_lock(run_dir, what="run of this step"):
            pass
    except FolderBusy as e:
        raise SystemExit(f"{step}: {e}") from None
    finished = done is not None and done.exists()
    if not finished and old.get("fingerprint") == fp and old.get("state") == "running":
        print(f"{step}: resuming the unfinished run in {run_dir}", flush=True)
        return
    target = move_aside(run_dir, old)
    what = "finished" if finished else "unfinished"
    print(f"{step}: the {what} run from other inputs moved aside to {target}", flush=True)


def run(args: argparse.Namespace) -> int:
    if not args.command:
        raise SystemExit("recipe.stamp run: no command after --")
    stamps = Path(args.stamps)
    stamp_path = stamps / f"{args.step}.json"
    old = _read_stamp(stamp_path)
    overrides = _overrides(args)
    new = step_fingerprint(
        args.config, overrides, args.input, args.code, known=old, ignore=args.ignore
    )
    fp = new["fingerprint"]
    done = Path(args.done) if args.done else None
    # With a done file, the run's own completion marker decides (a kill between the run's end
    # and the stamp's update must not redo hours of work); without one, the stamp does.
    finished = done.exists() if done is not None else old.get("state") == "done"
    if finished and not old and args.adopt:
        record = {**new, "step": args.step, "overrides": overrides, "state": "done"}
        write_json(stamp_path, {**record, "adopted": True})
        print(f"{args.step}: the finished run adopted as current (fingerprint {fp[:12]})")
        return 0
    if finished and old.get("fingerprint") == fp:
        if old.get("state") != "done":
            write_json(stamp_path, {**old, "state": "done"})
        print(f"{args.step}: up to date (fingerprint {fp[:12]})", flush=True)
        return 0
    print(_reason(args.step, old, new, finished), flush=True)
    if args.run_dir:
        _prepare_run_dir(args.step, Path(args.run_dir), done, old, fp)
    write_json(stamp_path, {**new, "step": args.step, "overrides": overrides, "state": "running"})
    command = args.command + overrides
    code = subprocess.call(command)
    if code != 0:
        return code
    if done is not None and not done.exists():
        print(f"{args.step}: the command succeeded but left no {done}", file=sys.stderr)
        return 1
    record = {**new, "step": args.step, "overrides": overrides, "state": "done"}
    write_json(stamp_path, {**record, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return 0


def clean_old(runs: Path) -> list[Path]:
    """Remove the run folders `move_aside` left under `runs`; returns what was removed."""
    removed = []
    for path in sorted(runs.iterdir()) if runs.is_dir() else []:
        if path.is_dir() and MOVED_ASIDE.match(path.name):
            shutil.rmtree(path)
            removed.append(path)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.stamp", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="run COMMAND unless the step is up to date")
    r.add_argument("step", help="the step's name; its stamp is <stamps>/<step>.json")
    r.add_argument("--config", action="append", default=[], help="a YAML config the step reads")
    r.add_argument("--input", action="append", default=[], help="a file or folder it reads")
    r.add_argument("--code", action="append", default=[], help="a module it runs (python -m)")
    r.add_argument(
        "--ignore", action="append", default=[], help="a file pattern in input folders to skip"
    )
    r.add_argument("--override", action="append", default=[], help="a fixed key=value override")
    r.add_argument(
        "--overrides-env",
        action="append",
        default=[],
        help="an environment variable holding more overrides, split as a shell would",
    )
    r.add_argument("--run-dir", help="the step's run folder, moved aside when redone")
    r.add_argument("--done", help="the file a finished run leaves (e.g. DIR/summary.json)")
    r.add_argument("--stamps", default=DEFAULT_STAMPS, help="the folder of stamps")
    r.add_argument(
        "--adopt", action="store_true", help="take a finished run without a stamp as current"
    )
    c = sub.add_parser("clean-old", help="remove the run folders moved aside")
    c.add_argument("--runs", default="runs", help="the folder holding the runs")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the command, options of its own included.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if args.action == "clean-old":
        for path in clean_old(Path(args.runs)):
            print(f"removed {path}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
