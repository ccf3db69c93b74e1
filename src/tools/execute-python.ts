import { DEFAULT_PYTHON_TIMEOUT_S, executePythonRequestSchema, executePythonResultSchema } from '../core/python/schema.js';
import { defineTool } from './tool.js';

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
  inputSchema: executePythonRequestSchema,
  outputSchema: executePythonResultSchema,
  hints: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  // Not async: the episode's promise is handed on as it is, without the extra turns an async wrapper would add.
  handler({ code, timeout_s }, { episode, signal }) {
    return episode.executePython(code, { ...(timeout_s !== undefined ? { timeoutS: timeout_s } : {}), signal });
  },
});
