/**
 * Shell text for E2B commands. The SDK runs every command as `/bin/bash -l -c <string>`, so an argv has to be
 * quoted into that string, and the process-tree handling (see `wrappedCommandLine`) lives in it too.
 */

/** Environment variable that marks every process of one command, including what escapes its session. */
const PROCESS_MARKER = 'OPENCODE_ENV_PROCESS_ID';

/** One word for bash, quoted so that it is taken literally: `'…'`, with each `'` written as `'\''`. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** argv as one bash command line that runs exactly that program with exactly those arguments. */
export function quoteArgv(argv: string[]): string {
  if (argv.length === 0) throw new RangeError('empty command');
  // A leading NAME=value word would be read as an assignment: quoting it makes it the program's name.
  return argv.map((word, index) => (index === 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(word) ? `'${word}'` : shellQuote(word))).join(' ');
}

/**
 * Shell function `__opencode_env_sweep MARKER=ID`: SIGKILLs every process whose environment holds that exact entry,
 * until none is left (bounded: what a fork bomb forks between one scan and its kill turns up in the next).
 * One grep reads every /proc/<pid>/environ; a zombie's environ is empty, so the dead are not found again.
 */
const SWEEP_FUNCTION =
  '__opencode_env_sweep() { local r f p; for r in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do ' +
  'f=$(grep -lszxF -- "$1" /proc/[0-9]*/environ); [ -z "$f" ] && return 0; ' +
  'for p in $f; do p=${p#/proc/}; kill -9 "${p%/environ}" 2>/dev/null; done; done; }';

/**
 * The command line a sandbox process runs as. The program gets the marker in its environment (the shell around it
 * does not), so it and every descendant, even one that left its session with setsid, can be found by a /proc scan;
 * when the program exits the shell kills what it left behind and exits with its status (128 + signal when a signal
 * ended it, as bash reports). A deadline kill is `killCommandLine(marker)` plus envd's SIGKILL of the shell.
 */
export function wrappedCommandLine(argv: string[], marker: string): string {
  checkMarker(marker);
  const entry = `${PROCESS_MARKER}=${marker}`;
  return `${SWEEP_FUNCTION}; ${entry} ${quoteArgv(argv)}; __opencode_env_status=$?; __opencode_env_sweep ${shellQuote(entry)}; exit $__opencode_env_status`;
}

/** A command line that kills every process carrying `marker` (run by a separate command that does not carry it). */
export function killCommandLine(marker: string): string {
  checkMarker(marker);
  return `${SWEEP_FUNCTION}; __opencode_env_sweep ${shellQuote(`${PROCESS_MARKER}=${marker}`)}`;
}

/** Markers are written unquoted into an assignment: only characters that need no quoting. */
function checkMarker(marker: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(marker)) throw new RangeError(`invalid process marker ${JSON.stringify(marker)}`);
}
