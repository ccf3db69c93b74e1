#!/usr/bin/env node
// Runs the MCP conformance suite (@modelcontextprotocol/conformance) against /mcp of a fresh `opencode-env http`, end to
// end: installs the suite and, when this Node is older than 22 (the suite needs 22), a Node 22 binary from the npm registry
// into node_modules/.cache/mcp-conformance; starts the built server on a free loopback port with throwaway directories;
// runs the suite with the expected failures of scripts/mcp-conformance.expected-failures.yml (explained in
// docs/mcp-conformance.md); prints its results and exits with its code (0: every failure is an expected one).
//
//   npm run conformance:mcp                                   # every server scenario (--suite all)
//   npm run conformance:mcp -- --scenario tools-list --verbose
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SUITE_VERSION = '0.1.16';
const NODE_MAJOR = 22;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const toolsDir = path.join(repoRoot, 'node_modules', '.cache', 'mcp-conformance');
const baseline = path.join(repoRoot, 'scripts', 'mcp-conformance.expected-failures.yml');
const cli = path.join(repoRoot, 'dist', 'cli.js');

function installedVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(toolsDir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

/** The suite and a Node it runs on: this one if it is new enough, else the registry's binary package (it has no install script). */
function ensureTools() {
  const nodePackage = `node-${process.platform}-${process.arch}`;
  const needNode = Number(process.versions.node.split('.')[0]) < NODE_MAJOR;
  const wanted = [];
  if (installedVersion('@modelcontextprotocol/conformance') !== SUITE_VERSION)
    wanted.push(`@modelcontextprotocol/conformance@${SUITE_VERSION}`);
  if (needNode && !installedVersion(nodePackage)?.startsWith(`${NODE_MAJOR}.`)) wanted.push(`${nodePackage}@${NODE_MAJOR}`);
  if (wanted.length > 0) {
    mkdirSync(toolsDir, { recursive: true });
    console.error(`installing ${wanted.join(' ')} into ${path.relative(repoRoot, toolsDir)}`);
    const args = ['install', '--prefix', toolsDir, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', ...wanted];
    execFileSync('npm', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return {
    node: needNode ? path.join(toolsDir, 'node_modules', nodePackage, 'bin', 'node') : process.execPath,
    suite: path.join(toolsDir, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js'),
  };
}

/**
 * The built server in HTTP mode on a free loopback port, with no token (the suite sends none) and room for its sessions;
 * `ready` gives its URL. Returned at once, so the caller can stop it even when it never gets ready.
 */
function startServer(scratch) {
  const env = { ...process.env };
  delete env.OPENCODE_ENV_TOKEN;
  const child = spawn(process.execPath, [cli, 'http', '--host', '127.0.0.1', '--port', '0'], {
    env: {
      ...env,
      OPENCODE_ENV_SANDBOX_DIR: path.join(scratch, 'sandboxes'),
      OPENCODE_ENV_DATA_DIR: path.join(scratch, 'data'),
      // Every scenario opens a session of its own and most never DELETE it.
      MAX_CONCURRENT_ENVS: '256',
      OPENCODE_ENV_SESSION_IDLE_S: '60',
      OPENCODE_ENV_LOG_LEVEL: 'info', // the line that says where it listens is at info
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${stderr}`)), 30_000);
    child.stderr.on('data', (chunk) => {
      stderr += chunk.toString('utf8');
      const match = /serving HTTP on (http:\/\/[^\s"]+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}:\n${stderr}`)));
  });
  return { ready, child, log: () => stderr };
}

function run(command, args) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main() {
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run `npm run build` first');
  const tools = ensureTools();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'mcp-conf-'));
  const results = path.join(toolsDir, 'results', new Date().toISOString().replace(/[:.]/g, '-'));
  let server;
  try {
    server = startServer(scratch);
    const endpoint = `${await server.ready}/mcp`;
    const chosen = process.argv.slice(2);
    const selection = [
      ...(chosen.some((arg) => arg === '--scenario' || arg === '--suite') ? [] : ['--suite', 'all']),
      ...(chosen.includes('--expected-failures') ? [] : ['--expected-failures', baseline]),
      ...chosen,
    ];
    console.error(
      `running @modelcontextprotocol/conformance@${SUITE_VERSION} (node ${execFileSync(tools.node, ['--version']).toString().trim()}) against ${endpoint}`,
    );
    const code = await run(tools.node, [tools.suite, 'server', '--url', endpoint, '-o', results, ...selection]);
    if (code !== 0) console.error(`\nthe server's log, last lines:\n${server.log().split('\n').slice(-40).join('\n')}`);
    console.error(`\nconformance: exit ${code}; each scenario's checks.json is under ${path.relative(repoRoot, results)}`);
    console.error('every expected failure is listed, with its reason, in docs/mcp-conformance.md');
    return code;
  } finally {
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      server.child.kill('SIGTERM');
      const timer = setTimeout(() => server.child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(2);
  },
);
