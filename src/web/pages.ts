// Server-rendered pages. Every value put into HTML goes through `escapeHtml`; no client script.
import { escapeHtml } from '../lib/html';

export { escapeHtml };

/** `refresh`: the browser reloads the page, or loads `url` (live progress without any script). */
export function page(
  title: string,
  body: string,
  status?: { kind: 'ok' | 'error' },
  options: { refresh?: { seconds: number; url?: string } } = {},
): string {
  const refresh = options.refresh
    ? `<meta http-equiv="refresh" content="${options.refresh.seconds}${options.refresh.url ? `; url=${escapeHtml(options.refresh.url)}` : ''}">`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${refresh}
<title>${escapeHtml(title)} · espresso</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2.5rem auto; padding: 0 1rem; color: #1f2937; }
  h1 { font-size: 1.6rem; } code, .tag { background: #f3f4f6; padding: 0.1rem 0.35rem; border-radius: 0.25rem; }
  .tag { font-size: 1.1rem; display: inline-block; padding: 0.4rem 0.7rem; }
  .box { border: 1px solid #e5e7eb; border-radius: 0.5rem; padding: 1rem 1.2rem; margin: 1rem 0; }
  .error { border-color: #fca5a5; background: #fef2f2; } .ok { border-color: #86efac; background: #f0fdf4; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 0.35rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
  button, .button { font-size: 1rem; padding: 0.45rem 1rem; cursor: pointer; }
  form.inline { display: inline; } input[type=text], input[type=password] { width: 100%; font-size: 1rem; padding: 0.4rem; box-sizing: border-box; }
  .muted { color: #6b7280; font-size: 0.9rem; }
</style>
</head>
<body>
<p class="muted"><a href="/">espresso</a></p>
${status ? `<div class="box ${status.kind}">` : '<div>'}
${body}
</div>
</body>
</html>`;
}

export function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
}
