// Central finite differences, the float64 check of every backward rule: (loss(x + h e_i) - loss(x - h e_i)) / 2h.

/**
 * The gradient of `loss` at `x` by central differences. `x` is perturbed in place, one element at a time, and
 * restored; `loss` sees it through its argument or through a closure over an array that holds it.
 */
export function centralDiff(x: Float64Array, loss: (x: Float64Array) => number, h: number): Float64Array {
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i]!;
    x[i] = keep + h;
    const up = loss(x);
    x[i] = keep - h;
    const down = loss(x);
    x[i] = keep;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}
