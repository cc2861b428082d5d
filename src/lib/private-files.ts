/**
 * Files and folders espresso creates hold credentials, payload keys, contact ids and Temporal's
 * database: only the user it runs as may read them (0600 files, 0700 folders). Every entry point
 * calls this first; the processes it starts (the Temporal dev server, moto, workers) inherit it.
 */
export function keepFilesPrivate(): void {
  process.umask(0o077);
}
