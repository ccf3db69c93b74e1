// A small tar packer and unpacker (pure, no I/O), so that files cross a sandbox boundary as one archive each way.
// packTar writes POSIX ustar (plus pax 'x' records where ustar cannot hold a path), which GNU tar -x reads.
// unpackTar reads what tar -c makes: GNU (the default: ././@LongLink 'L'/'K' entries), pax ('x' records) and ustar (prefix field).

export interface TarEntryInput {
  path: string;
  content: Uint8Array | string;
  mode?: number /* default 0o644 */;
}

export interface TarEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  /** The file's bytes (a copy); empty unless type is 'file'. */
  content: Buffer;
  /** Symlink target, or a hard link's target path (type 'other'). */
  linkTarget?: string;
  /** Permission bits from the header (e.g. 0o755). */
  mode: number;
}

const BLOCK = 512;
const NAME_LENGTH = 100;
const PREFIX_LENGTH = 155;
const MAX_OCTAL_SIZE = 0o77777777777; // 11 octal digits: the largest size an ustar size field holds
const DEFAULT_MODE = 0o644;

/** Header field offsets and lengths (POSIX ustar; GNU shares the first 345 bytes). */
const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  checksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

// ---------------------------------------------------------------- packing

/** A ustar archive (pax 'x' records for paths that do not fit ustar's name/prefix fields, and for non-ASCII paths),
 *  ending with the two zero blocks. Directories are implied by paths (tar -x makes them). mtime: now (or a fixed arg). */
export function packTar(entries: TarEntryInput[], options?: { mtimeSeconds?: number }): Buffer {
  const mtime = Math.floor(options?.mtimeSeconds ?? Date.now() / 1000);
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const path = checkedPath(entry.path);
    const content = typeof entry.content === 'string' ? Buffer.from(entry.content, 'utf8') : Buffer.from(entry.content);
    if (content.length > MAX_OCTAL_SIZE) throw new Error(`tar: ${path} is too large for a ustar archive (${content.length} bytes)`);
    const mode = (entry.mode ?? DEFAULT_MODE) & 0o7777;
    const fields = ustarPathFields(path);
    if (!fields) {
      // GNU tar -x reads the pax 'path' record and ignores the placeholder name in the ustar header that follows.
      const records = paxRecord('path', path);
      blocks.push(header({ name: 'PaxHeader/entry', mode: 0o644, size: records.length, mtime, typeflag: 'x' }), padded(records));
    }
    const { name, prefix } = fields ?? { name: asciiPlaceholder(path), prefix: '' };
    blocks.push(header({ name, prefix, mode, size: content.length, mtime, typeflag: '0' }), padded(content));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}

/** Relative, without empty, '.' or '..' segments, no NUL: a path that tar -x puts where it says. */
function checkedPath(raw: string): string {
  const path = raw.replace(/^(\.\/)+/, '');
  const segments = path.split('/');
  const bad = path === '' || path.startsWith('/') || path.includes('\0') || segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new Error(`tar: cannot pack the path ${JSON.stringify(raw)}: it must be relative, without empty, '.' or '..' parts`);
  return path;
}

/** The ustar name and prefix for an ASCII path that fits them (split at a '/'); undefined when a pax record is needed. */
function ustarPathFields(path: string): { name: string; prefix: string } | undefined {
  if (!/^[\x20-\x7e]*$/.test(path)) return undefined;
  if (path.length <= NAME_LENGTH) return { name: path, prefix: '' };
  // The name part must stay within 100 bytes, so split at the first '/' that leaves at most that much after it.
  for (let slash = path.indexOf('/', path.length - NAME_LENGTH - 1); slash !== -1; slash = path.indexOf('/', slash + 1)) {
    if (slash > PREFIX_LENGTH) return undefined;
    if (slash > 0 && slash < path.length - 1) return { prefix: path.slice(0, slash), name: path.slice(slash + 1) };
  }
  return undefined;
}

/** An ASCII stand-in name for the header after a pax record (readers that skip pax still get something sensible). */
function asciiPlaceholder(path: string): string {
  const ascii = path.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length <= NAME_LENGTH ? ascii : ascii.slice(ascii.length - NAME_LENGTH);
}

