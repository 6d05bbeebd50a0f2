// The WGSL entry point of a kernel launched over a flat index space with engine/runtime.ts's grid1D, which folds
// more workgroups than one dimension allows into a second one: the invocation's flat index is
// gid.x + gid.y * nwg.x * workgroup, and the invocations at or past the end (the last workgroup's spare lanes,
// the fold's spare workgroups) return at once.

/** `@compute ... fn main(...) {` with `index` the flat invocation index and a return from `bound` on; the kernel's
 * body and closing brace follow it. */
export function flatGridEntry(workgroup: number, index: string, bound: string): string {
  return /* wgsl */ `@compute @workgroup_size(${workgroup})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let ${index} = gid.x + gid.y * nwg.x * ${workgroup}u;
  if (${index} >= ${bound}) { return; }`;
}
