import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

const runTag = randomBytes(6).toString('hex');

/** Distinctive fake keys: any occurrence anywhere in the run's output is a leak. */
export const KEYS = {
  openai: `sk-reliability-openai-${runTag}`,
  vllm: `sk-reliability-vllm-${runTag}`,
  caller: `sk-reliability-caller-${runTag}`,
  /** Credentials a caller puts inside base_url (userinfo and query), which must be scrubbed as well. */
  urlPassword: `sk-reliability-urlpass-${runTag}`,
  urlQuery: `sk-reliability-urlquery-${runTag}`,
} as const;

/** The server environment every case gets: the named endpoints' keys are configured for the whole run. */
export const KEY_ENV = { OPENAI_API_KEY: KEYS.openai, VLLM_API_KEY: KEYS.vllm };

interface Leak {
  key: string;
  where: string;
}

/** Looks for every key in everything the harness saw: tool results, resources, stderr, stored files, upstream bodies. */
class KeyScan {
  readonly leaks: Leak[] = [];
  items = 0;
  bytes = 0;
  private readonly needles = Object.entries(KEYS).map(([name, value]) => ({ name, bytes: Buffer.from(value) }));

  scan(where: string, data: string | Buffer): void {
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    this.items += 1;
    this.bytes += buffer.length;
    for (const needle of this.needles) if (buffer.includes(needle.bytes)) this.leaks.push({ key: needle.name, where });
  }

  /** Every file under `dir` (trace store, logs), read whole. */
  async scanTree(dir: string, label: string): Promise<void> {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      const content = await readFile(file).catch(() => null);
      if (content) this.scan(`${label}: ${path.relative(dir, file)}`, content);
    }
  }
}

export const keyScan = new KeyScan();
