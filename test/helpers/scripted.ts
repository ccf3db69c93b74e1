import { scriptSchema } from '../../src/scripted-llm/script.js';
import { startScriptedLlm, type ScriptedLlm, type ScriptedLlmOptions } from '../../src/scripted-llm/server.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.js';

export type { ScriptedLlm };

/** Starts the project's scripted OpenAI-compatible model (a real HTTP server) with a script given inline. */
export async function startScripted(script: unknown, options: Omit<ScriptedLlmOptions, 'script'> = {}): Promise<ScriptedLlm> {
  return startScriptedLlm({ ...options, script: scriptSchema.parse(script) });
}

export function exampleScript(name: 'script.json' | 'script-wrong.json'): unknown {
  return JSON.parse(readFileSync(path.join(repoRoot, 'resources/examples/fizzbuzz', name), 'utf8'));
}

export function exampleTask(): Record<string, any> {
  return JSON.parse(readFileSync(path.join(repoRoot, 'resources/examples/fizzbuzz/task.json'), 'utf8'));
}
