// The flags every GPU command takes, and opening the device with them.
import { initGpu, type Backend, type Gpu } from '../engine/gpu.ts';

export const DEVICE_FLAGS = {
  backend: { type: 'string' },
  adapter: { type: 'string' },
} as const;

export function openDevice(values: { backend?: string; adapter?: string }): Promise<Gpu> {
  return initGpu({ backend: values.backend as Backend | undefined, adapter: values.adapter });
}
