#!/usr/bin/python3
"""PyTorch CPU peer for the t5-small benchmark rows (see bench/peers/README.md).

Hugging Face transformers cannot be installed here, so this is a plain torch T5 (v1.0, as t5-small) with the same
shapes and the same arithmetic as transformers' T5ForConditionalGeneration:
  - relative position bias: one bucket embedding (32 buckets, max distance 128) in the first layer of each stack,
    bidirectional buckets in the encoder, causal ones in the decoder, computed once and shared by every layer;
  - RMS norm (no mean subtraction, no bias, eps 1e-6), pre-norm residual blocks;
  - attention without the 1/sqrt(d_kv) scaling; bias-free q/k/v/o projections;
  - ReLU feed-forward (wi -> relu -> dropout -> wo);
  - decoder self-attention (causal) then cross-attention (no position bias) then feed-forward;
  - LM head tied to the shared embedding, hidden states scaled by d_model ** -0.5 first;
  - cross-entropy with ignore_index -100; decoder inputs are the labels shifted right with start token 0 (pad).

Rows (one JSON line each, {"peer": "pytorch-cpu", "op": ..., "shape": ..., "ms": ..., "tokens_per_s": ...,
"s_per_step": ..., "peak_rss_mb": ..., "best_ms": ..., "runs": ..., "cpu_share": ..., "threads": ...}; ms, tokens_per_s
and s_per_step are the median of --runs timed runs after one warm-up, peak_rss_mb the row's own peak):
  forward         eval + no_grad forward and loss, batch 8, source 256, target 32; tokens = source + target
  train           one AdamW step (forward with dropout 0.1, loss, backward, step, zero_grad), same batch
  greedy          32 new tokens with a KV cache at batch 1 and 16: the encoder runs once, cross-attention K/V are
                  projected once, self-attention K/V are appended per step; tokens/s counts new tokens
  greedy-nocache  the same without a cache: every step re-runs the decoder over the whole prefix (and, as
                  transformers does with use_cache=False, re-projects cross-attention K/V and computes the LM head
                  at every position); the encoder still runs once
  beam            4-beam search, 32 new tokens, batch 1 and 16, cached, the self-attention cache reordered by the
                  chosen beam index each step; tokens/s counts new tokens of the returned sequences (batch x 32)
Decoding ignores EOS so every row generates exactly 32 tokens (random weights would otherwise stop at random
lengths); decoding source length is 256 unless --dec-src says otherwise.

Usage (through run-torch-peers.sh, or by hand with Debian's python where the apt torch lives):
  OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/peers/torch_t5.py [--rows forward,train]
  /usr/bin/python3 bench/peers/torch_t5.py --config tiny      # quick check of every row plus cache/beam checks
  /usr/bin/python3 bench/peers/torch_t5.py --config t5-base --rows forward,train --src 512 --tgt 128 --runs 1
                                                               # the tutorial's model and lengths (engine-cli bench t5 --sizes base)
"""
import argparse
import ctypes
import gc
import json
import math
import os
import resource
import statistics
import sys
import time

PEER = 'pytorch-cpu'
ALL_ROWS = ['forward', 'train', 'greedy', 'greedy-nocache', 'beam']

