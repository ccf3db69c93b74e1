export interface Row {
  id: string;
  title: string;
  sent: string;
  cameBack: string;
  status: string;
  seconds: number | null;
}

const COLUMNS: Array<{ header: string; width: number; cell: (row: Row) => string }> = [
  { header: 'id', width: 4, cell: (r) => r.id },
  { header: 'case', width: 30, cell: (r) => r.title },
  { header: 'what was sent', width: 42, cell: (r) => r.sent },
  { header: 'what came back', width: 52, cell: (r) => r.cameBack },
  { header: 'result', width: 6, cell: (r) => r.status },
  { header: 'time', width: 7, cell: (r) => (r.seconds === null ? '' : `${r.seconds.toFixed(1)} s`) },
];

/** Breaks `text` into lines of at most `width` characters, at spaces where it can. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.replace(/\s+/g, ' ').trim().split('\n')) {
    let line = '';
    for (const word of paragraph.split(' ')) {
      for (let piece = word; piece.length > 0; piece = piece.slice(width)) {
        const chunk = piece.slice(0, width);
        if (line && line.length + 1 + chunk.length > width) {
          lines.push(line);
          line = chunk;
        } else {
          line = line ? `${line} ${chunk}` : chunk;
        }
      }
    }
    lines.push(line);
  }
  return lines;
}

/** A plain-text table with wrapped cells, one rule between rows. */
export function renderTable(rows: Row[]): string {
  const rule = `+${COLUMNS.map((c) => '-'.repeat(c.width + 2)).join('+')}+`;
  const render = (cells: string[][]) => {
    const height = Math.max(...cells.map((c) => c.length));
    return Array.from(
      { length: height },
      (_, i) => `|${cells.map((c, k) => ` ${(c[i] ?? '').padEnd(COLUMNS[k]!.width)} `).join('|')}|`,
    ).join('\n');
  };
  const out = [rule, render(COLUMNS.map((c) => [c.header])), rule];
  for (const row of rows) out.push(render(COLUMNS.map((c) => wrap(c.cell(row), c.width))), rule);
  return out.join('\n');
}
