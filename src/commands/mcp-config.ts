import path from 'node:path';
import { packageRoot } from '../paths.js';

/** The MCP hosts whose config-file shape we know. */
export const MCP_HOSTS = ['claude-desktop', 'claude-code', 'cursor', 'vscode'] as const;
export type McpHost = (typeof MCP_HOSTS)[number];

function isMcpHost(value: string): value is McpHost {
  return (MCP_HOSTS as readonly string[]).includes(value);
}

export interface McpServerEntry {
  type?: 'stdio';
  command: string;
  args: string[];
  env: Record<string, string>;
}

export type McpHostConfig = { mcpServers: Record<string, McpServerEntry> } | { servers: Record<string, McpServerEntry> };

const SERVER_NAME = 'opencode-env';

/**
 * The config a host needs to launch this server. Both paths are absolute because hosts start servers
 * from a working directory of their own choosing, and GUI hosts often have a PATH without our `node`
 * (nvm, Homebrew), so `"command": "node"` would find a different Node or none.
 */
export function mcpHostConfig(host: McpHost, paths: { nodePath: string; cliPath: string }): McpHostConfig {
  const launch = { command: paths.nodePath, args: [paths.cliPath, 'stdio'], env: { OPENCODE_ENV_LOG_LEVEL: 'info' } };
  switch (host) {
    // Claude Desktop and Cursor infer stdio from `command`; an explicit `type` is not part of their documented shape.
    case 'claude-desktop':
    case 'cursor':
      return { mcpServers: { [SERVER_NAME]: launch } };
    case 'claude-code':
      return { mcpServers: { [SERVER_NAME]: { type: 'stdio', ...launch } } };
    case 'vscode':
      return { servers: { [SERVER_NAME]: { type: 'stdio', ...launch } } };
  }
}

function claudeDesktopConfigPath(): string {
  if (process.platform === 'darwin') return '~/Library/Application Support/Claude/claude_desktop_config.json';
  if (process.platform === 'win32') return '%APPDATA%\\Claude\\claude_desktop_config.json';
  return '~/.config/Claude/claude_desktop_config.json';
}

function whereItGoes(host: McpHost, config: McpHostConfig): string {
  switch (host) {
    case 'claude-desktop':
      return `merge this into "mcpServers" in ${claudeDesktopConfigPath()}, then restart Claude Desktop`;
    case 'claude-code': {
      // `claude mcp add-json` takes the inner entry, not the whole file, so spell out the exact command.
      const entry = 'mcpServers' in config ? config.mcpServers[SERVER_NAME] : config.servers[SERVER_NAME];
      return `merge this into .mcp.json in your project, or run: claude mcp add-json ${SERVER_NAME} '${JSON.stringify(entry)}'`;
    }
    case 'cursor':
      return 'merge this into "mcpServers" in ~/.cursor/mcp.json (all projects) or .cursor/mcp.json (one project)';
    case 'vscode':
      return 'merge this into "servers" in .vscode/mcp.json in your workspace';
  }
}

/**
 * `opencode-env mcp-config [--host H]`: the JSON goes to stdout alone so `> file` or a pipe gets valid
 * JSON; the hint about where it belongs goes to stderr. Returns the exit code (2 for an unknown host,
 * matching the CLI's code for a usage error) instead of throwing, so the CLI only has to set it.
 */
export function runMcpConfigCommand(options: { host?: string }): number {
  const host = options.host ?? 'claude-desktop';
  if (!isMcpHost(host)) {
    process.stderr.write(`opencode-env: unknown --host "${host}"; expected one of: ${MCP_HOSTS.join(', ')}\n`);
    return 2;
  }
  const config = mcpHostConfig(host, { nodePath: process.execPath, cliPath: path.join(packageRoot, 'dist', 'cli.js') });
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.stderr.write(`${whereItGoes(host, config)}\n`);
  return 0;
}
