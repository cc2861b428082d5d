// Links an ESP's answer hands out for files (SendGrid and Iterable export files, SendGrid's import
// error reports) are fetched without the API key, from wherever the answer says. So they are
// checked first: HTTPS to a named host (no IP address, no localhost, no user:password), or the
// ESP API's own origin (the test fakes); and a redirect is never followed. A link that fails the
// check is refused with the ESP's name and the link's origin only (its query holds a signature).
import { isIP } from 'node:net';
import { RequestRejectedError } from './errors';

export function fileLink(raw: string, what: string, apiBase: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RequestRejectedError(`${what}: the ESP answered a link that is not a URL`);
  }
  if (url.origin === new URL(apiBase).origin) return url;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const local = host === 'localhost' || host.endsWith('.localhost') || isIP(host) !== 0;
  if (url.protocol !== 'https:' || local || url.username || url.password) {
    throw new RequestRejectedError(
      `${what}: the ESP answered a link to ${url.protocol}//${url.host}, which espresso does not download from (HTTPS to a named host only)`,
    );
  }
  return url;
}

/** Use with `redirect: 'manual'`: a file link that redirects is refused, never followed. */
export async function refuseRedirect(res: Response, what: string): Promise<void> {
  if (res.status < 300 || res.status > 399) return;
  await res.body?.cancel();
  throw new RequestRejectedError(
    `${what}: the link answered with a redirect, which espresso does not follow`,
  );
}
