// Every elementwise op, declared once. `elementwise.ts` turns each row into a WGSL kernel (same-shape vec4
// fast path and a broadcasting path), an autograd rule and an exported function; `tests/elementwise.test.ts`
// turns each row into forward and finite-difference tests. Adding an op is adding a row.
//
// Expression conventions (WGSL, evaluated on `T`, which is `f32` or `vec4<f32>` depending on the kernel):
//   inputs are named by `args` (x; a, b; c, a, b), `y` is the forward output, `g` the incoming gradient,
//   `s` the op's scalar argument (an f32 uniform). Write constants so they work for both types: `x * 0.5`
//   is fine for vec4; functions that need matching types take `T(0.0)`.
// A backward expression gives d(loss)/d(input) at the output's shape; a broadcast input's gradient is then
// summed back to its own shape. `null` marks an input without a gradient (where's condition).

export interface EwOp {
  name: string;
  args: readonly string[];
  /** the op takes one scalar (`s`): scale, addScalar */
  scalar?: boolean;
  fwd: string;
  bwd: ReadonlyArray<string | null>;
  /** float64 reference of the forward */
  ref: (v: number[], s: number) => number;
  /** max error allowed against the float64 reference, relative to max(1, |ref|); the reason is in `why` */
  tol: number;
  why: string;
  /** the range random test inputs are drawn from (log and sqrt need positive inputs) */
  domain?: [number, number];
  /** inputs where f is not differentiable are moved at least this far from the kink before finite differences */
  kinks?: (v: number[]) => boolean;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** gelu_new's cubic coefficient (Hugging Face NewGELUActivation). */
const GELU_C = 0.044715;
/** tanh(±10) is ±1 in f32; clamping keeps drivers that build tanh from exp(2x) away from inf/inf = NaN. */
const TANH_CLAMP = 10;

// WGSL helpers prepended to every kernel that uses them (`T` is the kernel's element type).
const EW_HELPERS: Record<string, string> = {
  tanh_safe: `fn tanh_safe(v: T) -> T { return tanh(clamp(v, T(-${TANH_CLAMP}.0), T(${TANH_CLAMP}.0))); }`,
  sigmoid_f: `fn sigmoid_f(v: T) -> T { return T(1.0) / (T(1.0) + exp(-v)); }`,
  // 0.5x(1 + tanh(u)) = x * sigmoid(2u): the same function without the cancellation in 1 + tanh(u) for
  // negative x (relative error there grows as 1/(1 + tanh u) with the tanh form)
  gelu_f: `fn gelu_f(v: T) -> T {
  let u2 = ${2 * SQRT_2_OVER_PI} * (v + ${GELU_C} * v * v * v);
  return v / (T(1.0) + exp(-u2));
}`,
  // d/dx of the tanh form 0.5x(1 + tanh u) as the matmul epilogue computes it (matmul.wgsl.ts activationFn):
  // 0.5(1 + t) + 0.5x(1 - t^2)u', t = tanh(u) with u clamped as there
  gelu_tanh_d: `fn gelu_tanh_d(v: T) -> T {
  let t = tanh(clamp(${SQRT_2_OVER_PI} * (v + ${GELU_C} * v * v * v), T(-${TANH_CLAMP}.0), T(${TANH_CLAMP}.0)));
  return 0.5 * (T(1.0) + t) + 0.5 * v * (T(1.0) - t * t) * ${SQRT_2_OVER_PI} * (T(1.0) + ${3 * GELU_C} * v * v);
}`,
  // d/dx x*s(2u) = s + x * s(1 - s) * 2u'
  gelu_d: `fn gelu_d(v: T) -> T {
  let s = T(1.0) / (T(1.0) + exp(-${2 * SQRT_2_OVER_PI} * (v + ${GELU_C} * v * v * v)));
  return s + v * s * (T(1.0) - s) * ${2 * SQRT_2_OVER_PI} * (T(1.0) + ${3 * GELU_C} * v * v);
}`,
};

const tanhRef = (v: number) => Math.tanh(v);
const geluRef = (v: number) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v ** 3)));

const F32_ROUNDING = 'f32 arithmetic on exact f32 inputs: one or two roundings, 2^-23 relative each';
const TRANSCENDENTAL =
  'WGSL allows exp/log/tanh a few ulp, plus the rounding of the argument: 1e-5 of max(1, |ref|)';

