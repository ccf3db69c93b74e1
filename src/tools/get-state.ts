import { z } from 'zod';
import { episodeStateSchema } from '../core/episode-schema.js';
import { defineTool } from './tool.js';

export const getStateTool = defineTool({
  name: 'get_state',
  title: 'Get episode state',
  description:
    'Report the current episode without changing it: episode_id, step_count (execute_python calls so far), ' +
    "last_exit_code, rollouts completed and cancelled with the last rollout's reward, task id and sandbox id, the seed " +
    'given to reset, the sandbox backend and its isolation, the sandbox id (null until first use) and whether the ' +
    'Python interpreter is running.',
  inputSchema: z.strictObject({}),
  outputSchema: episodeStateSchema,
  hints: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
  async handler(_args, { episode }) {
    return episode.state();
  },
});
