import { z } from 'zod';

/**
 * What the recording proxy records for each LLM call: the full turn goes to the trace, a summary (without
 * the request, the response text, the alternatives per token and the prompt's token ids, which can run to
 * tens of thousands per turn) goes to the rollout result. The types are inferred from these schemas.
 */

const upstreamErrorSchema = z
  .object({
    type: z
      .enum(['connection', 'http', 'malformed_stream', 'stream', 'refused'])
      .describe(
        'connection: no HTTP answer; http: an error status; malformed_stream: unparseable data; stream: cut off mid-response; ' +
          'refused: the proxy refused the request (e.g. over the size limit) and the upstream never saw it',
      ),
    message: z.string(),
    status: z.number().int().optional().describe('HTTP status, for type http (and the status the proxy answered, for refused)'),
    body: z.string().optional().describe("The start of the upstream's error body"),
  })
  .meta({ title: 'UpstreamError', description: 'Why an LLM call failed' });

const toolCallSchema = z.object({
  id: z.string().nullable(),
  name: z.string(),
  arguments: z.string().describe('The arguments as the model wrote them (JSON text, possibly malformed)'),
});

const tokenAlternativeSchema = z.object({ token: z.string(), logprob: z.number().nullable() });

/** The parts of a turn that come from the upstream's answer, rebuilt from its stream. */
const assembledCompletionShape = {
  response: z
    .object({ content: z.string(), reasoning: z.string(), tool_calls: z.array(toolCallSchema) })
    .describe('What the agent saw: the text, the reasoning and the tool calls'),
  finish_reason: z.string().nullable(),
  usage: z.record(z.string(), z.unknown()).nullable().describe("The upstream's usage block"),
  completion_tokens: z.array(z.string()).describe('Sampled tokens as text, from the logprobs'),
  completion_token_ids: z
    .array(z.number().int())
    .describe("Sampled token ids (vLLM's return_token_ids, or logprob tokens of the form token_id:N)"),
  per_token_logps: z.array(z.number().nullable()).describe('Log-probability of each sampled token (null where the upstream gave none)'),
  top_logprobs: z.array(z.array(tokenAlternativeSchema)).describe('The most likely alternatives at each position'),
  prompt_token_ids: z.array(z.number().int()).nullable().describe('Token ids of the prompt, when the upstream returned them'),
  n_chunks: z.number().int().describe('Stream chunks received (1 for a whole response)'),
};

const proxyTurnSchema = z
  .object({
    turn: z.number().int().describe('1-based number of the LLM call within the rollout'),
    timestamp: z.string().describe('When the call started (ISO 8601)'),
    method: z.string(),
    path: z.string(),
    kind: z
      .enum(['agent', 'title', 'auxiliary'])
      .describe("agent: a step with tools; title: opencode's session-title request; auxiliary: other"),
    session_id: z.string().nullable().describe("opencode's session id, from the request headers"),
    stream: z.boolean(),
    request: z.record(z.string(), z.unknown()).nullable().describe('The request body as sent upstream (after injection)'),
    injected: z.array(z.string()).describe('Fields the proxy added to the request (and removed again from what the agent saw)'),
    latency_s: z.number().describe('Seconds from the request to the end of the response'),
    ttfb_s: z.number().nullable().describe('Seconds to the response headers'),
    upstream_status: z.number().int().nullable().describe('HTTP status of the upstream, null when it never answered'),
    upstream_error: upstreamErrorSchema.nullable(),
    ...assembledCompletionShape,
  })
  .meta({ title: 'ProxyTurn', description: 'One LLM call as the recording proxy saw it; the Authorization header is never recorded' });

export const proxyTurnSummarySchema = proxyTurnSchema
  .omit({ request: true, response: true, top_logprobs: true, prompt_token_ids: true, method: true, path: true, n_chunks: true })
  .meta({
    title: 'ProxyTurnSummary',
    description: 'One LLM call; the request, response text, alternatives and prompt token ids are in the trace',
  });

export type AssembledToolCall = z.infer<typeof toolCallSchema>;
export type ProxyTurn = z.infer<typeof proxyTurnSchema>;
export type AssembledCompletion = Pick<ProxyTurn, keyof typeof assembledCompletionShape>;
export type ProxyTurnSummary = z.infer<typeof proxyTurnSummarySchema>;

export function summarizeTurn(turn: ProxyTurn): ProxyTurnSummary {
  const {
    request: _request,
    response: _response,
    top_logprobs: _top,
    prompt_token_ids: _prompt,
    method: _method,
    path: _path,
    n_chunks: _chunks,
    ...summary
  } = turn;
  return summary;
}
