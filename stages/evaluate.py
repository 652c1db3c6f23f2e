"""The evaluation: baselines and trained policies, same model family, retriever, top-k and prompt.

    python -m stages.evaluate [--config configs/embedded/eval.yaml] [key.path=value ...]

Every method in `eval.methods` runs on every data set in `eval.datasets` (a seeded sample of
`eval.questions`, the same questions for every method), greedy unless `eval.temperature` says
otherwise, through the one rollout engine:
- `naive`: `eval.baseline_model` with `rollout.search=off` (no search instructions, no search);
- `rag`: the same model with `rollout.search=once` (the question's top-k passages in the prompt);
- a name in `eval.policies`: that model folder as the search agent (`rollout.search=agent`).
Optional: one sampled evaluation per `eval.sample_seeds` (mean +- std), an LLM judge.

Output in `eval.out_dir`: `config.yaml`, `predictions/<method>__<dataset>[__seedN].jsonl`
(question, golds, prediction, the full trajectory, scores), `metrics.json`, `report.md` and
the training curves PNG. Each predictions file is written whole, with the settings it was made
under; a rerun (after a crash, or with another method added) reuses the files whose settings
match and runs only the rest. Exit status: 0 done, 2 a bad config or a missing input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from data_filtering.sources import load_questions
from recipe.atomic import write_json, write_jsonl, write_text
from recipe.config import parse_cli, save_config, to_dict
from recipe.exit_status import BAD_INPUT, run_reporting
from recipe.schema import RunConfig

# recipe.evaluation, recipe.eval_report, recipe.policy and recipe.rollout bring torch and
# transformers; they are imported where used, so that a config error is reported at once.

DEFAULT_CONFIG = "configs/embedded/eval.yaml"
BASELINE_SEARCH = {"naive": "off", "rag": "once"}


class EvaluationError(ValueError):
    """A method or data set the config names cannot be evaluated (one line for the user)."""

    exit_status = BAD_INPUT


def method_model(cfg: RunConfig, method: str) -> tuple[str, str]:
    """(model folder, rollout.search mode) of a method."""
    if method in BASELINE_SEARCH:
        return cfg.eval.baseline_model, BASELINE_SEARCH[method]
    if method in cfg.eval.policies:
        return cfg.eval.policies[method], "agent"
    known = ", ".join([*BASELINE_SEARCH, *cfg.eval.policies])
    raise EvaluationError(f"eval.methods: unknown method {method!r}; known: {known}")


def load_datasets(cfg: RunConfig) -> dict[str, list]:
    """The seeded question sample of every data set (the same for every method)."""
    from recipe.evaluation import sample_questions

    datasets = {}
    for name, files in cfg.eval.datasets.items():
        records = [r for path in files for r in load_questions(path, cfg.data.source_format)]
        n = cfg.eval.questions or len(records)
        datasets[name] = sample_questions(records, n, cfg.eval.seed)
    return datasets


def _file_stamp(path: Path) -> list:
    """What identifies a model or question file's content without hashing gigabytes."""
    if not path.exists():
        return [str(path), None]
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [str(path), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]]


def run_settings(cfg: RunConfig, method: str, dataset: str, temperature: float, seed: int):
    """Everything a predictions file depends on; a rerun reuses the file when it is equal."""
    model, search = method_model(cfg, method)
    rollout = dataclasses.replace(cfg.rollout, search=search, temperature=temperature, seed=seed)
    retriever = {k: v for k, v in to_dict(cfg.retriever).items() if k not in ("url", "port")}
    return {
        "method": method,
        "model": _file_stamp(Path(model)),
        "dataset": [_file_stamp(Path(p)) for p in cfg.eval.datasets[dataset]],
        "questions": cfg.eval.questions,
        "question_seed": cfg.eval.seed,
        "prompt_style": cfg.model.prompt_style,
        "tags": to_dict(cfg.tags),
        "reward": to_dict(cfg.reward),
        "rollout": dataclasses.replace(rollout, samples_per_prompt=1).settings_in_use(),
        "retriever": retriever,
    }


def _digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _missing_local_folder(path: str) -> bool:
    """A path that names a folder on this machine (not a hub id) and is not there."""
    local = Path(path).is_absolute() or path.startswith(".") or Path(path.split("/")[0]).is_dir()
    return local and not Path(path).exists()


