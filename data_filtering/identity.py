"""What difficulty results depend on, and the manifest that says when they stop being valid.

Rollouts-to-first-correct is a property of a question *under a reference policy*: its weights,
its prompt, its retriever, its sampling settings and the metric that calls an answer correct.
The manifest next to the results file stores that identity; a run whose identity differs moves
the old results aside (`results.invalidated.jsonl`) and records, in the manifest, each field
that changed (`model.files.model.safetensors: 3f0c... -> 9a1b...`). Not part of the identity, so
editing them reuses every result: bucket thresholds, quotas, sample sizes, the cap
(`filter.max_rollouts`: raising it continues the unsolved questions) and `rollout.batch_size`
(which questions share a batch changes which samples are drawn, not their distribution), and
the vLLM engine's settings while the backend is HF.

Model files are identified by SHA-256; a file whose size and modification time match the last
run's is not hashed again. A model given as a hub id (no local folder) is identified by its
name, and a retrieval service (`retriever.url`) by its URL: the manifest cannot see inside them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from data_filtering.config import FilterRunConfig
from recipe.atomic import write_json
from recipe.exit_status import BAD_INPUT
from recipe.precision import resolve_dtype
from recipe.prompts import question_prompt_ids
from recipe.retrieval.manifest import corpus_fingerprint, read_manifest

MANIFEST_VERSION = 1
# Files of a model folder that change what it samples (the tokenizer is covered by the prompt).
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.gguf", "config.json", "generation_config.json")
# The prompt identity is the token ids the policy sees for this question: it covers the prompt
# style, the system prompt, the tags, the chat template and the tokenizer at once.
PROBE_QUESTION = "Which river flows through the city where the probe question was written?"
# Rollout fields that do not change the distribution of one question's samples.
ROLLOUT_FIELDS_IGNORED = ("batch_size", "samples_per_prompt", "gpu_memory_utilization")
QUERY_SIDE_RETRIEVER_FIELDS = ("max_query_tokens", "faiss_nprobe", "hnsw_ef_search")


def _model_files(cfg: FilterRunConfig) -> list[Path]:
    folder = Path(cfg.model.path)
    if not folder.is_dir():
        return []
    if cfg.model.gguf_file:
        return [folder / cfg.model.gguf_file]
    return sorted({p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern)})


def model_identity(cfg: FilterRunConfig, known: dict) -> tuple[dict, dict]:
    """(identity, fingerprints): per-file SHA-256, and {path, size, mtime_ns, sha256} to reuse."""
    fingerprints = {p.name: corpus_fingerprint(p, known.get(p.name)) for p in _model_files(cfg)}
    identity = {
        "path": cfg.model.path,
        "dtype": resolve_dtype(cfg.model.dtype),
        "gguf_file": cfg.model.gguf_file,
        "files": {name: fp["sha256"] for name, fp in fingerprints.items()},
    }
    return identity, fingerprints


def prompt_identity(cfg: FilterRunConfig, tokenizer) -> dict:
    ids = question_prompt_ids(PROBE_QUESTION, tokenizer, cfg.tags, cfg.model.prompt_style)
    return {
        "style": cfg.model.prompt_style,
        "tags": cfg.tags.strings(),
        "probe_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
    }


def retriever_identity(cfg: FilterRunConfig) -> dict:
    r = cfg.retriever
    identity = {"kind": r.kind, "topk": r.topk, "url": r.url}
    identity |= {name: getattr(r, name) for name in QUERY_SIDE_RETRIEVER_FIELDS}
    if r.url is None:  # in process: the index's own manifest says what it was built from
        identity["index"] = read_manifest(r.index_dir)["identity"]
    return identity


def reference_identity(cfg: FilterRunConfig, tokenizer, known_files: dict) -> tuple[dict, dict]:
    """(identity, model file fingerprints) of the reference policy and the correctness rule."""
    model, fingerprints = model_identity(cfg, known_files)
    rollout = {
        k: v for k, v in cfg.rollout.settings_in_use().items() if k not in ROLLOUT_FIELDS_IGNORED
    }
    identity = {
        "model": model,
        "prompt": prompt_identity(cfg, tokenizer),
        "retriever": retriever_identity(cfg),
        "rollout": rollout | {"rollouts_per_round": cfg.filter.rollouts_per_round},
        "metric": {
            "metric": cfg.filter.metric,
            "correct_at": cfg.filter.correct_at,
            "profile": cfg.reward.metric_profile,
            "max_answer_words": cfg.reward.max_answer_words,
        },
    }
    return identity, fingerprints


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    out: dict[str, object] = {}
    for key, value in tree.items():
        out |= _flatten(value, f"{prefix}{key}.")
    return out


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 40 else f"{text[:12]}...{text[-8:]}"


def identity_changes(old: dict, new: dict) -> list[str]:
    """'dotted.key: old -> new' for every leaf that differs (or exists on one side only)."""
    a, b = _flatten(old), _flatten(new)
    return [
        f"{key}: {_short(a.get(key, '(absent)'))} -> {_short(b.get(key, '(absent)'))}"
        for key in sorted(set(a) | set(b))
        if a.get(key, "(absent)") != b.get(key, "(absent)")
    ]


class ManifestError(ValueError):
    """A filter manifest that parses but is not one (the entry point exits 2 on it)."""

    exit_status = BAD_INPUT


def read_filter_manifest(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a manifest we cannot read guarantees nothing: treated as absent
    if not isinstance(manifest, dict):
        raise ManifestError(
            f"{path} holds a JSON {type(manifest).__name__}, not a filter manifest (an object); "
            "delete it to estimate the difficulty results again, or restore it"
        )
    return manifest if manifest.get("version") == MANIFEST_VERSION else {}


def write_filter_manifest(path: Path, identity: dict, fingerprints: dict, changes: list) -> None:
    manifest = {
        "version": MANIFEST_VERSION,
        "identity": identity,
        "model_file_fingerprints": fingerprints,
        "invalidated_by": changes,  # empty when the results were kept (or there were none)
    }
    write_json(path, manifest, fsync=True, sort_keys=True)
