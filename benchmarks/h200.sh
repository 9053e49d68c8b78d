#!/usr/bin/env bash
# The GPU figures of one short lease on a one-GPU machine, in order of what they answer:
#   1. refine3d at a real pixel size on the two validate models (real_size.py --device cuda), both
#      at once on the one GPU (their wall times shared it; their resolutions are what counts);
#   2. the scaling table's GPU column (scaling.py --device cuda), alone on the machine;
#   3. the denoiser's cost per box size (blush_cost.py --device cuda).
# Each job has a time cap; refinements resume (--continue) when the script is run again on the same
# machine. Results land in benchmarks/results/{real_size_h200,scaling_cuda,blush_cost_cuda}.* and,
# with the logs, in $OUT/results.tgz.
#
#   BLUSH_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/h200.sh [REFINE_CAP_S]
#
# The device machine's python3 has torch; .whl/ carries mrcfile, starfile and gemmi wheels for it
# (pip download --only-binary=:all: --python-version 3.12 ...), .carry/atomic_models the two models.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200}
mkdir -p "$OUT" logs
REFINE_CAP=${1:-330}
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
if [ ! -e ../shared/data/atomic_models ]; then
    mkdir -p ../shared/data && ln -s "$PWD/.carry/atomic_models" ../shared/data/atomic_models
fi
save() { tar czf "$OUT/results.tgz" logs benchmarks/results/*cuda* benchmarks/results/real_size_h200* 2>/dev/null; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
    nproc
} > logs/machine.txt 2>&1
cat logs/machine.txt

for model in 3PWP 1osm; do
    OMP_NUM_THREADS=8 timeout "$REFINE_CAP" python3 benchmarks/real_size.py --models $model --device cuda \
        --name real_size_h200_$model > logs/real_size_$model.log 2>&1 &
done
wait
tail -n 3 logs/real_size_*.log
done_models=$(ls benchmarks/work/real_*_128px_n4000/auto-sampling/summary.json 2>/dev/null | wc -l)
if [ "$done_models" = 2 ]; then
    timeout 120 python3 benchmarks/real_size.py --models 3PWP 1osm --device cuda --name real_size_h200 \
        > logs/real_size_both.log 2>&1
    tail -n 6 logs/real_size_both.log
fi
save

if [ ! -e benchmarks/results/scaling_cuda.json ]; then
    timeout 150 python3 benchmarks/scaling.py --device cuda --n 512 > logs/scaling_boxes.log 2>&1
    tail -n 4 logs/scaling_boxes.log
    save
    timeout 120 python3 benchmarks/scaling.py --device cuda --n 512 --boxes --counts 1000 4000 20000 --merge \
        > logs/scaling_counts.log 2>&1
    tail -n 24 logs/scaling_counts.log
    save
    timeout 60 python3 benchmarks/blush_cost.py --device cuda > logs/blush_cost.log 2>&1
    tail -n 8 logs/blush_cost.log
    save
fi
