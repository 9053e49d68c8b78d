# Sourced by the device scripts (h200*.sh): the wheels from .whl/ on the device's python3, the
# carried atomic models where ../shared is absent, the machine's description in logs/machine.txt.
# The device machine's python3 has torch; .whl/ carries mrcfile, starfile and gemmi wheels for it
# (pip download --only-binary=:all: --python-version 3.12 ...), .carry/atomic_models the models.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200}
mkdir -p "$OUT" logs
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
if [ ! -e ../shared/data/atomic_models ]; then
    mkdir -p ../shared/data && ln -s "$PWD/.carry/atomic_models" ../shared/data/atomic_models
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
    nproc
} > logs/machine.txt 2>&1
cat logs/machine.txt
