"""`make base`: the embedded base model, cold-started on the warm-up world, then gated.

    python -m miniwiki.base --config configs/embedded/miniwiki.yaml [key.path=value ...] [--force]

1. SmolLM2-135M-Instruct's GGUF file -> a plain HF folder (`coldstart.source_dir`, once);
2. transcripts about the warm-up world (BM25 over the warm-up corpus) -> examples;
3. the cold start -> `coldstart.out_dir` (a standard HF folder), `coldstart.json` beside it;
4. the gate on task-world dev questions -> `gate.json` beside the model, printed.

The model is rebuilt only when its fingerprint changes (cold-start settings, the world, the run
config's prompt and insertion settings, this code); the gate reruns when its own settings
change. The exit status is 1 when the gate fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import torch

from miniwiki import build as world_build
from miniwiki.base_model import convert_smollm2
from miniwiki.coldstart import train
from miniwiki.coldstart_data import encode_transcript, warmup_questions
from miniwiki.config import MiniwikiConfig
from miniwiki.gate import run_gate
from miniwiki.transcripts import BEHAVIOURS, TranscriptWriter, write_transcripts
from recipe.atomic import atomic_dir, write_json, write_jsonl
from recipe.config import FieldError, load_config, parse_cli, save_config
from recipe.exit_status import run_reporting
from recipe.policy import load_policy, load_tokenizer
from recipe.precision import DTYPE_NAMES
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.corpus import read_corpus
from recipe.schema import ModelConfig, RunConfig

DEFAULT_CONFIG = "configs/embedded/miniwiki.yaml"
MODEL_CODE = ("base_config", "base_model", "coldstart", "coldstart_data", "transcripts", "base")
GATE_CODE = ("gate",)
COLDSTART_REPORT = "coldstart.json"
GATE_REPORT = "gate.json"
TRANSCRIPT_SAMPLE = "coldstart_transcripts.jsonl"


def _code_hash(h, modules: tuple[str, ...]) -> None:
    here = Path(__file__).parent
    for name in modules:
        h.update((here / f"{name}.py").read_bytes())


def model_fingerprint(cfg: MiniwikiConfig, run_cfg: RunConfig) -> str:
    h = hashlib.sha256(world_build.fingerprint(cfg).encode())
    used = {
        "coldstart": dataclasses.asdict(cfg.coldstart),
        "tags": dataclasses.asdict(run_cfg.tags),
        "prompt_style": run_cfg.model.prompt_style,
        "topk": run_cfg.retriever.topk,
        "doc_template": run_cfg.rollout.doc_template,
    }
    h.update(json.dumps(used, sort_keys=True).encode())
    _code_hash(h, MODEL_CODE)
    return h.hexdigest()


def gate_fingerprint(model_fp: str, cfg: MiniwikiConfig, run_cfg: RunConfig) -> str:
    h = hashlib.sha256(model_fp.encode())
    used = {"gate": dataclasses.asdict(cfg.gate), "run": dataclasses.asdict(run_cfg)}
    h.update(json.dumps(used, sort_keys=True).encode())
    _code_hash(h, GATE_CODE)
    return h.hexdigest()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def build_examples(cfg: MiniwikiConfig, run_cfg: RunConfig, tokenizer):
    """(examples, transcripts, skip counts) for the configured behaviour mix."""
    cs = cfg.coldstart
    corpus = Path(cfg.out_dir) / "warmup" / "corpus.jsonl"
    retriever = BM25Retriever(list(read_corpus(corpus)))
    writer = TranscriptWriter(
        retriever, run_cfg.tags, cs.templates, run_cfg.retriever.topk, run_cfg.rollout.doc_template
    )
    questions = warmup_questions(cfg, "train")
    transcripts, skipped = write_transcripts(
        questions, writer, cs.mix, cs.transcripts, cs.max_hops, random.Random(cs.seed)
    )
    style = run_cfg.model.prompt_style
    examples = [encode_transcript(tokenizer, t, run_cfg.tags, style) for t in transcripts]
    return examples, transcripts, skipped


def cold_start(cfg: MiniwikiConfig, run_cfg: RunConfig, fingerprint: str) -> dict:
    cs = cfg.coldstart
    started = time.perf_counter()
    convert_smollm2(cs.source_dir)
    source = ModelConfig(path=cs.source_dir, dtype=cs.dtype)  # type: ignore[arg-type]
    model, _ = load_policy(source)
    tokenizer = load_tokenizer(source)
    examples, transcripts, skipped = build_examples(cfg, run_cfg, tokenizer)
    stats = train(model, examples, cs, tokenizer.pad_token_id)
    counts = {b: sum(t.behaviour == b for t in transcripts) for b in BEHAVIOURS}
    report = {
        "fingerprint": fingerprint,
        "transcripts": counts,
        "skipped_questions": skipped,
        "train": dataclasses.asdict(stats),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    with atomic_dir(cs.out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        rows = [
            {"behaviour": t.behaviour, "question": t.question, "segments": t.segments}
            for t in transcripts
        ]
        write_jsonl(tmp / TRANSCRIPT_SAMPLE, rows)
        write_json(tmp / COLDSTART_REPORT, report)
        save_config(cfg, tmp, "miniwiki_config.yaml")
    print(json.dumps(report, indent=2))
    return report


def gate(cfg: MiniwikiConfig, run_cfg: RunConfig, fingerprint: str) -> dict:
    model_cfg = dataclasses.replace(run_cfg.model, path=cfg.coldstart.out_dir, gguf_file=None)
    model, tokenizer = load_policy(model_cfg)
    started = time.perf_counter()
    report = run_gate(model, tokenizer, run_cfg, cfg.gate, Path(cfg.out_dir) / "task")
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["fingerprint"] = fingerprint
    write_json(Path(cfg.coldstart.out_dir) / GATE_REPORT, report)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in argv
    argv = [a for a in argv if a != "--force"]
    cfg = parse_cli(MiniwikiConfig, argv, default=DEFAULT_CONFIG)
    return run_reporting("miniwiki.base", lambda: _make_base(cfg, force))


def _make_base(cfg: MiniwikiConfig, force: bool) -> int:
    run_cfg = load_config(RunConfig, cfg.coldstart.run_config)
    if cfg.coldstart.dtype not in DTYPE_NAMES:
        raise FieldError("coldstart.dtype", f"must be one of {list(DTYPE_NAMES)}")
    torch.manual_seed(cfg.coldstart.seed)
    out = Path(cfg.coldstart.out_dir)
    model_fp = model_fingerprint(cfg, run_cfg)
    if force or _read_json(out / COLDSTART_REPORT).get("fingerprint") != model_fp:
        cold_start(cfg, run_cfg, model_fp)
    else:
        print(f"miniwiki.base: {out} is up to date (fingerprint {model_fp[:12]})")
    gate_fp = gate_fingerprint(model_fp, cfg, run_cfg)
    report = _read_json(out / GATE_REPORT)
    if force or report.get("fingerprint") != gate_fp:
        report = gate(cfg, run_cfg, gate_fp)
    summary = {k: report[k] for k in ("passed", "checks", "metrics", "setting") if k in report}
    print(json.dumps(summary, indent=2))
    return 0 if report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
