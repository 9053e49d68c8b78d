#!/usr/bin/env bash
# Blush's tuning split on a one-GPU machine (issue 24): the defaults' candidates on the tuning models
# (training split) and the Blush table on the validate models under 60 kDa with two particle seeds,
# both at once on the one GPU (each refine3d of 2,000 particles of 64 px took about 8 s on an H200).
# Results: benchmarks/results/blush_{tuning,heldout}_cuda.* and, with the logs, $OUT/results.tgz.
# Arms already finished are kept, so a second run goes on where a first was stopped.
#
#   bash benchmarks/h200_blush_split.sh [CAP_S]
#
# (the set-up: benchmarks/device_setup.sh; .carry/atomic_models must hold the seven models below)
set -u
CAP=${1:-480}
source benchmarks/device_setup.sh
save() { tar czf "$OUT/results.tgz" logs benchmarks/results/blush_*_cuda.* 2>/dev/null; }

OMP_NUM_THREADS=6 timeout "$CAP" python3 benchmarks/blush_vs_standard.py --device cuda \
    --models 3k7pA 3gknA 1dx5I \
    --arms standard blush blush_first blush_from10 blush_from20 blush_zero_fill \
    --name blush_tuning_cuda > logs/blush_tuning.log 2>&1 &
OMP_NUM_THREADS=6 timeout "$CAP" python3 benchmarks/blush_vs_standard.py --device cuda \
    --models 1osm 3nbkA 4gcnA 2qdlA --seeds 7 8 \
    --arms standard blush blush_first --name blush_heldout_cuda > logs/blush_heldout.log 2>&1 &
wait
tail -n 2 logs/blush_*.log
save
