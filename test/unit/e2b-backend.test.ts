// Covers the pure parts of the E2B backend: shell quoting of argv, the wrapper command line, exit statuses as
// envd reports them, and the creation limiter (with fake time).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { CreateLimiter, type LimiterClock } from '../../src/sandbox/e2b/create-limiter.js';
import { exitFromEnvd } from '../../src/sandbox/e2b/exit-status.js';
import { killCommandLine, quoteArgv, shellQuote, wrappedCommandLine } from '../../src/sandbox/e2b/shell.js';

/** What bash makes of a command line that prints each of its words NUL-terminated. */
function wordsSeenByBash(commandLine: string): string[] {
  const out = execFileSync('bash', ['-c', `printf '%s\\0' ${commandLine}`], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

describe('shellQuote / quoteArgv', () => {
  const awkward = [
    'plain',
    '',
    ' ',
    "it's",
    '"double"',
    '$HOME',
    '`id`',
    '$(id)',
    'a\\b',
    '*',
    '~',
    'line\nbreak',
    '-n',
    '!x',
    'tab\tx',
    'é✓',
  ];

  it('makes bash see every word literally', () => {
    assert.deepEqual(wordsSeenByBash(awkward.map(shellQuote).join(' ')), awkward);
  });

  it('leaves safe words unquoted and quotes the rest', () => {
    assert.equal(shellQuote('/usr/bin/python3'), '/usr/bin/python3');
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
    assert.equal(shellQuote(''), `''`);
  });

  it('runs a first word that looks like an assignment as a program, not an assignment', () => {
    assert.equal(quoteArgv(['A=b', 'A=b']), `'A=b' A=b`);
    assert.throws(() => quoteArgv([]), /empty command/);
  });
});

describe('wrappedCommandLine', () => {
  it('runs the argv with the marker, reports its status, and kills what it left behind', () => {
    const seconds = 200_000 + Math.floor(Math.random() * 100_000);
    const line = wrappedCommandLine(
      ['bash', '-c', `sleep ${seconds} & setsid sleep ${seconds + 1} & echo "$OPENCODE_ENV_PROCESS_ID"; exit 7`],
      'm-1',
    );
    let status = 0;
    let stdout: string;
    try {
      stdout = execFileSync('bash', ['-c', line], { encoding: 'utf8' });
    } catch (error) {
      status = (error as { status: number }).status;
      stdout = (error as { stdout: string }).stdout;
    }
    assert.equal(status, 7, 'the exit status of the program');
    assert.equal(stdout, 'm-1\n', 'the program sees its marker');
    const left = execFileSync('bash', ['-c', `pgrep -f "^sleep (${seconds}|${seconds + 1})$" || true`], { encoding: 'utf8' });
    assert.equal(left, '', 'its background children, even the one in a session of its own, are gone');
  });

  it('reports a program killed by a signal as 128 + the signal, as bash does', () => {
    const line = wrappedCommandLine(['bash', '-c', 'kill -TERM $$'], 'm-2');
    const status = (() => {
      try {
        execFileSync('bash', ['-c', line]);
        return 0;
      } catch (error) {
        return (error as { status: number }).status;
      }
    })();
    assert.equal(status, 143);
  });

  it('refuses markers that would need quoting', () => {
    assert.throws(() => wrappedCommandLine(['true'], 'a b'), /invalid process marker/);
    assert.throws(() => killCommandLine('$(id)'), /invalid process marker/);
  });
});

describe('exitFromEnvd', () => {
  it('keeps exit codes, naming the signal of a 128 + n status', () => {
    assert.deepEqual(exitFromEnvd(0, undefined, false), { exitCode: 0, signal: null });
    assert.deepEqual(exitFromEnvd(3, 'exit status 3', false), { exitCode: 3, signal: null });
    assert.deepEqual(exitFromEnvd(137, 'exit status 137', true), { exitCode: 137, signal: 'SIGKILL' });
  });

  it('maps envd\'s signalled process (exit code -1, "signal: …") to 128 + signal', () => {
    assert.deepEqual(exitFromEnvd(-1, 'signal: killed', true), { exitCode: 137, signal: 'SIGKILL' });
    assert.deepEqual(exitFromEnvd(-1, 'signal: terminated', false), { exitCode: 143, signal: 'SIGTERM' });
    assert.deepEqual(exitFromEnvd(-1, undefined, false), { exitCode: 137, signal: 'SIGKILL' });
  });

  it('reports an end envd never described as a kill when we killed it, else as a failure', () => {
    assert.deepEqual(exitFromEnvd(null, undefined, true), { exitCode: 137, signal: 'SIGKILL' });
    assert.deepEqual(exitFromEnvd(null, undefined, false), { exitCode: 1, signal: null });
  });
});

/** Time that moves only when a test says so; sleepers wake in order once their time has come. */
function fakeClock(): LimiterClock & { advance(ms: number): Promise<void>; time: number } {
  const sleepers: { until: number; wake: () => void }[] = [];
  const clock = {
    time: 0,
    now: () => clock.time,
    sleep: (ms: number) => new Promise<void>((wake) => sleepers.push({ until: clock.time + ms, wake })),
    async advance(ms: number) {
      clock.time += ms;
      for (const sleeper of sleepers.filter((s) => s.until <= clock.time)) {
        sleepers.splice(sleepers.indexOf(sleeper), 1);
        sleeper.wake();
      }
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
  return clock;
}

describe('CreateLimiter', () => {
  it('lets the first creation go at once and spaces a burst one interval apart, in arrival order', async () => {
    const clock = fakeClock();
    const limiter = new CreateLimiter(2, clock);
    const granted: [number, number][] = [];
    const burst = [0, 1, 2, 3].map((i) => limiter.acquire().then(() => granted.push([i, clock.time])));
    await clock.advance(0);
    assert.deepEqual(granted, [[0, 0]]);
    await clock.advance(499);
    assert.equal(granted.length, 1, 'the second waits a full interval (500 ms at 2/s)');
    await clock.advance(1);
    await clock.advance(500);
    await clock.advance(500);
    await Promise.all(burst);
    assert.deepEqual(granted, [
      [0, 0],
      [1, 500],
      [2, 1000],
      [3, 1500],
    ]);
  });

  it('does not wait after a quiet spell, and never lets two through within an interval', async () => {
    const clock = fakeClock();
    const limiter = new CreateLimiter(1, clock);
    await limiter.acquire();
    await clock.advance(5000);
    let second = false;
    void limiter.acquire().then(() => (second = true));
    await clock.advance(0);
    assert.equal(second, true, 'a creation long after the last one goes at once');
    let third = false;
    void limiter.acquire().then(() => (third = true));
    await clock.advance(999);
    assert.equal(third, false, 'one per second: the next waits');
    await clock.advance(1);
    assert.equal(third, true);
  });

  it('rejects a rate that is not a positive number', () => {
    assert.throws(() => new CreateLimiter(0), RangeError);
    assert.throws(() => new CreateLimiter(Number.NaN), RangeError);
  });
});
