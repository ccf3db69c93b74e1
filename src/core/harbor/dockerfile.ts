/**
 * What a Harbor task's environment/Dockerfile asks of its sandbox, as far as a backend without images can honour it.
 *
 * The rule (the local backend runs on this host's tools, with no image of its own):
 * - `FROM` a plain python, ubuntu or debian image (any tag, `docker.io/library/` allowed) is taken as "a Linux with
 *   Python", which the host provides; its tag (the Python version) is not checked.
 * - `WORKDIR` is the sandbox's workdir, whatever its path; `COPY`/`ADD` of files from environment/ into it become
 *   files staged in the workdir.
 * - Instructions that change nothing the agent or verifier sees (`LABEL`, `EXPOSE`, `CMD`, `ENTRYPOINT`, ...) are
 *   ignored.
 * - Anything else (`RUN`, `ENV`, `USER`, another base image, a second stage, a copy from elsewhere) is a need the host
 *   cannot meet: the task needs the image itself, which only a backend that builds images can give.
 * A task with no Dockerfile (and no `docker_image`) declares no environment needs and runs on the host's tools.
 */

import path from 'node:path';

const PLAIN_IMAGES = ['python', 'ubuntu', 'debian'];
const IGNORED = new Set(['LABEL', 'MAINTAINER', 'EXPOSE', 'CMD', 'ENTRYPOINT', 'HEALTHCHECK', 'STOPSIGNAL']);

interface DockerfileCopy {
  /** Sources as written, relative to environment/ (the build context). */
  sources: string[];
  /** Destination relative to the workdir ('' for the workdir itself), and whether it names a directory. */
  destination: string;
  intoDirectory: boolean;
  line: number;
}

export interface DockerfilePlan {
  /** The first FROM's image, or null when there is none. */
  baseImage: string | null;
  copies: DockerfileCopy[];
  /** The last WORKDIR, resolved (relative ones against the one before), or null when there is none. */
  workdir: string | null;
  /** The first thing the host cannot provide, as a phrase ("the image X built with `RUN ...` (line 3)"), or null. */
  unmet: string | null;
}

/** Logical lines (continuations joined, comments and blanks dropped) with the number of the line each starts on. */
function logicalLines(text: string): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = [];
  let pending: { line: number; text: string } | null = null;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const trimmed = raw.trim();
    if (pending === null && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (pending !== null && trimmed.startsWith('#')) continue;
    const continued = trimmed.endsWith('\\');
    const part = continued ? trimmed.slice(0, -1).trim() : trimmed;
    pending = pending ? { line: pending.line, text: `${pending.text} ${part}`.trim() } : { line: index + 1, text: part };
    if (!continued) {
      out.push(pending);
      pending = null;
    }
  }
  if (pending) out.push(pending);
  return out;
}

function isPlainImage(image: string): boolean {
  const name = image
    .replace(/^docker\.io\//, '')
    .replace(/^library\//, '')
    .split(/[:@]/)[0]!;
  return PLAIN_IMAGES.includes(name);
}

/** A COPY/ADD's arguments without its flags, in shell or JSON form. */
function copyArguments(rest: string): string[] | null {
  const words = rest.split(/\s+/).filter(Boolean);
  while (words[0]?.startsWith('--')) {
    // --chown/--chmod do not change what the files hold; --from (another stage or image) is a copy from elsewhere.
    if (words[0].startsWith('--from')) return null;
    words.shift();
  }
  const remaining = words.join(' ');
  if (remaining.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(remaining);
      return Array.isArray(parsed) && parsed.every((p) => typeof p === 'string') ? parsed : null;
    } catch {
      return null;
    }
  }
  return words;
}

/** Reads a Dockerfile's text into what the host would have to provide; see the rule above. */
export function planDockerfile(text: string): DockerfilePlan {
  const plan: DockerfilePlan = { baseImage: null, copies: [], workdir: null, unmet: null };
  const unmet = (what: string, line: number) => {
    const image = plan.baseImage ? `the image ${plan.baseImage}` : 'an image';
    plan.unmet ??= `${image} built with \`${what.length > 80 ? `${what.slice(0, 77)}...` : what}\` (environment/Dockerfile line ${line})`;
  };
  for (const { line, text: instruction } of logicalLines(text)) {
    const [keyword = '', ...restWords] = instruction.split(/\s+/);
    const op = keyword.toUpperCase();
    const rest = restWords.join(' ');
    if (op === 'FROM') {
      const image = restWords.filter((w) => !w.startsWith('--'))[0] ?? '';
      if (plan.baseImage !== null) {
        unmet(instruction, line); // a second stage
      } else {
        plan.baseImage = image;
        if (!isPlainImage(image)) plan.unmet ??= `the image ${image} (environment/Dockerfile line ${line})`;
      }
    } else if (IGNORED.has(op)) {
      continue;
    } else if (op === 'WORKDIR') {
      // Docker resolves a relative WORKDIR against the one before it, the first against /.
      plan.workdir = path.posix.resolve(plan.workdir ?? '/', rest);
    } else if (op === 'COPY' || op === 'ADD') {
      const args = copyArguments(rest);
      const sources = args?.slice(0, -1) ?? [];
      const target = args?.at(-1);
      const remote = sources.some((s) => /^[a-z]+:\/\//i.test(s) || s.startsWith('/') || s.split('/').includes('..'));
      const destination = target === undefined ? null : relativeToWorkdir(target, plan.workdir);
      if (!args || sources.length === 0 || remote || destination === null) {
        unmet(instruction, line);
      } else {
        const intoDirectory = sources.length > 1 || target!.endsWith('/') || target === '.';
        plan.copies.push({ sources, destination, intoDirectory, line });
      }
    } else {
      unmet(instruction, line);
    }
  }
  return plan;
}

/** A COPY destination as a path relative to the WORKDIR, or null when it lands outside it. */
function relativeToWorkdir(target: string, workdir: string | null): string | null {
  const normalize = (p: string) => p.split('/').filter((part) => part !== '' && part !== '.');
  if (!target.startsWith('/')) {
    const parts = normalize(target);
    return parts.includes('..') ? null : parts.join('/');
  }
  if (workdir === null) return null;
  const base = normalize(workdir);
  const parts = normalize(target);
  if (parts.includes('..') || parts.length < base.length || base.some((p, i) => parts[i] !== p)) return null;
  return parts.slice(base.length).join('/');
}