/** One pax record, "<length> <key>=<value>\n", where length counts the whole record in bytes, its own digits included. */
function paxRecord(key: string, value: string): Buffer {
  const body = Buffer.byteLength(` ${key}=${value}\n`, 'utf8');
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  return Buffer.from(`${length} ${key}=${value}\n`, 'utf8');
}

interface HeaderFields {
  name: string;
  prefix?: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
}

function header(fields: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeText(block, FIELD.name, fields.name);
  writeOctal(block, FIELD.mode, fields.mode);
  writeOctal(block, FIELD.uid, 0);
  writeOctal(block, FIELD.gid, 0);
  writeOctal(block, FIELD.size, fields.size);
  writeOctal(block, FIELD.mtime, fields.mtime);
  writeText(block, FIELD.typeflag, fields.typeflag);
  writeText(block, FIELD.magic, 'ustar\0');
  writeText(block, FIELD.version, '00');
  writeText(block, FIELD.prefix, fields.prefix ?? '');
  // The checksum is summed with its own field read as spaces, then written as 6 octal digits, NUL, space.
  block.fill(0x20, FIELD.checksum[0], FIELD.checksum[0] + FIELD.checksum[1]);
  const sum = unsignedChecksum(block);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, FIELD.checksum[0], 'latin1');
  return block;
}

function writeText(block: Buffer, [offset, length]: readonly [number, number], text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > length) throw new Error(`tar: ${JSON.stringify(text)} does not fit a ${length}-byte header field`);
  bytes.copy(block, offset);
}

/** Zero-padded octal digits, then NUL, filling the field. */
function writeOctal(block: Buffer, [offset, length]: readonly [number, number], value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 8 ** (length - 1)) {
    throw new Error(`tar: ${value} does not fit a ${length}-byte octal header field`);
  }
  block.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, 'latin1');
}

/** The data, padded with zeros to a whole number of blocks. */
function padded(data: Buffer): Buffer {
  const remainder = data.length % BLOCK;
  return remainder === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - remainder)]);
}

// ---------------------------------------------------------------- unpacking

/** Names and sizes carried over to the next real entry by GNU 'L'/'K' entries and pax 'x' records. */
interface Pending {
  path?: string;
  linkTarget?: string;
  size?: number;
}

/** Every entry of an archive, in order; long names (GNU 'L', pax path) and ustar prefix applied; './' stripped;
 *  throws an Error naming the offset on a corrupt header (bad checksum) or a truncated archive; stops at the end blocks
 *  or at the end of the buffer. */
export function unpackTar(archive: Uint8Array): TarEntry[] {
  const bytes = Buffer.from(archive.buffer, archive.byteOffset, archive.byteLength);
  const entries: TarEntry[] = [];
  let pending: Pending = {};
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < BLOCK) {
      if (isZero(bytes.subarray(offset))) break;
      throw new Error(`tar: truncated archive: a partial header at offset ${offset}`);
    }
    const block = bytes.subarray(offset, offset + BLOCK);
    if (isZero(block)) break; // the end-of-archive blocks
    verifyChecksum(block, offset);
    const typeflag = String.fromCharCode(block[FIELD.typeflag[0]] ?? 0);
    const isMeta = typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g';
    const size = (isMeta ? undefined : pending.size) ?? readNumber(block, FIELD.size, offset);
    const dataStart = offset + BLOCK;
    // Directories, links and the like carry no data whatever their size field says (GNU 'D' dumpdirs aside).
    const dataLength =
      typeflag === '1' || typeflag === '2' || typeflag === '3' || typeflag === '4' || typeflag === '5' || typeflag === '6' ? 0 : size;
    if (dataStart + dataLength > bytes.length) {
      throw new Error(
        `tar: truncated archive: the entry at offset ${offset} needs ${dataLength} bytes of data, ${bytes.length - dataStart} remain`,
      );
    }
    const data = bytes.subarray(dataStart, dataStart + dataLength);
    const headerOffset = offset;
    offset = dataStart + Math.ceil(dataLength / BLOCK) * BLOCK;

    switch (typeflag) {
      case 'L': // GNU long name: the next entry's path
        pending.path = nulTerminated(data);
        continue;
      case 'K': // GNU long link target
        pending.linkTarget = nulTerminated(data);
        continue;
      case 'x': // pax extended header: records for the next entry
        pending = { ...pending, ...paxOverrides(data, headerOffset) };
        continue;
      case 'g': // pax global header: nothing in it changes what this reader reports
        continue;
    }

    const rawPath = pending.path ?? headerPath(block);
    // Old (v7) tars mark a directory only by a trailing '/' on a regular-file entry.
    const isV7Dir = (typeflag === '0' || typeflag === '\0') && rawPath.endsWith('/') && dataLength === 0;
    const entry: TarEntry = {
      path: normalizedPath(rawPath),
      type: isV7Dir ? 'dir' : entryType(typeflag),
      size: dataLength,
      content: Buffer.alloc(0),
      mode: readNumber(block, FIELD.mode, headerOffset) & 0o7777,
    };
    if (entry.type === 'file') entry.content = Buffer.from(data);
    if (typeflag === '1' || typeflag === '2') entry.linkTarget = pending.linkTarget ?? readText(block, FIELD.linkname);
    entries.push(entry);
    pending = {};
  }
  return entries;
}

