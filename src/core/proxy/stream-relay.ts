import type http from 'node:http';
import { stripInjected, type Injection } from './injection.js';
import { stripInjectedText } from './json-text.js';
import { eventData, SseSplitter } from './sse.js';

/** One event's data, parsed once for both the agent's copy and the recording: the payload, or why it did not parse. */
export type ParsedData = { ok: true; payload: unknown } | { ok: false; error: Error };

interface PendingEvent {
  event: string;
  /** The `data:` payload; null for comments, other fields and `[DONE]` (never recorded). */
  data: string | null;
  written: boolean;
  parsed?: ParsedData;
}

/**
 * Relays a streamed (SSE) answer to the agent relay first: the bytes of each chunk go out before any of it is
 * parsed, and parsing and recording happen from a later turn of the event loop (node sends what a response wrote
 * at the end of the current tick: work done in the same tick would hold the bytes back).
 *
 * - Nothing injected: the upstream's bytes go through untouched, as they arrive.
 * - Injected fields to remove: the stream's first event (the prompt's token ids: tens of kilobytes) loses them by
 *   a textual edit (json-text.ts), before anything is parsed; it gives exactly what re-serialising the stripped
 *   chunk gives. Later events are parsed once, for both their stripped copy and their recording (a textual edit
 *   of a logprobs chunk costs as much CPU as its parse, so editing them too would double the work). Of a burst
 *   of events in one read, the first goes out at once and the rest right after this tick has sent it.
 *   Unparseable data pass as they came.
 *
 * `record` gets every data event in order, after it was written. Resolves once the answer has ended and every
 * event was recorded: with null, or with why the stream broke.
 */
export function relayStream(
  upstream: http.IncomingMessage,
  res: http.ServerResponse,
  injected: readonly Injection[],
  record: (data: string, parsed: ParsedData) => void,
): Promise<string | null> {
  const splitter = new SseSplitter();
  const passThrough = injected.length === 0;
  const pending: PendingEvent[] = [];
  let unwritten = 0;
  let firstDataWritten = false;
  let catchUpScheduled = false;

  /** Writes what is still unwritten, then (after `end`, if given) records everything pending, in order. */
  const catchUp = (end?: () => void) => {
    catchUpScheduled = false;
    const batch = pending.splice(0);
    if (unwritten > 0) {
      let out = '';
      for (const item of batch) if (!item.written) out += strippedEvent(item, injected);
      unwritten = 0;
      if (out) res.write(out);
    }
    end?.();
    for (const item of batch) if (item.data !== null) record(item.data, (item.parsed ??= parse(item.data)));
  };

  const onEvents = (events: string[]) => {
    const items: PendingEvent[] = events.map((event) => {
      const data = eventData(event);
      return { event, data: data === '[DONE]' ? null : data, written: passThrough };
    });
    if (!passThrough && pending.length === 0 && items.length > 0) {
      // Nothing waits ahead of it: the first new event goes out now. The stream's first (which carries the prompt's
      // token ids, tens of kilobytes) by the textual edit, before any parsing, recorded later; later ones, about as
      // costly to edit as to parse, through the parse their recording needs anyway, and recorded at once.
      const first = items.shift()!;
      const edited = first.data === null || firstDataWritten ? null : textuallyStripped(first.data, injected);
      res.write(edited ?? strippedEvent(first, injected));
      first.written = true;
      if (first.data !== null) firstDataWritten = true;
      if (edited !== null) pending.push(first);
      else if (first.data !== null) record(first.data, first.parsed!);
    }
    for (const item of items) pending.push(item);
    if (!passThrough) unwritten += items.length;
    if (pending.length > 0 && !catchUpScheduled) {
      catchUpScheduled = true;
      setImmediate(catchUp);
    }
  };

  return new Promise((resolve) => {
    let failure: string | null = null;
    upstream.on('data', (chunk: Buffer) => {
      if (passThrough) res.write(chunk);
      onEvents(splitter.push(chunk));
    });
    upstream.on('end', () => {
      onEvents(splitter.flush());
      catchUp(() => res.end());
      resolve(failure);
    });
    upstream.on('error', (error) => {
      failure ??= `upstream stream failed: ${error.message}`;
      res.destroy();
      // What arrived is still recorded; nothing more is written to a response that is gone.
      for (const item of pending) item.written = true;
      unwritten = 0;
      catchUp();
      resolve(failure);
    });
    upstream.on('aborted', () => {
      failure ??= 'upstream closed the stream early';
    });
  });
}

function parse(data: string): ParsedData {
  try {
    return { ok: true, payload: JSON.parse(data) };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

function textuallyStripped(data: string, injected: readonly Injection[]): string | null {
  const stripped = stripInjectedText(data, injected);
  return stripped === null ? null : `data: ${stripped}\n\n`;
}

/** An event as the agent gets it, from its parsed payload (kept whole for the recording): the old path's bytes. */
function strippedEvent(item: PendingEvent, injected: readonly Injection[]): string {
  if (item.data === null) return `${item.event}\n\n`;
  const parsed = (item.parsed ??= parse(item.data));
  if (!parsed.ok) return `${item.event}\n\n`;
  return `data: ${JSON.stringify(stripInjected(shallowCopy(parsed.payload), injected))}\n\n`;
}

/** Copies what stripInjected deletes from (the payload and its choices), so the recorded payload keeps it all. */
function shallowCopy(payload: unknown): unknown {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return payload;
  const copy: Record<string, unknown> = { ...(payload as Record<string, unknown>) };
  if (Array.isArray(copy.choices)) {
    copy.choices = copy.choices.map((choice: unknown) =>
      choice && typeof choice === 'object' && !Array.isArray(choice) ? { ...(choice as Record<string, unknown>) } : choice,
    );
  }
  return copy;
}
