// Checks an ATIF trajectory against resources/atif/trajectory.schema.json and the RFC's cross-field rules.
import { Ajv } from 'ajv';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.js';

const schema = JSON.parse(readFileSync(path.join(repoRoot, 'resources/atif/trajectory.schema.json'), 'utf8'));
const validate = new Ajv({ allErrors: true, strict: false }).compile<any>(schema); // <any>: the type guard would otherwise narrow what it checks to unknown

/** What is wrong with `trajectory` as ATIF v1.4: an empty list when nothing is. */
export function atifProblems(trajectory: any): string[] {
  if (!validate(trajectory)) return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  const problems: string[] = [];
  trajectory.steps.forEach((step: any, index: number) => {
    if (step.step_id !== index + 1) problems.push(`steps[${index}].step_id is ${step.step_id}, expected ${index + 1}`);
    const callIds = new Set((step.tool_calls ?? []).map((c: any) => c.tool_call_id));
    for (const result of step.observation?.results ?? []) {
      if (result.source_call_id != null && !callIds.has(result.source_call_id)) {
        problems.push(`steps[${index}] observation names ${result.source_call_id}, not a tool call of its step`);
      }
    }
  });
  return problems;
}
