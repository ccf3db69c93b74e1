/** Scripts for the scripted model that make opencode (the agent) do hostile things, and helpers to read what it did. */

/** The agent answers at once and does nothing. */
export const IDLE_AGENT = { turns: [{ text: 'Done.' }] };

/** The agent stays in its first model call for two minutes (to cancel, disconnect or kill mid-rollout). */
export const STALLED_AGENT = { turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] };

/** The agent runs each bash command in turn (each with a generous tool timeout), then says it is done. */
export function agentRuns(...commands: string[]): Record<string, unknown> {
  return {
    turns: [
      ...commands.map((command) => ({ tool_calls: [{ name: 'bash', arguments: { command, description: 'step', timeout: 600_000 } }] })),
      { text: 'Done.' },
    ],
  };
}

/** A bash command that runs a Python program. */
export function python(program: string): string {
  return `python3 - <<'PY'\n${program}\nPY`;
}

/**
 * Python helpers for an agent that talks to its LLM endpoint directly: `llm_base()` finds the URL opencode
 * was given (its config in the environment, or a parent process's), and `raw()` sends a request exactly as
 * written (no URL normalisation), sending the body while it reads the answer, so an early 413 is seen.
 */
export const PY_LLM_CLIENT = String.raw`
import json, os, socket, threading
from urllib.parse import urlsplit

def llm_base():
    text = os.environ.get('OPENCODE_CONFIG_CONTENT')
    pid = os.getppid()
    while not text and pid > 1:
        try:
            for entry in open(f'/proc/{pid}/environ', 'rb').read().split(b'\0'):
                if entry.startswith(b'OPENCODE_CONFIG_CONTENT='):
                    text = entry.split(b'=', 1)[1].decode()
            pid = int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])
        except OSError:
            break
    return json.loads(text)['provider']['llm']['options']['baseURL']

def raw(method, target, body=b'{}'):
    base = urlsplit(llm_base())
    sock = socket.create_connection((base.hostname, base.port), timeout=300)
    head = (f'{method} {target} HTTP/1.1\r\nHost: {base.netloc}\r\nAuthorization: Bearer opencode-env-proxy\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n').encode()
    def send():
        try:
            sock.sendall(head)
            view = memoryview(body)
            for i in range(0, len(body), 1 << 20):
                sock.sendall(view[i:i + (1 << 20)])
        except OSError:
            pass
    threading.Thread(target=send, daemon=True).start()
    answer = b''
    try:
        while len(answer) < (1 << 16):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError:
        pass
    sock.close()
    try:
        return int(answer.split(b' ', 2)[1])
    except (IndexError, ValueError):
        return 0

def chat_body(size):
    """A chat request whose user message is size bytes long, built without extra copies."""
    return b'{"model": "scripted-model", "stream": false, "messages": [{"role": "user", "content": "' + b'x' * size + b'"}]}'
`;
