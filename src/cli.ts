#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError } from './config.js';
import { createRuntime } from './runtime.js';
import { packageVersion } from './server.js';
import { serveStdio } from './transports/stdio.js';

const program = new Command()
  .name('opencode-env')
  .description('MCP server for sandboxed coding-agent rollouts and persistent Python')
  .version(packageVersion);

program
  .command('stdio', { isDefault: true })
  .description('serve MCP over stdin/stdout (what MCP hosts such as Claude Desktop launch)')
  .action(async () => {
    await serveStdio(createRuntime());
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`opencode-env: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
