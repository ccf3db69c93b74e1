import { episodeStateSchema, resetRequestSchema } from '../core/episode-schema.js';
import { defineTool } from './tool.js';

export const resetTool = defineTool({
  name: 'reset',
  title: 'Reset episode',
  description:
    'Start a new episode. The current sandbox, its files and the Python interpreter (with all its variables) are ' +
    'discarded; fresh ones are created on next use. Returns the new episode state. ' +
    "`seed` seeds the new interpreter's `random` module and its hash randomisation; `episode_id` names the new " +
    'episode (a UUID otherwise).',
  inputSchema: resetRequestSchema,
  outputSchema: episodeStateSchema,
  hints: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler({ seed, episode_id }, { episode }) {
    return episode.reset({ seed, episodeId: episode_id });
  },
});
