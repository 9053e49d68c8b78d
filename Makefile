# Every target is idempotent and works from a fresh clone: it creates .venv here if needed.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first: the CPU wheel is pinned so nothing later pulls a CUDA build.
$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PIP) install scipion-pyworkflow==3.11.7 scipion-em==3.11.1 mrcfile starfile emtable gemmi tqdm safetensors pytest 2>&1 | grep -v "is ignored" || true
	$(PIP) install -e . 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, pyworkflow, pwem, mrcfile, starfile, gemmi, safetensors, tqdm, blush_scipion.engine"
	touch $(STAMP)

demo: install
	$(PY) -m blush_scipion.demo --out demo_output

test: install
	$(PY) -m pytest -q blush_scipion/tests

bench: install
	$(PY) benchmarks/reconstruct_throughput.py
	$(PY) benchmarks/refine3d_vs_relion.py --relion --relion-budget 3
	$(PY) benchmarks/blush_vs_standard.py
	$(PY) benchmarks/class2d_blush.py
	$(PY) benchmarks/relion_peer.py

clean:
	rm -rf $(VENV) .scipion demo_output *.egg-info
