#!/usr/bin/env bash
# The GPU figures of one short lease on a one-GPU machine, in order of what they answer:
#   1. refine3d at a real pixel size on the two validate models (real_size.py --device cuda), both
#      at once on the one GPU (their wall times shared it; their resolutions are what counts);
#   2. the scaling table's GPU column (scaling.py --device cuda), alone on the machine;
#   3. the denoiser's cost per box size (blush_cost.py --device cuda).
# Each job has a time cap; refinements resume (--continue) when the script is run again on the same
# machine. Results land in benchmarks/results/{real_size_h200_MODEL,scaling_cuda,blush_cost_cuda}.*
# and, with the logs, in $OUT/results.tgz. (2026-11-30: each refine3d took about 25 s, with its
# simulation and known-pose map a few minutes; the scaling points 2 minutes; the denoiser 14 s.)
#
#   BLUSH_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/h200.sh [REFINE_CAP_S]
#
# (the set-up: benchmarks/device_setup.sh)
set -u
REFINE_CAP=${1:-330}
source benchmarks/device_setup.sh
save() { tar czf "$OUT/results.tgz" logs benchmarks/results/*cuda* benchmarks/results/real_size_h200_* 2>/dev/null; }

for model in 3PWP 1osm; do
    OMP_NUM_THREADS=8 timeout "$REFINE_CAP" python3 benchmarks/real_size.py --models $model --device cuda \
        --name real_size_h200_$model > logs/real_size_$model.log 2>&1 &
done
wait
tail -n 3 logs/real_size_*.log
save

# the per-point processes, not the GPU, take most of this one's time: the counts stop at 1,000
timeout 150 python3 benchmarks/scaling.py --device cuda --n 512 --counts 1000 > logs/scaling.log 2>&1
tail -n 16 logs/scaling.log
save
timeout 60 python3 benchmarks/blush_cost.py --device cuda --boxes 256 384 > logs/blush_cost.log 2>&1
tail -n 6 logs/blush_cost.log
save
