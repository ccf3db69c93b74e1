import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { packageVersion } from '../../version.js';
import { HttpError, readJson, sendJson } from '../http/body.js';
import type { HttpContext, HttpRoute, RouteModule } from '../http/server.js';
import { CapacityError, type HttpSession } from '../http/sessions.js';
import { OpenEnvActionError, parseStepAction, resetSession, sessionState, stepSession } from './actions.js';
import {
  baseStateSchema,
  callToolActionSchema,
  callToolObservationSchema,
  codeActionSchema,
  codeObservationSchema,
  listToolsActionSchema,
  listToolsObservationSchema,
  resetBodySchema,
  stepBodySchema,
  toValidationIssues,
} from './wire.js';

/**
 * OpenEnv's REST routes (§1.1–1.6 of openenv.md). /reset, /step and /state are stateless, as OpenEnv's are: each request
 * gets a fresh session, closed (its sandbox killed) before the answer; episodes live in /ws and JSON-RPC sessions.
 */

const ENV_NAME = 'opencode_env';

const metadata = () => ({
  name: ENV_NAME,
  description:
    'Coding-agent rollouts (OpenCode against an OpenAI-compatible model, scored by a verifier) and a persistent Python ' +
    'interpreter, each in an isolated sandbox',
  readme_content: null,
  version: packageVersion,
  author: null,
  documentation_url: null,
});

let schemas: Record<string, unknown> | null = null;

/** /schema: the action is any of ours (code or MCP), the observation any of ours; the state is OpenEnv's base State. */
function openEnvSchemas(): Record<string, unknown> {
  const jsonSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' });
  schemas ??= {
    action: jsonSchema(z.union([codeActionSchema, listToolsActionSchema, callToolActionSchema]).meta({ title: 'Action' })),
    observation: jsonSchema(
      z.union([codeObservationSchema, listToolsObservationSchema, callToolObservationSchema]).meta({ title: 'Observation' }),
    ),
    state: jsonSchema(baseStateSchema),
  };
  return schemas;
}

/** Just enough OpenAPI for `openenv validate`: a string info.version, and paths naming our routes (simulation mode). */
function openApi(): Record<string, unknown> {
  const operation = (summary: string) => ({ summary, responses: { '200': { description: 'Successful Response' } } });
  return {
    openapi: '3.1.0',
    info: { title: 'OpenEnv Environment HTTP API', version: '1.0.0' },
    paths: {
      '/health': { get: operation('Health') },
      '/metadata': { get: operation('Environment metadata') },
      '/schema': { get: operation('Action, observation and state schemas') },
      '/reset': { post: operation('Reset (stateless)') },
      '/step': { post: operation('Step (stateless)') },
      '/state': { get: operation('State (stateless)') },
      '/mcp': { post: operation('JSON-RPC (OpenEnv) and MCP Streamable HTTP') },
    },
  };
}

function unprocessable(issues: unknown[]): HttpError {
  return new HttpError(422, 'validation failed', { detail: issues });
}

/** One request's throwaway session, closed whatever happens; capacity → 503. */
async function withFreshSession<T>(context: HttpContext, work: (entry: HttpSession) => Promise<T>): Promise<T> {
  let entry: HttpSession;
  try {
    entry = context.sessions.open('openenv-rpc');
  } catch (error) {
    if (error instanceof CapacityError) throw new HttpError(503, error.message);
    throw error;
  }
  try {
    return await work(entry);
  } catch (error) {
    if (!(error instanceof OpenEnvActionError)) throw error;
    if (error.error.class === 'invalid_input')
      throw unprocessable([{ type: 'value_error', loc: ['body'], msg: error.message, input: null }]);
    throw new HttpError(500, error.message);
  } finally {
    await context.sessions.close(entry.id, 'stateless request done');
  }
}

/** Aborted when the client hangs up before the answer (its call is cancelled rather than run for nobody). */
function clientGone(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the client disconnected'));
  });
  return controller.signal;
}

export const openEnvRest: RouteModule = (context) => {
  const limit = context.settings.maxBodyBytes;
  const get = (path: string, answer: () => unknown): HttpRoute => ({
    method: 'GET',
    path,
    handle: async (_req, res) => sendJson(res, 200, await answer()),
  });
  return {
    routes: [
      get('/metadata', metadata),
      get('/schema', openEnvSchemas),
      get('/openapi.json', openApi),
      {
        method: 'POST',
        path: '/reset',
        handle: async (req, res) => {
          const body = await readJson(req, limit, {});
          const parsed = resetBodySchema.safeParse(body);
          if (!parsed.success) throw unprocessable(toValidationIssues(parsed.error, body, ['body']));
          const { seed, episode_id } = parsed.data;
          const data = { ...(seed != null ? { seed } : {}), ...(episode_id != null ? { episode_id } : {}) };
          sendJson(res, 200, await withFreshSession(context, (entry) => resetSession(entry, data)));
        },
      },
      {
        method: 'POST',
        path: '/step',
        handle: async (req, res) => {
          const body = await readJson(req, limit, {});
          const parsed = stepBodySchema.safeParse(body);
          if (!parsed.success) throw unprocessable(toValidationIssues(parsed.error, body, ['body']));
          const action = parseStepAction(parsed.data.action, ['body', 'action']);
          if (!action.ok) throw unprocessable(action.issues);
          const timeoutS = parsed.data.timeout_s ?? undefined;
          const signal = clientGone(res);
          const observation = await withFreshSession(context, (entry) =>
            stepSession(entry, action.action, { signal, ...(timeoutS !== undefined ? { timeoutS } : {}) }),
          );
          sendJson(res, 200, observation);
        },
      },
      get('/state', () => withFreshSession(context, sessionState)),
    ],
  };
};
