#!/bin/sh
# Re-run: bench/sendbench/run.sh > results.txt ; python3 bench/sendbench/summarize.py results.txt
# Builds first (release) into $CARGO_TARGET_DIR, default <repo>/target/sendbench.
set -e
dir=$(dirname "$0")
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$dir/../../target/sendbench}
export CARGO_TARGET_DIR
cargo build --release --manifest-path "$dir/Cargo.toml" >&2
set +e
B=$CARGO_TARGET_DIR/release/sendbench
REPS=${REPS:-5}
CASES="sendto:0:plain send:0:plain sendmmsg1:0:plain
uring_send:0:plain uring_send:0:coop uring_send:0:defer uring_send:0:fixed uring_send:0:defer_fixed
uring_send:64:defer_fixed uring_send:256:defer_fixed
uring_sendmsg:0:plain uring_sendmsg:0:defer_fixed uring_sendmsg:64:defer_fixed
ep_recv_loop:0:plain ep_recv_once:0:plain ep_recvmmsg:0:plain
uring_recvmsg:0:plain uring_recvmsg:0:defer_fixed uring_recvmsg:64:defer_fixed
uring_multishot:0:defer uring_multishot:0:defer_fixed"
for rep in $(seq $REPS); do
  for K in 1000 4000; do
    if [ $K = 1000 ]; then R=200; else R=60; fi
    for c in $CASES; do
      v=${c%%:*}; rest=${c#*:}; b=${rest%%:*}; m=${rest#*:}
      timeout 60 "$B" $v $K $R $b $m 2>>errors.txt
    done
  done
done