export const EW_TABLE: readonly EwOp[] = [
  { name: 'add', args: ['a', 'b'], fwd: 'a + b', bwd: ['g', 'g'], ref: ([a, b]) => a! + b!, tol: 3e-7, why: F32_ROUNDING },
  { name: 'sub', args: ['a', 'b'], fwd: 'a - b', bwd: ['g', '-g'], ref: ([a, b]) => a! - b!, tol: 3e-7, why: F32_ROUNDING },
  { name: 'mul', args: ['a', 'b'], fwd: 'a * b', bwd: ['g * b', 'g * a'], ref: ([a, b]) => a! * b!, tol: 3e-7, why: F32_ROUNDING },
  {
    name: 'div', args: ['a', 'b'], fwd: 'a / b', bwd: ['g / b', '-g * y / b'], ref: ([a, b]) => a! / b!,
    tol: 1e-6, why: 'WGSL division may be 2.5 ulp (not correctly rounded)', domain: [0.5, 2],
  },
  { name: 'neg', args: ['x'], fwd: '-x', bwd: ['-g'], ref: ([x]) => -x!, tol: 0, why: 'exact' },
  { name: 'scale', args: ['x'], scalar: true, fwd: 'x * s', bwd: ['g * s'], ref: ([x], s) => x! * s, tol: 3e-7, why: F32_ROUNDING },
  { name: 'addScalar', args: ['x'], scalar: true, fwd: 'x + s', bwd: ['g'], ref: ([x], s) => x! + s, tol: 3e-7, why: F32_ROUNDING },
  {
    name: 'relu', args: ['x'], fwd: 'max(x, T(0.0))', bwd: ['select(T(0.0), g, x > T(0.0))'], ref: ([x]) => Math.max(x!, 0),
    tol: 0, why: 'exact', kinks: ([x]) => Math.abs(x!) < 1e-2,
  },
  {
    name: 'gelu', args: ['x'], fwd: 'gelu_f(x)', bwd: ['g * gelu_d(x)'], ref: ([x]) => geluRef(x!),
    tol: 2e-6, why: 'exp a few ulp, the roundings of the cubic and the division: 2e-6 of max(1, |ref|)', domain: [-5, 5],
  },
  { name: 'exp', args: ['x'], fwd: 'exp(x)', bwd: ['g * y'], ref: ([x]) => Math.exp(x!), tol: 1e-5, why: TRANSCENDENTAL, domain: [-4, 4] },
  { name: 'log', args: ['x'], fwd: 'log(x)', bwd: ['g / x'], ref: ([x]) => Math.log(x!), tol: 1e-5, why: TRANSCENDENTAL, domain: [0.1, 5] },
  { name: 'sqrt', args: ['x'], fwd: 'sqrt(x)', bwd: ['g * 0.5 / y'], ref: ([x]) => Math.sqrt(x!), tol: 1e-6, why: 'sqrt within 2.5 ulp', domain: [0.1, 5] },
  {
    name: 'rsqrt', args: ['x'], fwd: 'inverseSqrt(x)', bwd: ['g * -0.5 * y * y * y'], ref: ([x]) => 1 / Math.sqrt(x!),
    tol: 1e-5, why: 'inverseSqrt is allowed 2 ulp, and drivers use an approximation plus a Newton step', domain: [0.1, 5],
  },
  { name: 'square', args: ['x'], fwd: 'x * x', bwd: ['g * 2.0 * x'], ref: ([x]) => x! * x!, tol: 3e-7, why: F32_ROUNDING },
  { name: 'tanh', args: ['x'], fwd: 'tanh_safe(x)', bwd: ['g * (T(1.0) - y * y)'], ref: ([x]) => tanhRef(x!), tol: 1e-5, why: TRANSCENDENTAL },
  {
    name: 'sigmoid', args: ['x'], fwd: 'sigmoid_f(x)', bwd: ['g * y * (T(1.0) - y)'], ref: ([x]) => 1 / (1 + Math.exp(-x!)),
    tol: 1e-5, why: TRANSCENDENTAL, domain: [-8, 8],
  },
  {
    // HF's ACT2FN["silu"] (nn.SiLU): UL2-style T5 ("gated-silu"); d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
    name: 'silu', args: ['x'], fwd: 'x * sigmoid_f(x)', bwd: ['g * sigmoid_f(x) * (T(1.0) + x * (T(1.0) - sigmoid_f(x)))'],
    ref: ([x]) => x! / (1 + Math.exp(-x!)), tol: 1e-5, why: TRANSCENDENTAL, domain: [-8, 8],
  },
  {
    // PyTorch's maximum/minimum backward splits the gradient in half on ties
    name: 'maximum', args: ['a', 'b'], fwd: 'max(a, b)',
    bwd: ['select(select(T(0.0), g, a > b), g * 0.5, a == b)', 'select(select(T(0.0), g, b > a), g * 0.5, a == b)'],
    ref: ([a, b]) => Math.max(a!, b!), tol: 0, why: 'exact', kinks: ([a, b]) => Math.abs(a! - b!) < 1e-2,
  },
  {
    name: 'minimum', args: ['a', 'b'], fwd: 'min(a, b)',
    bwd: ['select(select(T(0.0), g, a < b), g * 0.5, a == b)', 'select(select(T(0.0), g, b < a), g * 0.5, a == b)'],
    ref: ([a, b]) => Math.min(a!, b!), tol: 0, why: 'exact', kinks: ([a, b]) => Math.abs(a! - b!) < 1e-2,
  },
  {
    // torch.where(cond, a, b) with cond nonzero meaning true; cond may be f32 or i32 (a mask)
    name: 'where', args: ['c', 'a', 'b'], fwd: 'select(b, a, c != T(0.0))',
    bwd: [null, 'select(T(0.0), g, c != T(0.0))', 'select(g, T(0.0), c != T(0.0))'],
    ref: ([c, a, b]) => (c !== 0 ? a! : b!), tol: 0, why: 'exact',
  },
];

export function ewOp(name: string): EwOp {
  const op = EW_TABLE.find((o) => o.name === name);
  if (!op) throw new Error(`elementwise: no op '${name}' in the table`);
  return op;
}

/** Names of the identifiers an expression uses, to bind only the tensors it reads. */
export function usesIdent(expr: string, ident: string): boolean {
  return new RegExp(`(^|[^A-Za-z0-9_.])${ident}($|[^A-Za-z0-9_])`).test(expr);
}

/** The helper functions an expression calls (no helper calls another). */
export function helpersFor(exprs: string[]): string[] {
  return Object.keys(EW_HELPERS).filter((name) => exprs.some((e) => e.includes(`${name}(`))).map((n) => EW_HELPERS[n]!);
}
