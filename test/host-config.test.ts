import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { makeHomeDir, makeSystemTempDir, removeDir, repoRoot } from './helpers/server.js';

interface HostEntry {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

describe('mcp.json', () => {
  it('starts a working server exactly as an MCP host would launch it from the project directory', async () => {
    const config = JSON.parse(readFileSync(path.join(repoRoot, 'mcp.json'), 'utf8')) as { mcpServers: Record<string, HostEntry> };
    const entry = config.mcpServers['opencode-env'];
    assert.ok(entry, 'mcp.json has an opencode-env entry');
    const sandboxRoot = makeSystemTempDir('sandboxes');
    const home = makeHomeDir();
    const transport = new StdioClientTransport({
      command: entry.command,
      args: entry.args,
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', HOME: home, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot, ...entry.env },
      stderr: 'ignore',
    });
    const client = new Client({ name: 'host', version: '0' });
    try {
      await client.connect(transport);
      assert.equal(client.getServerVersion()?.name, 'opencode-env');
      const result = await client.callTool({ name: 'execute_python', arguments: { code: '21 * 2' } });
      assert.equal((result.structuredContent as { stdout: string }).stdout, '42\n');
    } finally {
      await client.close();
      removeDir(sandboxRoot);
      removeDir(home);
    }
  });
});
