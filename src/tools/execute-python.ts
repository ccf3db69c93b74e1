import { z } from 'zod';
import { DEFAULT_PYTHON_TIMEOUT_S } from '../core/episode.js';
import { defineTool } from './define-tool.js';

const MAX_CODE_CHARS = 1_000_000;
const MAX_TIMEOUT_S = 3600;

export const executePythonTool = defineTool({
  name: 'execute_python',
  title: 'Execute Python',
  description:
    "Run Python code in this session's sandboxed, persistent Python interpreter, like a notebook kernel: variables, " +
    'imports and functions defined by one call remain available to later calls until `reset`. ' +
    'Returns stdout, stderr and exit_code (0 on success; 1 when the code raised, with the traceback in stderr; ' +
    'the code given to sys.exit() otherwise). Output printed before an exception is kept. If the last statement is ' +
    'an expression, its value is shown in stdout as a Python REPL would show it. ' +
    'The working directory is /home/user/workdir; only it, the home directory and /tmp are writable. ' +
    `Each call is stopped after timeout_s seconds (default ${DEFAULT_PYTHON_TIMEOUT_S}); stdout and stderr are each capped at 1 MiB. ` +
    'If the interpreter had to be restarted, state_lost is true and notice says why.',
  inputSchema: z.strictObject({
    code: z.string().min(1, 'code must not be empty').max(MAX_CODE_CHARS, `code must be at most ${MAX_CODE_CHARS} characters`).describe('Python source to run'),
    timeout_s: z
      .number()
      .positive()
      .max(MAX_TIMEOUT_S)
      .optional()
      .describe(`Seconds before the call is interrupted (default ${DEFAULT_PYTHON_TIMEOUT_S}, at most ${MAX_TIMEOUT_S})`),
  }),
  outputSchema: z.object({
    stdout: z.string(),
    stderr: z.string(),
    exit_code: z.number().int(),
    timed_out: z.boolean(),
    state_lost: z.boolean(),
    notice: z.string().nullable(),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async handler({ code, timeout_s }, { episode, signal }) {
    return episode.executePython(code, { ...(timeout_s !== undefined ? { timeoutS: timeout_s } : {}), signal });
  },
});
