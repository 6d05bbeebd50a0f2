// engine-cli serve --model DIR: the web page and the model folder over HTTP (tasks/web-server.ts does the work).
import { resolveModel } from '../hf/hub.ts';
import { startServer, type ServeOptions } from '../tasks/web-server.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

const USAGE = 'usage: engine-cli serve --model DIR|HUB_ID [--port 8080] [--host 127.0.0.1]\n';

const SERVE_FLAGS = {
  model: { type: 'string', arg: 'DIR|HUB_ID', required: true, help: 'a Hugging Face T5 folder or Hub id' },
  port: { type: 'int', min: 0, default: 8080, help: 'TCP port (0: any free one)', to: 'port' },
  host: { type: 'string', arg: 'ADDRESS', default: '127.0.0.1', help: 'address to listen on; loopback keeps the folder private', to: 'host' },
} satisfies Flags<ServeOptions>;

export async function serveCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('serve', USAGE, SERVE_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
  if (values.port > 65535) throw new Error(`serve: --port: expected an integer 0..65535, got ${values.port}`);
  const dir = await resolveModel(values.model);
  const { url } = await startServer({ ...flagOptions<ServeOptions>(SERVE_FLAGS, values), dir });
  process.stdout.write(`serving ${dir} at ${url} (Ctrl-C stops)\n`);
  await new Promise(() => {}); // until the process is stopped
}
