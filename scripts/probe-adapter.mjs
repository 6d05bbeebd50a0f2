// Exit 0 when a WebGPU adapter can be had in this process, 1 otherwise; prints what was found.
// Used by scripts/setup.sh before and after installing Mesa's lavapipe Vulkan driver.
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
process.env.XDG_RUNTIME_DIR ??= '/tmp';
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.log('no WebGPU adapter');
  process.exit(1);
}
const info = adapter.info ?? {};
console.log(`WebGPU adapter: ${info.vendor ?? '?'} ${info.device || info.description || '?'} (${info.architecture ?? ''})`);
process.exit(0);
