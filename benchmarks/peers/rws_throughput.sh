#!/bin/bash
# Interleaved throughput windows: tfdgm RWS K=5 (batch 100) vs Pyro ReweightedWakeSleep K=5 in a plate of
# 100 images and on one image per step; every process niced, 2 threads; one JSON line per process.
# Usage: bash benchmarks/peers/rws_throughput.sh STREAM ROUNDS > log
STREAM=${1:-/tmp/rws2_peer/stream_s0_600.npz}; ROUNDS=${2:-3}
PEERPY=/work/main/benchmarks/peers/.venv/bin/python; TFPY=/work/main/.venv/bin/python
export PYTHONPATH=. TF_CPP_MIN_LOG_LEVEL=3
for r in $(seq 1 $ROUNDS); do
  for p in tfdgm pyro100 pyro1; do
    echo "# round $r $p $(uptime)"
    case $p in
      tfdgm) nice -n 19 $TFPY benchmarks/peers/rws_peer.py --mode throughput --stream $STREAM --k 5 --warmup_steps 20 --steps 30 --chunks 3 2>/dev/null | grep PEER_RESULT;;
      pyro100) nice -n 19 $PEERPY benchmarks/peers/pyro_rws.py --mode throughput --stream $STREAM --k 5 --batch_size 100 --warmup_steps 3 --steps 5 --chunks 3 | grep PEER_RESULT;;
      pyro1) nice -n 19 $PEERPY benchmarks/peers/pyro_rws.py --mode throughput --stream $STREAM --k 5 --batch_size 1 --warmup_steps 10 --steps 30 --chunks 3 | grep PEER_RESULT;;
    esac
  done
done
echo "# end $(uptime)"
