// T5's relative position buckets (Hugging Face `T5Attention._relative_position_bucket`): exact buckets for
// small distances, logarithmic ones up to max_distance, the last bucket beyond. The encoder is
// bidirectional (half the buckets for keys after the query); the decoder only looks back.

/** Bucket of `memoryPosition - queryPosition`, computed in float32 as PyTorch does, so that distances on a
 * log-bucket boundary fall on the same side. */
export function relativePositionBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let bucket = 0;
  let n = numBuckets;
  let rel = relativePosition;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (rel > 0) bucket += n;
    rel = Math.abs(rel);
  } else {
    rel = -Math.min(rel, 0);
  }
  const maxExact = Math.floor(n / 2);
  if (rel < maxExact) return bucket + rel;
  const f = Math.fround;
  // torch: max_exact + (log(rel.float() / max_exact) / math.log(max_distance / max_exact) * (n - max_exact)).long()
  const logRatio = f(Math.log(f(rel / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (n - maxExact));
  const large = Math.min(maxExact + Math.trunc(scaled), n - 1);
  return bucket + large;
}

/** Buckets for queries at positions [queryOffset, queryOffset + queryLength) against keys [0, keyLength),
 * row-major [queryLength, keyLength] (a decoder step with a KV cache has queryOffset = past length). */
export function relativePositionBuckets(
  queryLength: number,
  keyLength: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
  queryOffset = 0,
): Int32Array {
  const out = new Int32Array(queryLength * keyLength);
  for (let i = 0; i < queryLength; i++) {
    for (let j = 0; j < keyLength; j++) {
      out[i * keyLength + j] = relativePositionBucket(j - (i + queryOffset), bidirectional, numBuckets, maxDistance);
    }
  }
  return out;
}
