import { escapeHtml } from '../src/lib/html';

/** A horizontal bar chart as a standalone SVG. */
export function barChart(title: string, bars: Array<{ label: string; value: number }>): string {
  const max = Math.max(1, ...bars.map((b) => b.value));
  const rowHeight = 28;
  const labelWidth = 190;
  const barWidth = 480;
  const height = 50 + bars.length * rowHeight;
  const rows = bars
    .map((b, i) => {
      const y = 40 + i * rowHeight;
      const w = Math.max(1, Math.round((b.value / max) * barWidth));
      return `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${escapeHtml(b.label)}</text>
<rect x="${labelWidth}" y="${y + 4}" width="${w}" height="${rowHeight - 8}" fill="#6b4f3a"/>
<text x="${labelWidth + w + 6}" y="${y + 17}">${b.value.toLocaleString('en-US')}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + barWidth + 110}" height="${height}" font-family="sans-serif" font-size="13">
<text x="10" y="22" font-size="15" font-weight="bold">${escapeHtml(title)}</text>
${rows}
</svg>
`;
}
