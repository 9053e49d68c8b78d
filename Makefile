# Every target is idempotent and works from a fresh clone: it creates .venv here if needed.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
STAMP  := $(VENV)/.installed
MYPY   := 2.4.1

.PHONY: install demo test lint bench peer clean

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

# ruff (ruff.toml) on everything, mypy (mypy.ini) on the engine; pinned so CI and a laptop agree.
# Then every figure the README quotes must be in benchmarks/results/ (benchmarks/readme_figures.py).
lint: install
	$(PIP) install ruff==0.17.6 mypy==$(MYPY) 2>&1 | grep -v "is ignored" || true
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) benchmarks/readme_figures.py

bench: install
	$(PY) benchmarks/reconstruct_throughput.py
	$(PY) benchmarks/refine3d_vs_relion.py --relion --relion-budget 3
	$(PY) benchmarks/blush_vs_standard.py
	$(PY) benchmarks/class2d_blush.py
	$(PY) benchmarks/relion_peer.py

# The peer as its users build it: RELION from its public source (the 3dem/relion mirror here, or
# PEER_SRC), CPU only, under .peer/ (ignored by git; never in CI). benchmarks/peer.py prefers it
# to Debian's 3.1.3 and checks it with ../shared/peer/relion_ctf_check.sh before any figure counts.
# RELION 5 runs its Blush as `relion_python_blush` from PATH: benchmarks put ours (.venv/bin) there,
# so RELION 5 + Blush uses the denoiser we ship. PEER_TAG=4.0.2 builds RELION 4.0 instead.
PEER_SRC ?= /work/.mirror/3dem+relion/repo
PEER_TAG ?= 5.0.1
PEER_DIR := .peer/relion-$(PEER_TAG)

peer: install $(PEER_DIR)/bin/relion_refine

$(PEER_DIR)/bin/relion_refine:
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ libfftw3-dev libtiff-dev \
			libopenmpi-dev libpng-dev >/dev/null; fi
	rm -rf .peer/src-$(PEER_TAG) && git clone -q --depth 1 --branch $(PEER_TAG) $(PEER_SRC) .peer/src-$(PEER_TAG)
	cmake -S .peer/src-$(PEER_TAG) -B .peer/build-$(PEER_TAG) -DCMAKE_BUILD_TYPE=Release -DCUDA=OFF \
		-DALTCPU=OFF -DGUI=OFF -DFETCH_TORCH_MODELS=OFF -DFETCH_WEIGHTS=OFF -DPYTHON_EXE_PATH=$(abspath $(PY)) \
		-DCMAKE_INSTALL_PREFIX=$(abspath $(PEER_DIR)) >/dev/null
	cmake --build .peer/build-$(PEER_TAG) -j $$(nproc) >/dev/null
	cmake --install .peer/build-$(PEER_TAG) >/dev/null
	$(PY) benchmarks/peer.py

clean:
	rm -rf $(VENV) .scipion demo_output *.egg-info
