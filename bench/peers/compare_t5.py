"""Ratio table for compare-t5.sh: our bench rows (engine-cli bench --json t5 generate) against torch_t5.py's
rows taken before and after them.

usage: compare_t5.py TORCH_BEFORE.jsonl OURS.jsonl TORCH_AFTER.jsonl
"""
import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith('{')]


def torch_rates(path):
    """tokens/s by row name: forward, train, greedy b1, ..."""
    out = {}
    for r in rows(path):
        if r['op'] == 't5-forward':
            out['forward'] = r['tokens_per_s']
        elif r['op'] == 't5-train-step':
            out['train'] = r['tokens_per_s']
        elif r['op'] in ('t5-greedy', 't5-beam'):
            batch = r['shape'].split()[1]  # 't5-small b16 src128 ...'
            out[('greedy ' if r['op'] == 't5-greedy' else '4 beams ') + batch] = r['tokens_per_s']
    return out


def our_rates(path):
    """(tokens/s, peak MiB) by the same row names"""
    out = {}
    for r in rows(path):
        peak = r.get('peakBytes', 0) / 2**20
        if r['op'] == 't5-forward':
            out['forward'] = (r['tokensPerSecond'], peak)
        elif r['op'] == 't5-train-step':
            out['train'] = (r['tokensPerSecond'], peak)
        elif r['op'] == 'generate':
            parts = r['shape'].split()  # 't5-small b16 s128 new32 beam4'
            mode = {'greedy': 'greedy ', 'beam4': '4 beams '}.get(parts[4])
            if mode:
                out[mode + parts[1]] = (r['tokensPerSecond'], peak)
    return out


def main():
    before, ours, after = torch_rates(sys.argv[1]), our_rates(sys.argv[2]), torch_rates(sys.argv[3])
    print('| row | ours, tokens/s | PyTorch before / after | ours / PyTorch | our peak, MiB |')
    print('|---|---|---|---|---|')
    for name, (rate, peak) in ours.items():
        peers = [x for x in (before.get(name), after.get(name)) if x]
        if not peers:
            continue
        ratios = sorted(rate / x for x in peers)
        span = f'{ratios[0]:.2f}' if len(ratios) == 1 or f'{ratios[0]:.2f}' == f'{ratios[-1]:.2f}' else f'{ratios[0]:.2f}-{ratios[-1]:.2f}'
        theirs = ' / '.join(f'{x:,.1f}' for x in peers)
        print(f'| {name} | {rate:,.1f} | {theirs} | {span} | {peak:,.0f} |')


if __name__ == '__main__':
    main()