class MethodRunner:
    """Evaluates one method at a time, loading its model once for all data sets and seeds."""

    def __init__(self, cfg: RunConfig, retriever, out_dir: Path) -> None:
        self.cfg, self.retriever, self.out_dir = cfg, retriever, out_dir
        self.loaded: tuple[str, object, object] | None = None
        self.reused: list[str] = []

    def _policy(self, path: str):
        if self.loaded is None or self.loaded[0] != path:
            self.loaded = None  # free the previous model first
            if _missing_local_folder(path):
                raise EvaluationError(
                    f"model folder {path} does not exist (the trained policies come from "
                    "`make stage1 stage2`, the ablation's from `make ablation`)"
                )
            from recipe.policy import load_policy

            model, tokenizer = load_policy(dataclasses.replace(self.cfg.model, path=path))
            self.loaded = (path, model, tokenizer)
        return self.loaded[1], self.loaded[2]

    def rows(self, method: str, dataset: str, records, temperature: float, seed: int | None):
        """The scored rows of `method` on `dataset`: from its file when current, else run.
        The rollouts are written before the judge runs, so a failing judge loses none."""
        name = f"{method}__{dataset}" + ("" if seed is None else f"__seed{seed}")
        path = self.out_dir / "predictions" / f"{name}.jsonl"
        stamp = path.with_suffix(".settings.json")
        digest = {
            "digest": _digest(run_settings(self.cfg, method, dataset, temperature, seed or 0))
        }
        if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == digest:
            from recipe.evaluation import read_predictions

            self.reused.append(name)
            rows = read_predictions(path)
        else:
            rows = self._roll_out(method, name, records, temperature, seed or 0)
            write_jsonl(path, rows)
            write_json(stamp, digest)
        if self.cfg.eval.judge.enabled and any("judge" not in row for row in rows):
            from recipe.judge import LLMJudge

            with LLMJudge(self.cfg.eval.judge) as judge:  # cached verdicts: asked once
                for row, verdict in zip(rows, judge.verdicts(rows), strict=True):
                    row["judge"] = verdict
            write_jsonl(path, rows)
        return rows

    def _roll_out(self, method: str, name: str, records, temperature: float, seed: int):
        from recipe.evaluation import evaluate
        from recipe.rollout import build_rollout_engine

        model_path, search = method_model(self.cfg, method)
        model, tokenizer = self._policy(model_path)
        rollout = dataclasses.replace(
            self.cfg.rollout, search=search, temperature=temperature, seed=seed
        )
        engine = build_rollout_engine(
            dataclasses.replace(self.cfg, rollout=rollout), model, tokenizer, self.retriever
        )
        print(f"evaluate: {name} ({len(records)} questions)", file=sys.stderr)
        return evaluate(
            engine, records, self.cfg.tags, self.cfg.reward, progress=self.cfg.logging.progress
        )


def _setting(cfg: RunConfig, datasets: dict[str, list]) -> dict:
    r, e = cfg.retriever, cfg.eval
    decoding = "greedy" if e.temperature == 0 else f"temperature {e.temperature}"
    return {
        "naive / rag model": e.baseline_model,
        "policies": ", ".join(f"{k}: {v}" for k, v in e.policies.items() if k in e.methods),
        "retriever": f"{r.kind} {r.encoder if r.kind == 'dense' else ''} over {r.corpus}, "
        f"top-{r.topk}, at most {cfg.rollout.max_retrievals} searches",
        "prompt": f"{cfg.model.prompt_style} (the training prompt; naive and rag drop the search "
        "instructions)",
        "decoding": f"{decoding}, {cfg.rollout.max_response_tokens} response tokens at most",
        "questions": ", ".join(f"{k}: {len(v)} (seed {e.seed})" for k, v in datasets.items()),
        "metrics": "EM / cover-EM / F1 under R1-Searcher's normalisation and under SQuAD's",
    }


def run_evaluation(cfg: RunConfig, retriever) -> dict:
    """Every method on every data set; writes the run folder and returns metrics.json's dict."""
    from recipe.eval_report import goal_checks, report_markdown
    from recipe.evaluation import summarize

    out_dir = Path(cfg.eval.out_dir)
    save_config(cfg, out_dir)
    datasets = load_datasets(cfg)
    for method in cfg.eval.methods:
        method_model(cfg, method)  # an unknown method fails before any rollout
    runner = MethodRunner(cfg, retriever, out_dir)
    rows: dict[str, dict[str, list[dict]]] = {}
    sampled: dict[str, dict[str, list[list[dict]]]] = {}
    for method in cfg.eval.methods:
        for dataset, records in datasets.items():
            greedy = runner.rows(method, dataset, records, cfg.eval.temperature, None)
            rows.setdefault(method, {})[dataset] = greedy
            for seed in cfg.eval.sample_seeds:
                runs = sampled.setdefault(method, {}).setdefault(dataset, [])
                runs.append(
                    runner.rows(method, dataset, records, cfg.eval.sample_temperature, seed)
                )
    summaries = {m: {d: summarize(r) for d, r in by_d.items()} for m, by_d in rows.items()}
    checks = goal_checks(rows, cfg.eval.goal_policy, cfg.eval.goals)
    curves, notes = _plot_curves(cfg, out_dir)
    if runner.reused:
        notes.append(
            f"reused from an earlier run with the same settings: {', '.join(runner.reused)}"
        )
    setting = _setting(cfg, datasets)
    report = report_markdown(setting, summaries, rows, checks, sampled, curves, notes)
    write_text(out_dir / "report.md", report)
    metrics = {"setting": setting, "summaries": summaries, "checks": checks}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _plot_curves(cfg: RunConfig, out_dir: Path) -> tuple[str | None, list[str]]:
    """(the PNG's name in the report folder or None, notes on the runs it skipped)."""
    if not cfg.eval.training_runs:
        return None, []
    from recipe.training_curves import plot_training_curves

    plot = plot_training_curves(cfg.eval.training_runs, out_dir / "training_curves.png")
    return (plot.png.name if plot.png else None), list(plot.notes)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_cli(RunConfig, argv, default=DEFAULT_CONFIG)
    # The predictions written before a failed search or judge call are kept; a rerun reuses them.
    return run_reporting("evaluate", lambda: _evaluate(cfg))


def _evaluate(cfg: RunConfig) -> int:
    from recipe.eval_report import results_table
    from recipe.retrieval.client import build_retriever

    metrics = run_evaluation(cfg, build_retriever(cfg.retriever))
    print(results_table(metrics["summaries"]))
    for check in metrics["checks"]:
        verdict = "met" if check["met"] else "NOT met"
        print(
            f"{check['policy']} over {check['baseline']} on {check['dataset']}: "
            f"{check['difference']:+.3f} F1 [{check['ci95_low']:+.3f}, {check['ci95_high']:+.3f}]"
            f", wanted +{check['wanted']:.2f}: {verdict}"
        )
    print(f"report: {Path(cfg.eval.out_dir) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
