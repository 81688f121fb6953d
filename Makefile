# Two commands do everything on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint install clean benchmark benchmark-quick

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[dev,align]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check img2tab tests benchmarks

test: $(STAMP) lint
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q -m "not slow" tests
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q --nbmake --nbmake-timeout=600 notebooks/Img2Tab_demo.ipynb
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q -m slow tests/test_official_notebook.py
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q --nbmake --nbmake-timeout=900 notebooks/peers.ipynb
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q --nbmake --nbmake-timeout=900 notebooks/own_data.ipynb
	$(MAKE) benchmark-quick

benchmark-quick: $(STAMP)
	OMP_NUM_THREADS=2 $(VENV)/bin/img2tab benchmark --quick --no-progress --out benchmark_report_quick \
		--methods img2tab-w1,img2tab-importance,random-concepts,oracle-concepts,attfind-psi,knn-psi

benchmark: $(STAMP)
	OMP_NUM_THREADS=2 $(VENV)/bin/img2tab benchmark --out benchmark_report

demo: $(STAMP)
	OMP_NUM_THREADS=2 $(VENV)/bin/img2tab demo --out demo_report

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
