#!/usr/bin/python3
"""PyTorch CPU peer for the matmul and softmax benchmark rows (see bench/peers/README.md).

Prints one JSON line per measurement:
  {"peer": "pytorch-cpu", "op": ..., "shape": ..., "ms": ..., "gflops" | "gbps": ..., "best_ms": ..., "runs": ...,
   "cpu_share": ..., "threads": ...}
ms (and the rate) is the median of the timed runs after one warm-up: at least --min-runs, more until --min-time
seconds have passed; cpu_share is the process's CPU time per wall second per thread (near 1 on idle cores).

Shapes are M x K x N (A is M x K, B is K x N), the same convention as the engine's bench rows: 4096x512x2048 is
t5-small's FF up-projection over 4096 tokens, 4096x2048x512 its down-projection, 4096x512x32128 the LM head.

Run it through run-torch-peers.sh, or by hand with Debian's python (the apt torch lives there):
  OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/peers/torch_matmul.py
"""
import argparse
import json
import os
import statistics
import sys
import time

PEER = 'pytorch-cpu'

MATMUL_SHAPES = ['1024x1024x1024', '4096x512x2048', '4096x2048x512', '4096x512x32128']
BMM_SHAPES = ['64x256x64x256']  # batch x M x K x N: 64 x (256x64 @ 64x256), attention-score sized
SOFTMAX_SHAPES = ['16384x256']


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2, help='intra-op threads for torch and OpenBLAS (default 2)')
    p.add_argument('--rows', default='matmul,bmm,softmax', help='comma list of: matmul, bmm, softmax')
    p.add_argument('--min-time', type=float, default=1.0, help='keep timing until this many seconds (default 1)')
    p.add_argument('--min-runs', type=int, default=3)
    p.add_argument('--max-runs', type=int, default=20)
    p.add_argument('--matmul', default=','.join(MATMUL_SHAPES), help='comma list of MxKxN')
    return p.parse_args()


ARGS = parse_args()
# Both must be in the environment before torch (and with it libgomp and OpenBLAS) loads: libgomp's default
# spin-waiting threads otherwise steal the 2 cores from OpenBLAS's own pool (bench/peers/README.md).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
os.environ.setdefault('OPENBLAS_NUM_THREADS', str(ARGS.threads))
os.environ.setdefault('OMP_NUM_THREADS', str(ARGS.threads))

import torch  # noqa: E402  (after the environment above on purpose)


def blas_check():
    """Warns when torch's BLAS is not OpenBLAS: Debian's reference BLAS is ~50x slower and would make a peer useless."""
    a = torch.ones(64, 64)
    a @ a
    try:
        with open('/proc/self/maps') as f:
            maps = f.read()
    except OSError:
        return 'unknown'
    if 'openblas' in maps:
        return 'openblas'
    print('WARNING: torch is not using OpenBLAS (install libopenblas0-pthread); figures will be far too slow',
          file=sys.stderr)
    return 'other'


def median_ms(fn):
    """(median, best) milliseconds after one warm-up run (first touch of outputs, OpenBLAS buffers, thread start)."""
    fn()
    times = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    while len(times) < ARGS.max_runs and (len(times) < ARGS.min_runs or time.perf_counter() - start < ARGS.min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    # process CPU seconds per wall second per thread: near 1 on idle cores, far below when other work holds them
    share = (time.process_time() - cpu0) / sum(times) / torch.get_num_threads()
    return statistics.median(times) * 1e3, min(times) * 1e3, len(times), share


def emit(op, shape, timing, work, unit):
    """work: flops (unit gflops) or bytes (unit gbps) of one run; the rate is the median's."""
    ms, best, runs, share = timing
    row = {'peer': PEER, 'op': op, 'shape': shape, 'ms': round(ms, 3), unit: round(work / ms / 1e6, 2),
           'best_ms': round(best, 3), 'runs': runs, 'cpu_share': round(share, 2)}
    row['threads'] = torch.get_num_threads()
    print(json.dumps(row), flush=True)


def bench_matmul(shape):
    m, k, n = (int(s) for s in shape.split('x'))
    a, b = torch.randn(m, k), torch.randn(k, n)
    c = torch.empty(m, n)  # preallocated: the timing is the product, not the allocator
    emit('matmul', shape, median_ms(lambda: torch.mm(a, b, out=c)), 2 * m * k * n, 'gflops')


def bench_bmm(shape):
    bsz, m, k, n = (int(s) for s in shape.split('x'))
    a, b = torch.randn(bsz, m, k), torch.randn(bsz, k, n)
    c = torch.empty(bsz, m, n)
    emit('bmm', f'{bsz}x({m}x{k}@{k}x{n})', median_ms(lambda: torch.bmm(a, b, out=c)), 2 * bsz * m * k * n, 'gflops')


def bench_softmax(shape):
    rows, cols = (int(s) for s in shape.split('x'))
    x = torch.randn(rows, cols)
    # bytes read + written once each, the same accounting as the engine's softmax rows
    emit('softmax', shape, median_ms(lambda: torch.softmax(x, dim=-1)), 2 * rows * cols * 4, 'gbps')


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    blas = blas_check()
    print(f'# torch {torch.__version__}, blas {blas}, threads {torch.get_num_threads()}, '
          f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY")}', file=sys.stderr)
    rows = set(ARGS.rows.split(','))
    with torch.no_grad():
        if 'matmul' in rows:
            for s in ARGS.matmul.split(','):
                bench_matmul(s)
        if 'bmm' in rows:
            for s in BMM_SHAPES:
                bench_bmm(s)
        if 'softmax' in rows:
            for s in SOFTMAX_SHAPES:
                bench_softmax(s)


if __name__ == '__main__':
    main()
