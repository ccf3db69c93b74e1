/** Shorter strings are not scrubbed: they are too likely to be ordinary words (e.g. "EMPTY"). */
const MIN_SECRET_LENGTH = 8;

/** Replaces every occurrence of each secret, however it was embedded, before anything is written. */
export function scrubSecrets(text: string, secrets: Array<string | undefined>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= MIN_SECRET_LENGTH) {
      // The raw secret, then each level of JSON escaping it may sit under (JSON text inside JSON, as in tool calls).
      let form = secret;
      for (let depth = 0; depth < 4; depth += 1) {
        if (out.includes(form)) out = out.split(form).join('[redacted]');
        const escaped = JSON.stringify(form).slice(1, -1);
        if (escaped === form) break;
        form = escaped;
      }
    }
  }
  return out;
}