CONFIGS = {
    # t5-small (T5 v1.0): 60,506,624 parameters with the LM head tied to the embedding
    't5-small': dict(vocab=32128, d_model=512, d_kv=64, n_heads=8, d_ff=2048, n_layers=6, n_dec_layers=6,
                     buckets=32, max_distance=128, eps=1e-6, dropout=0.1),
    # t5-base: 222,903,552 parameters; the tutorial's model (rows at its settings: --src 512 --tgt 128)
    't5-base': dict(vocab=32128, d_model=768, d_kv=64, n_heads=12, d_ff=3072, n_layers=12, n_dec_layers=12,
                    buckets=32, max_distance=128, eps=1e-6, dropout=0.1),
    'tiny': dict(vocab=512, d_model=64, d_kv=16, n_heads=4, d_ff=128, n_layers=2, n_dec_layers=2,
                 buckets=32, max_distance=128, eps=1e-6, dropout=0.1),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', choices=sorted(CONFIGS), default='t5-small')
    p.add_argument('--rows', default=','.join(ALL_ROWS), help='comma list of: ' + ', '.join(ALL_ROWS))
    p.add_argument('--threads', type=int, default=2, help='intra-op threads for torch and OpenBLAS (default 2)')
    p.add_argument('--batch', type=int, default=8, help='forward/train batch (default 8)')
    p.add_argument('--src', type=int, default=256, help='forward/train source length (default 256)')
    p.add_argument('--tgt', type=int, default=32, help='forward/train target length (default 32)')
    p.add_argument('--dec-batches', default='1,16', help='decoding batch sizes (default 1,16)')
    p.add_argument('--dec-src', type=int, default=256, help='decoding source length (default 256)')
    p.add_argument('--new-tokens', type=int, default=32, help='tokens generated per sequence (default 32)')
    p.add_argument('--beams', type=int, default=4)
    p.add_argument('--nocache-batches', default='1,16', help='batch sizes for greedy-nocache (default 1,16)')
    p.add_argument('--warmup', type=int, default=1, help='untimed runs before each row (default 1)')
    p.add_argument('--runs', type=int, default=3, help='timed runs per row; the median is reported (default 3)')
    p.add_argument('--max-row-s', type=float, default=60, help='a row stops adding timed runs after this many '
                   'seconds, warm-up included (at least one timed run; default 60), so a busy machine stays bounded')
    p.add_argument('--lr', type=float, default=1e-4)
    p.add_argument('--check', action='store_true', help='also check cached == uncached greedy and 1-beam == greedy '
                   '(always on with --config tiny)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args()


ARGS = parse_args()
# Both must be in the environment before torch (and with it libgomp and OpenBLAS) loads: libgomp's default
# spin-waiting threads otherwise steal the 2 cores from OpenBLAS's own pool (bench/peers/README.md).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
os.environ.setdefault('OPENBLAS_NUM_THREADS', str(ARGS.threads))
os.environ.setdefault('OMP_NUM_THREADS', str(ARGS.threads))

import torch  # noqa: E402  (after the environment above on purpose)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# model

def relative_position_bucket(rel, bidirectional, num_buckets, max_distance):
    """T5's bucketing of key_pos - query_pos: exact buckets for small distances, log-spaced up to max_distance."""
    buckets = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).long() * num_buckets
        rel = rel.abs()
    else:
        rel = -torch.clamp(rel, max=0)  # only the past is visible; future distances all land in bucket 0
    max_exact = num_buckets // 2
    is_small = rel < max_exact
    # log(0) for rel == 0 gives -inf here; torch.where discards it (rel == 0 is always "small")
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, rel, large)


