import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { MCP_HOSTS, mcpHostConfig, type McpHost, type McpServerEntry } from '../src/commands/mcp-config.js';
import { cliPath, makeHomeDir, makeSystemTempDir, removeDir } from './helpers/server.js';

const execFileAsync = promisify(execFile);

/** Runs `opencode-env mcp-config` from a directory that is not the checkout, as a user would. */
async function mcpConfig(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const cwd = makeSystemTempDir('cwd');
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [cliPath, 'mcp-config', ...args], { cwd });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: unknown };
    return { stdout: failed.stdout ?? '', stderr: failed.stderr ?? '', code: typeof failed.code === 'number' ? failed.code : -1 };
  } finally {
    removeDir(cwd);
  }
}

function serverEntry(config: unknown): McpServerEntry {
  const { mcpServers, servers } = config as { mcpServers?: Record<string, McpServerEntry>; servers?: Record<string, McpServerEntry> };
  const entry = (mcpServers ?? servers)?.['opencode-env'];
  assert.ok(entry, `no opencode-env entry in ${JSON.stringify(config)}`);
  return entry;
}

/** A fragment of the stderr hint per host, so each host is told where its file lives. */
const CONFIG_FILE_HINT: Record<McpHost, string> = {
  'claude-desktop': 'claude_desktop_config.json',
  'claude-code': 'claude mcp add-json opencode-env',
  cursor: '.cursor/mcp.json',
  vscode: '.vscode/mcp.json',
};

describe('mcp-config', () => {
  it('shapes each host entry with absolute paths', () => {
    const paths = { nodePath: '/opt/node/bin/node', cliPath: '/opt/opencode-env/dist/cli.js' };
    for (const host of MCP_HOSTS) {
      const config = mcpHostConfig(host, paths);
      assert.deepEqual(Object.keys(config), [host === 'vscode' ? 'servers' : 'mcpServers'], host);
      const entry = serverEntry(config);
      assert.equal(entry.command, paths.nodePath, host);
      assert.deepEqual(entry.args, [paths.cliPath, 'stdio'], host);
      assert.ok(path.isAbsolute(entry.args[0] ?? ''), host);
      assert.deepEqual(entry.env, { OPENCODE_ENV_LOG_LEVEL: 'info' }, host);
      // Claude Code and VS Code document `type`; Claude Desktop and Cursor infer stdio from `command`.
      assert.equal(entry.type, host === 'claude-code' || host === 'vscode' ? 'stdio' : undefined, host);
    }
  });

  it('defaults to Claude Desktop', async () => {
    const { stdout, code } = await mcpConfig([]);
    assert.equal(code, 0);
    assert.deepEqual(Object.keys(JSON.parse(stdout) as object), ['mcpServers']);
    assert.equal(serverEntry(JSON.parse(stdout)).type, undefined);
  });

  it('rejects an unknown host with exit code 2, naming the allowed ones', async () => {
    const { stdout, stderr, code } = await mcpConfig(['--host', 'emacs']);
    assert.equal(code, 2);
    assert.equal(stdout, '');
    for (const host of MCP_HOSTS) assert.match(stderr, new RegExp(host));
  });

  for (const host of MCP_HOSTS) {
    it(`--host ${host} starts a working server exactly as that host would, from another directory`, async () => {
      const { stdout, stderr, code } = await mcpConfig(['--host', host]);
      assert.equal(code, 0, stderr);
      assert.ok(stderr.includes(CONFIG_FILE_HINT[host]), `stderr says where the config goes: ${stderr}`);
      const entry = serverEntry(JSON.parse(stdout));
      assert.ok(path.isAbsolute(entry.command) && path.isAbsolute(entry.args[0] ?? ''), JSON.stringify(entry));

      const hostCwd = makeSystemTempDir('host-cwd');
      const sandboxRoot = makeSystemTempDir('sandboxes');
      const home = makeHomeDir();
      const transport = new StdioClientTransport({
        command: entry.command,
        args: entry.args,
        cwd: hostCwd,
        env: { PATH: process.env.PATH ?? '', HOME: home, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot, ...entry.env },
        stderr: 'ignore',
      });
      const client = new Client({ name: host, version: '0' });
      try {
        await client.connect(transport);
        assert.equal(client.getServerVersion()?.name, 'opencode-env');
        const result = await client.callTool({ name: 'execute_python', arguments: { code: '21 * 2' } });
        assert.equal((result.structuredContent as { stdout: string }).stdout, '42\n');
      } finally {
        await client.close();
        for (const dir of [hostCwd, sandboxRoot, home]) removeDir(dir);
      }
    });
  }
});
