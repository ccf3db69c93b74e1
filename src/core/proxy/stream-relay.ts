import type http from 'node:http';
import { stripInjected, type Injection } from './injection.js';
import { recordedPayload, scanStreamChunk, type ChunkRecording } from './json-text.js';
import { eventData, SseSplitter } from './sse.js';

/** One event's data, parsed for the recording: the payload, or why it did not parse. */
export type ParsedData = { ok: true; payload: unknown } | { ok: false; error: Error };

/** A data event written to the agent and waiting to be recorded. */
interface WrittenEvent {
  data: string;
  /** Read from the text while it was stripped; null: parse the data whole. */
  recording: ChunkRecording | null;
  /** Already parsed (the text was not followed, so its copy for the agent needed the parse). */
  parsed?: ParsedData;
}

/**
 * Relays a streamed (SSE) answer to the agent relay first: the bytes of each event go out before it is recorded.
 *
 * - Nothing injected: the upstream's bytes go through untouched, as they arrive.
 * - Injected fields to remove: each event loses them by a textual edit (json-text.ts), which gives exactly what
 *   re-serialising the stripped chunk gives; the same walk reads what the recording needs, so a chunk is never
 *   parsed whole, only its small rest. Data the scanner does not follow is parsed and re-serialised, as before;
 *   unparseable data pass as they came.
 *
 * Streamed token by token, each read holds about one event: it is written, then recorded in the same turn of the
 * event loop (a deferral per event would cost more than the recording). The stream's first event (the prompt's
 * token ids, tens of kilobytes) is recorded from a later turn, so its parse does not hold back its bytes (node sends
 * what a response wrote at the end of the current tick). Of a burst of events in one read, the first goes out at
 * once (cut off a large read before the rest is decoded) and the rest right after this tick has sent it.
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
  /** Events of a burst waiting for the catch-up, then its bytes not yet split into events. */
  const unsplitEvents: string[] = [];
  const unsplit: Buffer[] = [];
  /** Events written (or passed through), in order, not yet recorded. */
  const unrecorded: WrittenEvent[] = [];
  let catchUpScheduled = false;
  let firstDataSeen = false;

  /** The agent's copy of one event; the event is queued for recording. */
  const relayEvent = (event: string): string => {
    const data = eventData(event);
    if (data === null || data === '[DONE]') return `${event}\n\n`;
    firstDataSeen = true;
    const scan = scanStreamChunk(data, injected, true);
    if (scan) {
      unrecorded.push({ data, recording: scan.recording });
      return passThrough ? '' : `data: ${scan.agentText}\n\n`;
    }
    const parsed = parse(data);
    unrecorded.push({ data, recording: null, parsed });
    if (!parsed.ok) return `${event}\n\n`;
    try {
      return `data: ${JSON.stringify(stripInjected(shallowCopy(parsed.payload), injected))}\n\n`;
    } catch {
      return `${event}\n\n`; // nested too deep to re-serialise (JSON.parse takes any depth, stringify does not): as it came
    }
  };
  const relayEvents = (events: string[]): string => {
    let out = '';
    for (const event of events) out += relayEvent(event);
    return out;
  };
  const recordWritten = () => {
    for (const item of unrecorded.splice(0)) {
      try {
        record(item.data, item.parsed ?? parseForRecording(item));
      } catch (error) {
        // A chunk the recording cannot take is a malformed one, never a crash of the server the proxy runs in.
        record(item.data, { ok: false, error: error as Error });
      }
    }
  };
  /** Writes (and records) what waits: the rest of a burst. */
  const catchUp = () => {
    catchUpScheduled = false;
    let out = relayEvents(unsplitEvents.splice(0));
    for (const bytes of unsplit.splice(0)) out += relayEvents(splitter.push(bytes));
    if (out && !passThrough) res.write(out);
    recordWritten();
  };
  const scheduleCatchUp = () => {
    if (catchUpScheduled) return;
    catchUpScheduled = true;
    setImmediate(catchUp);
  };

  return new Promise((resolve) => {
    let failure: string | null = null;
    upstream.on('data', (chunk: Buffer) => {
      if (passThrough) res.write(chunk);
      if (catchUpScheduled) {
        unsplit.push(chunk);
        return;
      }
      // Nothing waits ahead of this read: its first event goes out now. A large burst is cut after that event first,
      // so the rest is not even decoded before it is written.
      const boundary = chunk.length > 2 * BURST_BYTES ? chunk.indexOf('\n\n') : -1;
      const cut = boundary >= 0 && chunk.length - boundary > BURST_BYTES ? boundary + 2 : chunk.length;
      const streamStart = !firstDataSeen;
      const events = splitter.push(cut === chunk.length ? chunk : chunk.subarray(0, cut));
      if (cut < chunk.length) unsplit.push(chunk.subarray(cut));
      if (events.length > 0) {
        const first = relayEvent(events[0]!);
        if (first && !passThrough) res.write(first);
        for (let k = 1; k < events.length; k++) unsplitEvents.push(events[k]!);
      }
      // The stream's first event is recorded after its bytes went; so is everything once a catch-up is due.
      if ((streamStart && firstDataSeen) || unsplit.length > 0 || unsplitEvents.length > 0) scheduleCatchUp();
      else recordWritten();
    });
    upstream.on('end', () => {
      let out = relayEvents(unsplitEvents.splice(0));
      for (const bytes of unsplit.splice(0)) out += relayEvents(splitter.push(bytes));
      out += relayEvents(splitter.flush());
      if (passThrough || !out) res.end();
      else res.end(out);
      recordWritten();
      resolve(failure);
    });
    upstream.on('error', (error) => {
      failure ??= `upstream stream failed: ${error.message}`;
      res.destroy();
      // What arrived is still recorded; nothing more is written to a response that is gone.
      relayEvents(unsplitEvents.splice(0));
      for (const bytes of unsplit.splice(0)) relayEvents(splitter.push(bytes));
      recordWritten();
      resolve(failure);
    });
    upstream.on('aborted', () => {
      failure ??= 'upstream closed the stream early';
    });
  });
}

/** A read larger than this, with as much after its first event, is a burst: its first event is cut off and written first. */
const BURST_BYTES = 16 * 1024;

function parse(data: string): ParsedData {
  try {
    return { ok: true, payload: JSON.parse(data) };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

/** The recording's payload from what the scan read, or from parsing the data whole (also for the error it gives). */
function parseForRecording(item: WrittenEvent): ParsedData {
  if (item.recording === null) return parse(item.data);
  try {
    return { ok: true, payload: recordedPayload(item.recording) };
  } catch {
    return parse(item.data);
  }
}

/** Copies what stripInjected deletes from (the payload and its choices), so the recorded payload keeps it all. */
function shallowCopy(payload: unknown): unknown {
  if (!payload || typeof payload !== 'object') return payload;
  if (Array.isArray(payload)) return payload;
  const copy: Record<string, unknown> = { ...(payload as Record<string, unknown>) };
  if (Array.isArray(copy.choices)) {
    copy.choices = copy.choices.map((choice: unknown) =>
      choice && typeof choice === 'object' && !Array.isArray(choice) ? { ...(choice as Record<string, unknown>) } : choice,
    );
  }
  return copy;
}
