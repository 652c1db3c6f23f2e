"""The evaluation run: every method on every data set, each predictions file made once.

`run_evaluation(cfg, retriever, datasets)` is what `python -m stages.evaluate` composes (the
stage reads the data sets; this module never reads a question file itself). Methods:
- `naive`: `eval.baseline_model` with `rollout.search=off` (no search instructions, no search);
- `rag`: the same model with `rollout.search=once` (the question's top-k passages in the prompt);
- a name in `eval.policies`: that model folder as the search agent (`rollout.search=agent`).

Engines. The methods run grouped by model folder (naive and rag share the baseline's), and each
folder gets one generation backend, built when a file first needs rollouts and closed before
the next folder's is built, so at most one model and one engine hold memory at a time.

Ranks. Under a launcher every rank loads the model on its own device and rolls out question
i when i mod N is its rank; the rows are gathered in question order and rank 0 alone writes
the files, runs the judge and writes the report. Greedy rows do not depend on the split; a
sampled evaluation draws other (equally valid) samples on another number of ranks.

Reuse. A predictions file is reused when its settings digest and its content check
(`recipe.evaluation.predictions`); otherwise it is redone, with one line saying why.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import sys
from pathlib import Path

from recipe.atomic import write_json, write_text
from recipe.config import save_config, to_dict
from recipe.evaluation.predictions import reusable_rows, write_predictions
from recipe.exit_status import BAD_INPUT
from recipe.precision import resolve_dtype
from recipe.schema import RunConfig
from recipe.training.ranks import Ranks, current_ranks, rank_device

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
        "dtype": resolve_dtype(cfg.model.dtype),  # bf16 and fp32 sample different tokens
        "prompt_style": cfg.model.prompt_style,
        "tags": to_dict(cfg.tags),
        "reward": to_dict(cfg.reward),
        "rollout": dataclasses.replace(rollout, samples_per_prompt=1).settings_in_use(),
        "retriever": retriever,
    }


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _missing_local_folder(path: str) -> bool:
    """A path that names a folder on this machine (not a hub id) and is not there."""
    local = Path(path).is_absolute() or path.startswith(".") or Path(path.split("/")[0]).is_dir()
    return local and not Path(path).exists()


class PolicyEngines:
    """One generation backend at a time: the model folder's in use, closed when another's is
    asked for (or at `close`)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.path: str | None = None
        self.backend = None
        self.built = 0  # backends built so far (the tests count them)

    def backend_for(self, path: str):
        if self.path != path:
            self.close()
            self.backend = self._build(path)
            self.path = path
            self.built += 1
        return self.backend

    def _build(self, path: str):
        if _missing_local_folder(path):
            raise EvaluationError(
                f"model folder {path} does not exist (the trained policies come from "
                "`make stage1 stage2`, the ablation's from `make ablation`)"
            )
        from recipe.generation import build_backend
        from recipe.policy import load_policy

        model, tokenizer = load_policy(dataclasses.replace(self.cfg.model, path=path))
        if self.cfg.rollout.backend == "hf":  # vLLM places its own engine on the rank's device
            model.to(rank_device())
        return build_backend(self.cfg, model, tokenizer)

    def close(self) -> None:
        if self.backend is not None:
            getattr(self.backend, "close", lambda: None)()
        self.backend, self.path = None, None
        gc.collect()


