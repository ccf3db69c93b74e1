import { z } from 'zod';
import { defineTool } from './define-tool.js';
import { episodeStateSchema } from './get-state.js';

export const resetTool = defineTool({
  name: 'reset',
  title: 'Reset episode',
  description:
    'Start a new episode. The current sandbox, its files and the Python interpreter (with all its variables) are ' +
    'discarded; fresh ones are created on next use. Returns the new episode state. ' +
    "`seed` seeds the new interpreter's `random` module and its hash randomisation; `episode_id` names the new " +
    'episode (a UUID otherwise).',
  inputSchema: z.strictObject({
    seed: z.number().int().min(0).optional().describe('Non-negative integer seed for the new episode'),
    episode_id: z.string().min(1).max(255).optional().describe('Identifier for the new episode (at most 255 characters)'),
  }),
  outputSchema: episodeStateSchema,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler({ seed, episode_id }, { episode }) {
    return episode.reset({ ...(seed !== undefined ? { seed } : {}), ...(episode_id !== undefined ? { episodeId: episode_id } : {}) });
  },
});
