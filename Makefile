# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both set up everything they need on a fresh machine first (scripts/setup_runtime.sh, idempotent).
PY := .venv/bin/python

.PHONY: setup demo test bench coverage clean

setup:
	@bash scripts/setup_runtime.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -c tests/pytest.ini tests

bench: setup   # BENCHMARKS.md: trained models, quality at equal compute, speed against the ideal
	$(PY) scripts/bench_report.py

coverage: setup   # docs/coverage.md, from the family x method tests that pass
	$(PY) scripts/coverage_table.py

clean:
	rm -rf output .pytest_cache tests/.pytest_cache