class MethodRunner:
    """The rows of one method on one data set: reused from its file when it checks, else rolled
    out over the ranks (rank 0 writes the file)."""

    def __init__(self, cfg: RunConfig, retriever, out_dir: Path, ranks: Ranks | None = None):
        self.cfg, self.retriever, self.out_dir = cfg, retriever, out_dir
        self.ranks = ranks or current_ranks()
        self.engines = PolicyEngines(cfg)
        self.reused: list[str] = []
        self.redone: list[str] = []  # "name: why" of files that were there and did not check

    def rows(self, method: str, dataset: str, records, temperature: float, seed: int | None):
        """The scored rows of `method` on `dataset`. The rollouts are written before the judge
        runs, so a failing judge loses none."""
        name = f"{method}__{dataset}" + ("" if seed is None else f"__seed{seed}")
        path = self.out_dir / "predictions" / f"{name}.jsonl"
        digest = settings_digest(run_settings(self.cfg, method, dataset, temperature, seed or 0))
        rows, why = None, ""
        if self.ranks.is_main:
            rows, why = reusable_rows(path, digest, [str(r.id) for r in records])
        if self.ranks.world > 1:  # every rank rolls out, or none
            rows, why = self.ranks.gather((rows, why))[0]
        if rows is not None:
            self.reused.append(name)
        else:
            if path.exists() and self.ranks.is_main:
                print(f"evaluate: redoing {name}: {why}", file=sys.stderr)
                self.redone.append(f"{name}: {why}")
            rows = self._roll_out(method, name, records, temperature, seed or 0)
            if self.ranks.is_main:
                write_predictions(path, rows, digest)
        if (
            self.ranks.is_main
            and self.cfg.eval.judge.enabled
            and any("judge" not in r for r in rows)
        ):
            from recipe.evaluation.judge import LLMJudge

            with LLMJudge(self.cfg.eval.judge) as judge:  # cached verdicts: asked once
                for row, verdict in zip(rows, judge.verdicts(rows), strict=True):
                    row["judge"] = verdict
            write_predictions(path, rows, digest)
        return rows

    def _roll_out(self, method: str, name: str, records, temperature: float, seed: int):
        from recipe.evaluation.scoring import evaluate
        from recipe.rollout import build_rollout_engine

        model_path, search = method_model(self.cfg, method)
        backend = self.engines.backend_for(model_path)
        rollout = dataclasses.replace(
            self.cfg.rollout, search=search, temperature=temperature, seed=seed
        )
        engine = build_rollout_engine(self.cfg, backend, self.retriever, rollout)
        if self.ranks.is_main:
            on = f" on {self.ranks.world} ranks" if self.ranks.world > 1 else ""
            print(f"evaluate: {name} ({len(records)} questions{on})", file=sys.stderr)
        mine = self.ranks.share(records)
        progress = self.cfg.logging.progress and self.ranks.is_main
        rows = evaluate(engine, mine, self.cfg.tags, self.cfg.reward, progress=progress)
        return self.ranks.gather_shares(rows, len(records))


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


def by_model(cfg: RunConfig) -> list[str]:
    """The methods in config order, regrouped so that methods of one model folder run in a row
    (one engine for them); an unknown method fails here, before any rollout."""
    models = [method_model(cfg, m)[0] for m in cfg.eval.methods]
    first = {path: models.index(path) for path in models}
    return sorted(cfg.eval.methods, key=lambda m: first[method_model(cfg, m)[0]])


def run_evaluation(
    cfg: RunConfig, retriever, datasets: dict[str, list], ranks: Ranks | None = None
) -> dict | None:
    """Every method on every data set; rank 0 writes the run folder and returns metrics.json's
    dict (the other ranks None)."""
    ranks = ranks or current_ranks()
    out_dir = Path(cfg.eval.out_dir)
    order = by_model(cfg)
    if ranks.is_main:
        save_config(cfg, out_dir)
    runner = MethodRunner(cfg, retriever, out_dir, ranks)
    rows: dict[str, dict[str, list[dict]]] = {m: {} for m in cfg.eval.methods}
    sampled: dict[str, dict[str, list[list[dict]]]] = {}
    try:
        for method in order:
            for dataset, records in datasets.items():
                rows[method][dataset] = runner.rows(
                    method, dataset, records, cfg.eval.temperature, None
                )
                for seed in cfg.eval.sample_seeds:
                    runs = sampled.setdefault(method, {}).setdefault(dataset, [])
                    runs.append(
                        runner.rows(method, dataset, records, cfg.eval.sample_temperature, seed)
                    )
    finally:
        runner.engines.close()
    if not ranks.is_main:
        return None
    sampled = {m: sampled[m] for m in cfg.eval.methods if m in sampled}
    return _write_report(cfg, out_dir, datasets, rows, sampled, runner)


def _write_report(cfg, out_dir: Path, datasets, rows, sampled, runner: MethodRunner) -> dict:
    from recipe.evaluation.report import goal_checks, report_markdown
    from recipe.evaluation.scoring import summarize

    summaries = {m: {d: summarize(r) for d, r in by_d.items()} for m, by_d in rows.items()}
    checks = goal_checks(
        rows,
        cfg.eval.goal_policy,
        cfg.eval.goals,
        bootstrap_samples=cfg.eval.bootstrap_samples,
        bootstrap_seed=cfg.eval.bootstrap_seed,
    )
    curves, notes = _plot_curves(cfg, out_dir)
    if runner.reused:
        notes.append(
            f"reused from an earlier run with the same settings: {', '.join(runner.reused)}"
        )
    if runner.redone:
        notes.append("redone, the earlier file did not check: " + "; ".join(runner.redone))
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
    from recipe.evaluation.curves import plot_training_curves

    plot = plot_training_curves(cfg.eval.training_runs, out_dir / "training_curves.png")
    return (plot.png.name if plot.png else None), list(plot.notes)
