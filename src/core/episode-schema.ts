import { z } from 'zod';
import { optionalField } from './schema-fields.js';

export const resetRequestSchema = z.strictObject({
  seed: optionalField(z.number().int().min(0), "Non-negative integer seed for the new interpreter's random module and hash randomisation"),
  episode_id: optionalField(z.string().min(1).max(255), 'Identifier for the new episode (at most 255 characters; a UUID otherwise)'),
});

export const episodeStateSchema = z
  .object({
    episode_id: z.string().describe('The id given to reset, or a UUID'),
    step_count: z.number().int().describe('execute_python calls in this episode'),
    last_exit_code: z.number().int().nullable().describe('exit_code of the last execute_python call; null before the first'),
    rollouts_completed: z
      .number()
      .int()
      .describe('run_rollout calls that ran to an end (with a reward or an error), not counting cancelled ones'),
    rollouts_cancelled: z.number().int().describe('run_rollout calls cancelled by the client'),
    last_reward: z.number().nullable().describe('Reward of the last completed rollout'),
    last_task_id: z.string().nullable().describe('task_id of the last completed rollout'),
    last_sandbox_id: z.string().nullable().describe('Sandbox of the last completed rollout (each rollout has its own)'),
    seed: z.number().int().nullable().describe('The seed given to reset'),
    sandbox_backend: z.string().describe('local or e2b'),
    isolation: z.string().describe('How sandboxes are isolated from the host: bubblewrap or none (local), e2b (cloud)'),
    sandbox_id: z.string().nullable().describe("The episode's sandbox; null until it is first used"),
    python_running: z.boolean().describe("Whether the episode's Python interpreter is up (its state is kept between calls)"),
  })
  .meta({ title: 'EpisodeState', description: 'The current episode: its sandbox, Python interpreter and counters' });

export type EpisodeState = z.infer<typeof episodeStateSchema>;
