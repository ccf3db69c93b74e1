import { z } from 'zod';
import { defineTool } from './define-tool.js';

export const episodeStateSchema = z.object({
  episode_id: z.string(),
  step_count: z.number().int(),
  last_exit_code: z.number().int(),
  rollouts_completed: z.number().int(),
  last_reward: z.number().nullable(),
  last_task_id: z.string().nullable(),
  last_sandbox_id: z.string().nullable(),
  seed: z.number().int().nullable(),
  sandbox_backend: z.string(),
  isolation: z.string().nullable().describe('How the sandbox is confined (e.g. "bubblewrap"); null until it exists'),
  sandbox_id: z.string().nullable().describe('null until the sandbox is first used'),
  python_running: z.boolean(),
});

export const getStateTool = defineTool({
  name: 'get_state',
  title: 'Get episode state',
  description:
    'Report the current episode without changing it: episode_id, step_count (execute_python calls so far), ' +
    'last_exit_code, rollouts_completed with the last rollout\'s reward, task id and sandbox id, the seed given to reset, the sandbox backend and isolation in use, the sandbox id ' +
    '(null until first use) and whether the Python interpreter is running.',
  inputSchema: z.strictObject({}),
  outputSchema: episodeStateSchema,
  annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
  async handler(_args, { episode }) {
    return episode.state();
  },
});
