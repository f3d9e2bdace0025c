# Two commands: `make run` (the app on the demo bundle) and `make test` (the test suite).
# Both create .venv and install requirements.txt when it is missing or changed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.sha256
DATA ?= data/simnsd
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

.PHONY: run test venv simulate pool bench clean

venv:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$$(sha256sum requirements.txt | cut -d' ' -f1)" != "$$(cat $(STAMP) 2>/dev/null)" ]; then \
		echo "installing requirements into $(VENV) ..."; \
		$(PY) -m pip install --quiet --upgrade pip && \
		$(PY) -m pip install --quiet -r requirements.txt && \
		sha256sum requirements.txt | cut -d' ' -f1 > $(STAMP); \
	fi

simulate: venv
	$(PY) -m mindeye simulate --subj 1 --out $(DATA)

# the Retrieve tab's large pool: 100k unseen SimNSD scenes embedded by the demo SceneCLIP (~30 min on one core)
pool: simulate
	$(PY) -m mindeye index build --scenes 100000 --out data/pool

# make run PORT=8000 HOST=0.0.0.0 (default: 127.0.0.1:7860, this machine only)
PORT ?= 7860
HOST ?= 127.0.0.1
run: simulate
	$(PY) app.py --data $(DATA) --host $(HOST) --port $(PORT)

test: venv
	$(PY) -m pytest -q tests

# every README figure comes from here: bench/results/*.json, then the README's generated tables.
# QUICK=1: every bench small (subject 1 only, the shipped models, nothing trained; under 10 minutes on 2 cores),
# results in bench/results/quick/ (never bench/results/*.json nor the README), ending with a printed summary.
# The one switch is BENCH_QUICK, which each script reads (bench/machine.py: quick(), results_dir()).
bench: export BENCH_QUICK := $(if $(filter-out 0,$(QUICK)),1,)
bench: venv
	$(PY) bench/simnsd_oracle.py
	$(PY) bench/mindeye_table.py
	$(PY) bench/final_recipe.py
	$(PY) bench/final_alternatives.py
	$(PY) bench/lowlevel_recipe.py
	$(PY) bench/demo_preset.py
	$(PY) bench/recon_strength.py
	$(PY) bench/recon_selection.py
	$(PY) bench/attribute_probe.py
	$(PY) bench/decoder_cond_noise.py
	$(PY) bench/recon_table.py
	$(PY) bench/prior_identity.py
	$(PY) bench/gpu_real_size.py
	OMP_NUM_THREADS=1 $(PY) bench/retrieval_latency.py
	$(PY) bench/app_figures.py
	$(PY) bench/load_test.py
	$(PY) bench/vision_stack.py
	$(PY) bench/build_times.py
	$(PY) bench/readme_tables.py

clean:
	rm -rf $(VENV) .pytest_cache
