import type { ProxyTurnSummary } from '../proxy/types.js';
import type { EndpointName } from './endpoints.js';

export type RolloutMode = 'transparent_proxy' | 'black_box';

/** What to run: the task, how to check it, and which model to run it with. Field names match the wire. */
export interface RolloutSpec {
  instruction: string;
  task_id?: string;
  /** Files to stage in the workdir before setup: relative path -> content. */
  files?: Record<string, string>;
  /** Shell commands run in the workdir before the agent; any failure aborts the rollout. */
  setup?: string[];
  /** Shell commands run after the agent; reward = passed / total unless a reward file or test_script decides. */
  verify?: string[];
  /** One bash script run after the agent; exit code 0 gives reward 1.0, anything else 0.0. */
  test_script?: string;
  endpoint?: EndpointName;
  base_url?: string;
  api_key?: string;
  model?: string;
  mode: RolloutMode;
  disable_thinking?: boolean;
  max_tokens_cap: number;
  top_logprobs: number;
  agent_timeout_s: number;
  setup_timeout_s: number;
  verify_timeout_s: number;
  /** E2B template; recorded only on the local backend. */
  template?: string;
}

export interface CommandRecord {
  cmd: string;
  exit_code: number | null;
  stdout: string;
  stderr: string;
  duration_s: number;
  timed_out: boolean;
}

export type RolloutPhase = 'queue' | 'sandbox' | 'files' | 'setup' | 'proxy' | 'agent' | 'verify' | 'collect' | 'trace';

export interface RolloutResult {
  rollout_id: string;
  task_id: string;
  sandbox_id: string;
  /** null when no reward could be computed: no verifier, or an infrastructure failure (see `error`). */
  reward: number | null;
  /** Further named rewards from the verifier's reward.json. */
  rewards: Record<string, number>;
  agent_exit_code: number | null;
  agent_timed_out: boolean;
  wall_s: number;
  /** Seconds spent in each phase. */
  timings: Partial<Record<RolloutPhase, number>>;
  mode: RolloutMode;
  endpoint: { name: string; base_url: string; model: string };
  template: string | null;
  setup_results: CommandRecord[];
  verify_results: CommandRecord[];
  proxy_turns: ProxyTurnSummary[];
  /** opencode's JSON events (`opencode run --format json`). */
  agent_events: Array<Record<string, unknown>>;
  /** Workdir path -> text content, for files that are small and text. */
  files: Record<string, string>;
  /** Files that were binary, too large, symlinks or past the total cap (named, not included). */
  files_extra: string[];
  agent_log_tail: string;
  proxy_log_tail: string;
  /** Why the rollout could not produce a trustworthy reward (infrastructure, cancellation), else null. */
  error: string | null;
  /** MCP resource URI of the full trace. */
  trace_uri: string | null;
}
