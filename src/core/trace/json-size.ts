/**
 * The UTF-8 size of `JSON.stringify(value)`, computed without building the string: the trace budget is checked
 * before a turn is serialised, so a turn too large to store never costs a second copy of itself in memory.
 * Throws where JSON.stringify throws (a BigInt; a cycle, as a stack overflow).
 */
export function jsonBytes(value: unknown): number {
  return valueBytes(value) ?? 4; // a top-level undefined: counted as null
}

/** Bytes of one value; undefined for what JSON.stringify leaves out of objects (undefined, functions, symbols). */
function valueBytes(value: unknown): number | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return valueBytes((value as { toJSON: () => unknown }).toJSON());
  }
  switch (typeof value) {
    case 'string':
      return stringBytes(value);
    case 'number':
      return Number.isFinite(value) ? String(value).length : 4;
    case 'boolean':
      return value ? 4 : 5;
    case 'bigint':
      throw new TypeError('Do not know how to serialize a BigInt');
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) return 4;
  if (Array.isArray(value)) {
    let bytes = 2 + Math.max(0, value.length - 1);
    for (const item of value) bytes += valueBytes(item) ?? 4;
    return bytes;
  }
  let bytes = 2;
  let members = 0;
  for (const key of Object.keys(value as object)) {
    const size = valueBytes((value as Record<string, unknown>)[key]);
    if (size === undefined) continue;
    bytes += stringBytes(key) + 1 + size;
    members += 1;
  }
  return bytes + Math.max(0, members - 1);
}

/** What the fast path cannot count with native calls: rare control characters and lone surrogates. */
// eslint-disable-next-line no-control-regex
const RARE_ESCAPES = /[\x00-\x08\x0b\x0c\x0e-\x1f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function occurrences(text: string, char: string): number {
  let count = 0;
  for (let at = text.indexOf(char); at !== -1; at = text.indexOf(char, at + 1)) count += 1;
  return count;
}

/** A JSON string literal's UTF-8 bytes. Long strings (request bodies) are measured with native scans. */
function stringBytes(text: string): number {
  if (text.length < 256 || RARE_ESCAPES.test(text)) return scannedStringBytes(text);
  const escaped = ['"', '\\', '\n', '\r', '\t'].reduce((sum, char) => sum + occurrences(text, char), 0);
  return 2 + Buffer.byteLength(text) + escaped;
}

/** Character by character: quotes, escapes (\" \\ \n …, \u00XX, lone surrogates as \uXXXX) and UTF-8 characters. */
function scannedStringBytes(text: string): number {
  let bytes = 2;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) {
      if (code === 0x22 || code === 0x5c) bytes += 2;
      else if (code >= 0x20) bytes += 1;
      else bytes += code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
    } else if (code < 0x800) {
      bytes += 2;
    } else if (code >= 0xd800 && code <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4; // a surrogate pair: one 4-byte character
      i += 1;
    } else if (code >= 0xd800 && code <= 0xdfff) {
      bytes += 6; // a lone surrogate, which JSON.stringify escapes
    } else {
      bytes += 3;
    }
  }
  return bytes;
}