function entryType(typeflag: string): TarEntry['type'] {
  if (typeflag === '0' || typeflag === '\0' || typeflag === '7') return 'file';
  if (typeflag === '5') return 'dir';
  if (typeflag === '2') return 'symlink';
  return 'other';
}

/** The name field, joined to the prefix field in POSIX ustar (GNU's own format keeps other data there). */
function headerPath(block: Buffer): string {
  const name = readText(block, FIELD.name);
  const isPosixUstar = readText(block, FIELD.magic) === 'ustar' && block[FIELD.magic[0] + 5] === 0;
  const prefix = isPosixUstar ? readText(block, FIELD.prefix) : '';
  return prefix === '' ? name : `${prefix}/${name}`;
}

/** Leading './' and a directory's trailing '/' removed; the archive's root ('./') becomes '.'. */
function normalizedPath(path: string): string {
  const stripped = path.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  return stripped === '' || stripped === '.' ? '.' : stripped;
}

/** The pax records this reader uses: path, linkpath, size. */
function paxOverrides(data: Buffer, offset: number): Pending {
  const overrides: Pending = {};
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break; // padding some writers leave after the last record
    const space = data.indexOf(0x20, at);
    const length = space === -1 ? NaN : Number(data.toString('latin1', at, space));
    if (!Number.isInteger(length) || length <= 0 || at + length > data.length || data[at + length - 1] !== 0x0a) {
      throw new Error(`tar: corrupt pax record in the extended header at offset ${offset}`);
    }
    const record = data.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === 'path') overrides.path = value;
    else if (key === 'linkpath') overrides.linkTarget = value;
    else if (key === 'size') overrides.size = Number(value);
    at += length;
  }
  return overrides;
}

function verifyChecksum(block: Buffer, offset: number): void {
  const stored = readNumber(block, FIELD.checksum, offset);
  // Some old tars summed signed bytes; accept either sum, as GNU tar does.
  if (stored !== unsignedChecksum(block) && stored !== signedChecksum(block)) {
    throw new Error(`tar: corrupt header at offset ${offset}: bad checksum`);
  }
}

/** The header's byte sum with the checksum field counted as eight spaces. */
function unsignedChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < FIELD.checksum[0] || i >= FIELD.checksum[0] + FIELD.checksum[1]) sum += block[i] ?? 0;
  return sum;
}

function signedChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < FIELD.checksum[0] || i >= FIELD.checksum[0] + FIELD.checksum[1]) sum += block.readInt8(i);
  return sum;
}

/** An octal field (spaces and NULs around the digits allowed), or GNU's base-256 form (high bit of the first byte set). */
function readNumber(block: Buffer, [start, length]: readonly [number, number], offset: number): number {
  const field = block.subarray(start, start + length);
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const digits = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits))
    throw new Error(`tar: corrupt header at offset ${offset}: ${JSON.stringify(digits)} is not an octal number`);
  return parseInt(digits, 8);
}

function readText(block: Buffer, [start, length]: readonly [number, number]): string {
  return nulTerminated(block.subarray(start, start + length));
}

function nulTerminated(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end === -1 ? bytes.length : end);
}

function isZero(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0) return false;
  return true;
}
