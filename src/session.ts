import { randomUUID } from 'node:crypto';
import { Episode } from './core/episode.js';
import type { RolloutService } from './core/rollout/run.js';
import type { CleanupScope } from './lifecycle.js';
import type { Runtime } from './runtime.js';
import type { SessionServices } from './tools/tool.js';
import { CancelGroup } from './util/cancel-group.js';

/**
 * One session: one client connection, one episode. Every transport opens one per connection (stdio has
 * exactly one) and closes it when the connection ends; what it registered goes with it.
 */
export interface Session {
  readonly id: string;
  readonly services: SessionServices;
  /** Where the transport registers what it owns for this session (its MCP server, sockets). */
  readonly scope: CleanupScope;
  /** Kills the episode's sandbox and runs everything registered in the scope. Safe to call more than once. */
  close(): Promise<void>;
}

export function openSession(runtime: Runtime): Session {
  const id = randomUUID();
  const logger = runtime.logger.child({ session: id });
  const scope = runtime.lifecycle.openScope(`session ${id}`);
  const episode = new Episode({ provider: runtime.provider, logger });
  // Registered first so it runs last: the episode outlives what the transport built on it.
  scope.onShutdown('episode', () => episode.close());
  // A client that goes away takes its rollouts with it; each still stores its trace, as cancelled.
  const sessionRollouts = new CancelGroup();
  scope.onShutdown('rollouts', () => sessionRollouts.cancelAll('the client went away'));
  const rollouts: RolloutService = {
    run: (spec, options) => sessionRollouts.run(options?.signal, (signal) => runtime.rollouts.run(spec, { ...options, signal })),
  };
  return { id, services: { episode, rollouts, logger }, scope, close: () => scope.close() };
}
