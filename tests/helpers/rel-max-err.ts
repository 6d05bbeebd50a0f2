// The error measure of the kernel tests that compare a whole output with a float64 reference.

/**
 * max |got - ref| / max(floor, max |ref|): the worst error relative to the largest reference value, Infinity when
 * any element is NaN (a NaN would otherwise slip through Math.max).
 */
export function relMaxErr(got: ArrayLike<number>, ref: ArrayLike<number>, floor = 0): number {
  let diff = 0;
  let max = floor;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i]! - ref[i]!);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    max = Math.max(max, Math.abs(ref[i]!));
  }
  return diff / max;
}
