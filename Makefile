# The two commands of the README: `make demo` (the main job) and `make test` (the suite, what CI runs).
# Both set up everything they need on a fresh machine first (scripts/setup_runtime.sh, idempotent).
# Two ComfyUI lines are supported: the current one (the default everywhere) and the oldest one.
CURRENT := 0.33.0
OLDEST := 0.3.75
RUNTIME ?= $(CURRENT)
PY = CACHEKIT_COMFY=$(RUNTIME) .runtime/comfyui-$(RUNTIME)/venv/bin/python
TESTS ?= tests   # one level: tests/engine (no ComfyUI), tests/comfy (in process), tests/server, tests/browser
PYTEST = -m pytest -c tests/pytest.ini --durations=10 $(TESTS)

.PHONY: setup demo lint test test-current test-oldest test-fast check bench bench-quantized bench-lora bench-clones \
	coverage clean

setup:
	@bash scripts/setup_runtime.sh

demo: setup
	$(PY) scripts/demo.py

lint: setup   # pyflakes' and pycodestyle's checks, lines of 120 (pyproject.toml [tool.ruff])
	.runtime/comfyui-$(CURRENT)/venv/bin/ruff check .

# the whole suite on the current line and, beside it, on the oldest line the tests of what can differ between
# versions (marked every_runtime: family x method, the server, workflows, calibration files). Four processes of a
# torch thread each on the 2 cores: the oldest line, the current line's family x method and sampler matrices, its
# torch.compile and quantized-weights tests, and the rest of the current line, started together and of about the
# same length (a fresh-clone run with --durations measures them), so that no long one ends alone on one core; the
# others' output follows
MATRIX := tests/comfy/test_methods_comfy.py tests/comfy/test_first_block_cache.py tests/comfy/test_samplers.py
COMPILED := tests/comfy/test_torch_compile.py tests/comfy/test_quantized.py
REST := tests
test: setup lint
	@mkdir -p output; status=0; \
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-oldest > output/test-$(OLDEST).log 2>&1 & oldest=$$!; \
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-current TESTS="$(MATRIX) -p no:cacheprovider" \
		> output/test-$(CURRENT)-matrix.log 2>&1 & matrix=$$!; \
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-current TESTS="$(COMPILED) -p no:cacheprovider" \
		> output/test-$(CURRENT)-compiled.log 2>&1 & compiled=$$!; \
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-current \
		TESTS="$(REST) $(addprefix --ignore=,$(MATRIX) $(COMPILED))" || status=1; \
	wait $$matrix || status=1; wait $$compiled || status=1; wait $$oldest || status=1; \
	for log in $(CURRENT)-matrix $(CURRENT)-compiled $(OLDEST); do \
		echo "=== output/test-$$log.log"; cat output/test-$$log.log; done; exit $$status

test-current:
	CACHEKIT_COMFY=$(CURRENT) .runtime/comfyui-$(CURRENT)/venv/bin/python $(PYTEST)

test-oldest:
	CACHEKIT_COMFY=$(OLDEST) .runtime/comfyui-$(OLDEST)/venv/bin/python $(PYTEST) -m every_runtime

# the edit-test loop: the engine, the inputs, the docs, and every method on two families, current line (~3.5 min)
test-fast: lint
	$(PY) $(PYTEST) -m fast -x -q

check: test-fast

bench: setup   # BENCHMARKS.md: trained models, quality at equal compute, speed against the ideal
	$(PY) scripts/bench_report.py

# each refreshes its part of BENCHMARKS.md's "Quantized weights and LoRAs" section when it finishes
bench-quantized: setup   # docs/bench/quantized.md: caching on fp8 and GGUF weights of the trained models (~26 min)
	OMP_NUM_THREADS=1 $(PY) scripts/bench_quantized.py
	$(PY) scripts/bench_report.py --separate

bench-lora: setup   # docs/bench/lora.md: a trained LoRA against settings made without it (~17 min)
	OMP_NUM_THREADS=1 $(PY) scripts/bench_lora.py
	$(PY) scripts/bench_report.py --separate

bench-clones: setup   # what cloning a cached MODEL costs (memory, time), as LoRA loaders and ModelSampling clone it
	$(PY) scripts/bench_clones.py

coverage: setup   # docs/coverage.md, from the family x method tests that pass on each supported line
	$(PY) scripts/coverage_table.py

clean:
	rm -rf output .pytest_cache tests/.pytest_cache