class RMSNorm(nn.Module):
    """T5LayerNorm: scale only, no mean subtraction, no bias; variance in float32."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class Attention(nn.Module):
    def __init__(self, c, is_decoder, has_bias):
        super().__init__()
        inner = c['n_heads'] * c['d_kv']
        self.h, self.dk = c['n_heads'], c['d_kv']
        self.q = nn.Linear(c['d_model'], inner, bias=False)
        self.k = nn.Linear(c['d_model'], inner, bias=False)
        self.v = nn.Linear(c['d_model'], inner, bias=False)
        self.o = nn.Linear(inner, c['d_model'], bias=False)
        self.is_decoder = is_decoder
        self.buckets, self.max_distance = c['buckets'], c['max_distance']
        self.dropout = c['dropout']
        self.rel_bias = nn.Embedding(c['buckets'], c['n_heads']) if has_bias else None

    def compute_bias(self, q_start, q_len, k_len):
        """(1, heads, q_len, k_len) bias for queries at positions q_start.. (q_start > 0 when decoding with a cache)."""
        ctx = torch.arange(q_start, q_start + q_len)[:, None]
        mem = torch.arange(k_len)[None, :]
        b = relative_position_bucket(mem - ctx, not self.is_decoder, self.buckets, self.max_distance)
        return self.rel_bias(b).permute(2, 0, 1).unsqueeze(0)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.h, self.dk).transpose(1, 2)

    def project_kv(self, x):
        return self.split(self.k(x)), self.split(self.v(x))

    def forward(self, x, bias=None, kv=None, past=None):
        """Self-attention over x (kv None; past: cached (k, v) to prepend) or cross-attention (kv: projected memory).
        Returns (output, (k, v)) so a caller can keep the self-attention cache."""
        b, n, _ = x.shape
        q = self.split(self.q(x))
        if kv is None:
            k, v = self.project_kv(x)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        else:
            k, v = kv
        scores = torch.matmul(q, k.transpose(-1, -2))  # T5: no 1/sqrt(d_kv); the init absorbs it
        if bias is not None:
            scores = scores + bias
        w = F.softmax(scores.float(), dim=-1).type_as(scores)
        w = F.dropout(w, self.dropout, self.training)
        out = torch.matmul(w, v).transpose(1, 2).reshape(b, n, self.h * self.dk)
        return self.o(out), (k, v)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wi = nn.Linear(c['d_model'], c['d_ff'], bias=False)
        self.wo = nn.Linear(c['d_ff'], c['d_model'], bias=False)
        self.dropout = c['dropout']

    def forward(self, x):
        return self.wo(F.dropout(F.relu(self.wi(x)), self.dropout, self.training))


class EncoderLayer(nn.Module):
    def __init__(self, c, first):
        super().__init__()
        self.norm1, self.attn = RMSNorm(c['d_model'], c['eps']), Attention(c, False, first)
        self.norm2, self.ff = RMSNorm(c['d_model'], c['eps']), FeedForward(c)
        self.dropout = c['dropout']

    def forward(self, h, bias):
        h = h + F.dropout(self.attn(self.norm1(h), bias)[0], self.dropout, self.training)
        return h + F.dropout(self.ff(self.norm2(h)), self.dropout, self.training)


class DecoderLayer(nn.Module):
    def __init__(self, c, first):
        super().__init__()
        self.norm1, self.self_attn = RMSNorm(c['d_model'], c['eps']), Attention(c, True, first)
        self.norm2, self.cross_attn = RMSNorm(c['d_model'], c['eps']), Attention(c, True, False)
        self.norm3, self.ff = RMSNorm(c['d_model'], c['eps']), FeedForward(c)
        self.dropout = c['dropout']

    def forward(self, h, bias, cross_kv, past=None):
        a, kv = self.self_attn(self.norm1(h), bias, past=past)
        h = h + F.dropout(a, self.dropout, self.training)
        h = h + F.dropout(self.cross_attn(self.norm2(h), kv=cross_kv)[0], self.dropout, self.training)
        return h + F.dropout(self.ff(self.norm3(h)), self.dropout, self.training), kv


class T5(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.shared = nn.Embedding(c['vocab'], c['d_model'])
        self.enc = nn.ModuleList([EncoderLayer(c, i == 0) for i in range(c['n_layers'])])
        self.enc_norm = RMSNorm(c['d_model'], c['eps'])
        self.dec = nn.ModuleList([DecoderLayer(c, i == 0) for i in range(c['n_dec_layers'])])
        self.dec_norm = RMSNorm(c['d_model'], c['eps'])
        self.dropout = c['dropout']
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        # transformers' T5 init (factor 1.0); only the scale matters for timing, but it keeps activations sane
        d, dk, h, dff = self.c['d_model'], self.c['d_kv'], self.c['n_heads'], self.c['d_ff']
        self.shared.weight.normal_(0, 1.0)
        for m in self.modules():
            if isinstance(m, Attention):
                m.q.weight.normal_(0, (d * dk) ** -0.5)
                m.k.weight.normal_(0, d ** -0.5)
                m.v.weight.normal_(0, d ** -0.5)
                m.o.weight.normal_(0, (h * dk) ** -0.5)
                if m.rel_bias is not None:
                    m.rel_bias.weight.normal_(0, d ** -0.5)
            elif isinstance(m, FeedForward):
                m.wi.weight.normal_(0, d ** -0.5)
                m.wo.weight.normal_(0, dff ** -0.5)

    def encode(self, ids):
        h = F.dropout(self.shared(ids), self.dropout, self.training)
        n = ids.shape[1]
        bias = self.enc[0].attn.compute_bias(0, n, n)  # first layer computes it, every layer shares it
        for layer in self.enc:
            h = layer(h, bias)
        return F.dropout(self.enc_norm(h), self.dropout, self.training)

    def cross_kv(self, enc_out):
        return [layer.cross_attn.project_kv(enc_out) for layer in self.dec]

    def decode(self, ids, cross_kvs, past=None):
        """ids: the new decoder tokens (all of them without a cache, the last one with). Returns (hidden, new cache)."""
        start = 0 if past is None else past[0][0].shape[2]
        n = ids.shape[1]
        h = F.dropout(self.shared(ids), self.dropout, self.training)
        bias = self.dec[0].self_attn.compute_bias(start, n, start + n)
        if n > 1:  # causal mask folded into the shared bias, as transformers does
            q_pos = torch.arange(start, start + n)[:, None]
            k_pos = torch.arange(start + n)[None, :]
            bias = bias.masked_fill(k_pos > q_pos, torch.finfo(bias.dtype).min)
        cache = []
        for i, layer in enumerate(self.dec):
            h, kv = layer(h, bias, cross_kvs[i], None if past is None else past[i])
            cache.append(kv)
        return F.dropout(self.dec_norm(h), self.dropout, self.training), cache

    def lm_head(self, h):
        return F.linear(h * self.c['d_model'] ** -0.5, self.shared.weight)  # tied head, rescaled (T5 v1.0)

    def forward(self, src, labels):
        dec_in = shift_right(labels)
        enc_out = self.encode(src)
        h, _ = self.decode(dec_in, self.cross_kv(enc_out))
        logits = self.lm_head(h)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return loss, logits


def shift_right(labels, start=0, pad=0):
    dec_in = torch.full_like(labels, pad)
    dec_in[:, 1:] = labels[:, :-1]
    dec_in[:, 0] = start
    return dec_in.masked_fill(dec_in == -100, pad)


# ---------------------------------------------------------------------------------------------------------------
# decoding

@torch.no_grad()
def greedy(model, src, new_tokens, use_cache=True):
    enc_out = model.encode(src)
    ids = torch.zeros(src.shape[0], 1, dtype=torch.long)  # decoder start token 0
    cross = model.cross_kv(enc_out) if use_cache else None
    past = None
    for _ in range(new_tokens):
        if use_cache:
            h, past = model.decode(ids[:, -1:], cross, past)
            logits = model.lm_head(h[:, -1])
        else:
            # transformers with use_cache=False: cross K/V re-projected and the LM head applied at every position
            h, _ = model.decode(ids, model.cross_kv(enc_out))
            logits = model.lm_head(h)[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, 1:]


@torch.no_grad()
def beam_search(model, src, new_tokens, beams):
    """Fixed-length beam search (no EOS, so no finished-hypothesis bookkeeping): each step keeps the `beams` best
    (sum of log-probabilities) continuations per sequence and reorders the self-attention cache to match. The
    cross-attention K/V are projected once at batch size and repeated per beam; they need no reordering because a
    beam index never leaves its own sequence, whose beams share one encoder output."""
    bsz = src.shape[0]
    enc_out = model.encode(src)
    cross = [(k.repeat_interleave(beams, 0), v.repeat_interleave(beams, 0)) for k, v in model.cross_kv(enc_out)]
    ids = torch.zeros(bsz * beams, 1, dtype=torch.long)
    scores = torch.zeros(bsz, beams)
    scores[:, 1:] = -1e9  # all beams start identical: only the first may expand at step 1
    scores = scores.view(-1)
    base = (torch.arange(bsz) * beams)[:, None]
    past = None
    for _ in range(new_tokens):
        h, past = model.decode(ids[:, -1:], cross, past)
        logp = F.log_softmax(model.lm_head(h[:, -1]), dim=-1)
        vocab = logp.shape[-1]
        cand = (logp + scores[:, None]).view(bsz, beams * vocab)
        top, idx = cand.topk(beams, dim=1)  # sorted: beam 0 is the best
        beam_idx = (idx // vocab + base).view(-1)
        ids = torch.cat([ids.index_select(0, beam_idx), (idx % vocab).view(-1, 1)], dim=1)
        past = [(k.index_select(0, beam_idx), v.index_select(0, beam_idx)) for k, v in past]
        scores = top.view(-1)
    return ids.view(bsz, beams, -1)[:, 0, 1:], scores.view(bsz, beams)[:, 0]


# ---------------------------------------------------------------------------------------------------------------
# measurement

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


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark (VmHWM) so each row reports its own peak; Linux >= 4.0. Freed memory goes
    back to the system first (glibc keeps freed heap pages otherwise, and the train step's 2+ GB would count in
    every later row)."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_mb(reset_ok):
    if reset_ok:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # whole-process peak, kB on Linux


def timed(fn, warm=None):
    """(median, best) seconds of ARGS.runs runs (fewer past --max-row-s) after ARGS.warmup untimed ones, the number of
    timed runs, and the peak RSS over all of them. warm: a cheaper warm-up (decoding warms up on 4 new tokens: the
    same shapes and code paths, without doubling the time of the slow rows)."""
    reset_ok = reset_peak_rss()
    start = time.perf_counter()
    for _ in range(ARGS.warmup):
        (warm or fn)()
    times = []
    cpu0 = time.process_time()
    while len(times) < ARGS.runs and (not times or time.perf_counter() - start < ARGS.max_row_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    # process CPU seconds per wall second per thread: near 1 for BLAS-bound rows on idle cores; far below 1 when
    # other work holds the cores (or in single-threaded Python overhead between small ops)
    share = (time.process_time() - cpu0) / sum(times) / torch.get_num_threads()
    return (statistics.median(times), min(times), len(times), share), peak_rss_mb(reset_ok)


def emit(op, shape, secs, tokens, rss, **extra):
    """secs: (median, best, runs, cpu share); the figures are the median's; best_ms and cpu_share hint at how much
    other work on the cores cost."""
    med, best, runs, share = secs
    row = {'peer': PEER, 'op': op, 'shape': shape, 'ms': round(med * 1e3, 1),
           'tokens_per_s': round(tokens / med, 1), 's_per_step': round(med, 3), 'peak_rss_mb': rss,
           'best_ms': round(best * 1e3, 1), 'runs': runs, 'cpu_share': round(share, 2)}
    row.update(extra)
    row['threads'] = torch.get_num_threads()
    print(json.dumps(row), flush=True)


def random_batch(bsz, n, vocab):
    return torch.randint(1, vocab, (bsz, n))  # 0 is pad / decoder start


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(ARGS.seed)
    c = dict(CONFIGS[ARGS.config])
    name = ARGS.config
    blas = blas_check()
    model = T5(c)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'# torch {torch.__version__}, blas {blas}, threads {torch.get_num_threads()}, '
          f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY")}, {name}: {n_params:,} parameters', file=sys.stderr)
    print(json.dumps({'peer': PEER, 'op': 'params', 'config': name, 'params': n_params}), flush=True)
    rows = ARGS.rows.split(',')
    unknown = [r for r in rows if r not in ALL_ROWS]
    if unknown:
        sys.exit(f'unknown rows {unknown}; choose from {ALL_ROWS}')
    v = c['vocab']

    if ARGS.check or name == 'tiny':
        check(model, v)

    if 'forward' in rows:
        src, labels = random_batch(ARGS.batch, ARGS.src, v), random_batch(ARGS.batch, ARGS.tgt, v)
        model.eval()

        def fwd():
            with torch.no_grad():
                model(src, labels)
        secs, rss = timed(fwd)
        emit('t5-forward', f'{name} b{ARGS.batch} src{ARGS.src} tgt{ARGS.tgt}', secs,
             ARGS.batch * (ARGS.src + ARGS.tgt), rss)

    if 'train' in rows:
        src, labels = random_batch(ARGS.batch, ARGS.src, v), random_batch(ARGS.batch, ARGS.tgt, v)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=ARGS.lr)  # weight_decay 0.01, torch's defaults

        def step():
            loss, _ = model(src, labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        secs, rss = timed(step)
        emit('t5-train-step', f'{name} b{ARGS.batch} src{ARGS.src} tgt{ARGS.tgt} adamw dropout{c["dropout"]}',
             secs, ARGS.batch * (ARGS.src + ARGS.tgt), rss)
        del opt
        model.zero_grad(set_to_none=True)

    model.eval()
    n_new = ARGS.new_tokens
    n_warm = min(n_new, 4)
    dec_batches = [int(b) for b in ARGS.dec_batches.split(',') if b]
    if 'greedy' in rows:
        for b in dec_batches:
            src = random_batch(b, ARGS.dec_src, v)
            secs, rss = timed(lambda: greedy(model, src, n_new, True), lambda: greedy(model, src, n_warm, True))
            emit('t5-greedy', f'{name} b{b} src{ARGS.dec_src} new{n_new} kv-cache', secs, b * n_new, rss)
    if 'greedy-nocache' in rows:
        for b in [int(b) for b in ARGS.nocache_batches.split(',') if b]:
            src = random_batch(b, ARGS.dec_src, v)
            secs, rss = timed(lambda: greedy(model, src, n_new, False), lambda: greedy(model, src, n_warm, False))
            emit('t5-greedy-nocache', f'{name} b{b} src{ARGS.dec_src} new{n_new} no-cache', secs, b * n_new, rss)
    if 'beam' in rows:
        for b in dec_batches:
            src = random_batch(b, ARGS.dec_src, v)
            secs, rss = timed(lambda: beam_search(model, src, n_new, ARGS.beams),
                              lambda: beam_search(model, src, n_warm, ARGS.beams))
            emit('t5-beam', f'{name} b{b} src{ARGS.dec_src} new{n_new} beams{ARGS.beams} kv-cache', secs, b * n_new,
                 rss)


def check(model, vocab):
    """Cached decoding must equal recomputing the prefix; 1-beam search must equal greedy; the best beam's running
    score (cached, reordered each step) must equal its log-probability under one full uncached forward."""
    model.eval()
    src = random_batch(3, 11, vocab)
    n = 9
    a, b = greedy(model, src, n, True), greedy(model, src, n, False)
    c = beam_search(model, src, n, 1)[0]
    beams, beam_scores = beam_search(model, src, n, 3)

    def seq_logp(tokens):
        with torch.no_grad():
            enc = model.encode(src)
            dec_in = torch.cat([torch.zeros(src.shape[0], 1, dtype=torch.long), tokens[:, :-1]], dim=1)
            h, _ = model.decode(dec_in, model.cross_kv(enc))
            lp = F.log_softmax(model.lm_head(h), dim=-1)
            return lp.gather(-1, tokens[:, :, None]).squeeze(-1).sum(-1)
    # float32 sums of 9 log-probs over a 512-word vocabulary: agreement to 1e-3 relative leaves ample margin for
    # summation order, while a wrongly reordered cache changes the score by whole nats
    beam_err = float(((seq_logp(beams) - beam_scores).abs() / beam_scores.abs()).max())
    # teacher-forced on random tokens (greedy output of a random model tends to repeat one token, and T5 has no
    # position embedding, so repeated tokens would hide a wrong position bias): step-by-step cached logits against
    # one uncached forward, relative to the largest logit; float32 with another summation order stays near 1e-6
    with torch.no_grad():
        enc = model.encode(src)
        dec_in = torch.cat([torch.zeros(src.shape[0], 1, dtype=torch.long), random_batch(src.shape[0], n - 1, vocab)],
                           dim=1)
        full = model.lm_head(model.decode(dec_in, model.cross_kv(enc))[0])
        cross, past, steps = model.cross_kv(enc), None, []
        for t in range(n):
            h, past = model.decode(dec_in[:, t:t + 1], cross, past)
            steps.append(model.lm_head(h))
        logit_err = float((torch.cat(steps, dim=1) - full).abs().max() / full.abs().max())
    ok = bool(torch.equal(a, b)) and bool(torch.equal(a, c)) and beam_err < 1e-3 and logit_err < 1e-4
    print(json.dumps({'peer': PEER, 'op': 'check', 'cache_equals_nocache': bool(torch.equal(a, b)),
                      'cached_logits_rel_err': logit_err, 'beam1_equals_greedy': bool(torch.equal(a, c)),
                      'beam3_score_rel_err': beam_err}), flush=True)
    if not ok:
        sys.exit('check failed')


if __name__ == '__main__':
    main()
