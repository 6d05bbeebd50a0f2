// Checkpoint bookkeeping: the top-k ranking as Lightning's ModelCheckpoint(monitor="val_loss", mode="min")
// keeps it, and the crash-safety rules of folder writes (complete folders only; last.old/ found after a kill
// between saveLast's two renames).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findResumeFolder, rankCheckpoint, writeFolderAtomic, type CheckpointEntry } from '../train/checkpoint.ts';

const dir = mkdtempSync(join(tmpdir(), 'checkpoint-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const e = (step: number, valLoss: number): CheckpointEntry => ({ name: `s${step}`, step, epoch: 1, valLoss });

describe('rankCheckpoint', () => {
  it('keeps the k lowest losses, best first, and says what falls out', () => {
    let kept: CheckpointEntry[] = [];
    const log: string[] = [];
    for (const [step, loss] of [[1, 3], [2, 2], [3, 2.5], [4, 4], [5, 1]] as const) {
      const r = rankCheckpoint(kept, e(step, loss), 2);
      log.push(`${step}:${r.accepted ? 'in' : 'out'}:${r.evicted.map((x) => x.step).join('')}`);
      kept = r.keep;
    }
    expect(log).toEqual(['1:in:', '2:in:', '3:in:1', '4:out:', '5:in:3']);
    expect(kept.map((x) => x.step)).toEqual([5, 2]);
  });
  it('an equal loss does not replace the older checkpoint; NaN and k=0 never enter', () => {
    const kept = [e(1, 1), e(2, 2)];
    expect(rankCheckpoint(kept, e(3, 2), 2).accepted).toBe(false);
    expect(rankCheckpoint(kept, e(3, NaN), 2).accepted).toBe(false);
    expect(rankCheckpoint([], e(3, 1), 0).accepted).toBe(false);
  });
});

describe('folder writes', () => {
  it('a failed write leaves no folder and no temp folder; a good one appears whole', async () => {
    await expect(writeFolderAtomic(dir, 'x', async (d) => {
      writeFileSync(join(d, 'a'), '1');
      throw new Error('killed');
    })).rejects.toThrow('killed');
    expect(readdirSync(dir)).toEqual([]);
    const p = await writeFolderAtomic(dir, 'x', async (d) => writeFileSync(join(d, 'a'), '1'));
    expect(existsSync(join(p, 'a'))).toBe(true);
    // replacing keeps only the new content
    await writeFolderAtomic(dir, 'x', async (d) => writeFileSync(join(d, 'b'), '2'));
    expect(readdirSync(join(dir, 'x'))).toEqual(['b']);
    expect(readdirSync(dir)).toEqual(['x']);
  });
  it('findResumeFolder prefers last/, falls back to last.old/, and ignores incomplete folders', () => {
    const out = join(dir, 'run');
    const make = (name: string, files: string[]) => {
      mkdirSync(join(out, name), { recursive: true });
      for (const f of files) writeFileSync(join(out, name, f), '{}');
    };
    expect(findResumeFolder(out)).toBe(null);
    make('last.old', ['trainer_state.json', 'optimizer.safetensors']);
    expect(findResumeFolder(out)).toBe(join(out, 'last.old'));
    make('last', ['trainer_state.json']);
    expect(findResumeFolder(out)).toBe(join(out, 'last.old'));
    make('last', ['optimizer.safetensors']);
    expect(findResumeFolder(out)).toBe(join(out, 'last'));
  });
});
