import { describe, expect, it } from 'vitest';
import { relativePositionBucket, relativePositionBuckets } from '../model/relative-position.ts';

// Expected values worked by hand from Hugging Face's `_relative_position_bucket` (t5-small: 32 buckets,
// max distance 128): bidirectional halves the buckets (16, exact below 8), causal keeps 32 (exact below 16).
describe('relative position buckets', () => {
  it('encoder (bidirectional)', () => {
    const b = (rel: number) => relativePositionBucket(rel, true, 32, 128);
    expect([0, -1, -7, 1, 7].map(b)).toEqual([0, 1, 7, 17, 23]);
    expect(b(-16)).toBe(8 + Math.trunc((Math.log(2) / Math.log(16)) * 8)); // 10
    expect(b(16)).toBe(26);
    expect(b(-32)).toBe(12); // log(4)/log(16)*8 = 4 exactly
    expect(b(-127)).toBe(15);
    expect(b(-128)).toBe(15); // clamped to the last bucket
    expect(b(5000)).toBe(31);
  });

  it('decoder (causal): future keys share bucket 0', () => {
    const b = (rel: number) => relativePositionBucket(rel, false, 32, 128);
    expect([0, 5, 100].map(b)).toEqual([0, 0, 0]);
    expect([-1, -15].map(b)).toEqual([1, 15]);
    expect(b(-20)).toBe(17);
    expect(b(-128)).toBe(31);
    expect(b(-1000)).toBe(31);
  });

  it('a decoder step with a cache sees the same row as the full matrix', () => {
    const full = relativePositionBuckets(6, 6, false, 8, 20);
    const step = relativePositionBuckets(1, 6, false, 8, 20, 5);
    expect([...step]).toEqual([...full.slice(30, 36)]);
    expect(relativePositionBuckets(2, 3, true, 8, 20).length).toBe(6);
  });
});
