import { z } from 'zod';
import { optionalField } from '../schema-fields.js';

export const DEFAULT_PYTHON_TIMEOUT_S = 30;
const MAX_TIMEOUT_S = 3600;
const MAX_CODE_CHARS = 1_000_000;

export const executePythonRequestSchema = z.strictObject({
  code: z
    .string()
    .min(1, 'code must not be empty')
    .max(MAX_CODE_CHARS, `code must be at most ${MAX_CODE_CHARS} characters`)
    .describe('Python source to run'),
  timeout_s: optionalField(
    z.number().positive().max(MAX_TIMEOUT_S),
    `Seconds before the call is interrupted (default ${DEFAULT_PYTHON_TIMEOUT_S}, at most ${MAX_TIMEOUT_S})`,
  ),
});

export const executePythonResultSchema = z
  .object({
    stdout: z.string().describe('What the code printed (including subprocesses), and the value of a final expression; capped at 1 MiB'),
    stderr: z.string().describe('Errors and tracebacks; capped at 1 MiB'),
    exit_code: z
      .number()
      .int()
      .describe('0 on success; 1 when the code raised, timed out or crashed the interpreter; the value given to sys.exit()'),
    timed_out: z.boolean().describe('The call was stopped at timeout_s'),
    state_lost: z.boolean().describe('Names defined by earlier calls are gone: the interpreter was restarted before or during this call'),
    notice: z.string().nullable().describe('Explains a restart, a timeout or a reset, when one happened'),
  })
  .meta({ title: 'ExecutePythonResult', description: 'The outcome of one execute_python call' });

export type ExecutePythonResult = z.infer<typeof executePythonResultSchema>;
