// The flags every GPU command takes, and opening the device with them.
import { initGpu, type Backend, type Gpu } from '../engine/gpu.ts';
import type { Flags } from './flags.ts';

export const DEVICE_FLAGS = {
  backend: { type: 'string', arg: 'vulkan|metal|d3d12|...', help: 'Dawn backend', libraryDefault: 'T5_WEBGPU_BACKEND, else Dawn\'s choice' },
  adapter: { type: 'string', arg: 'NAME', help: 'the adapter whose name contains NAME', libraryDefault: 'T5_WEBGPU_ADAPTER, else Dawn\'s choice' },
} satisfies Flags;

export function openDevice(values: { backend?: string; adapter?: string }): Promise<Gpu> {
  return initGpu({ backend: values.backend as Backend | undefined, adapter: values.adapter });
}
