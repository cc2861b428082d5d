// Iterable lists users through an export job: the job writes NDJSON files, listed (paged with
// startAfter) by GET /api/export/{jobId}/files with links that expire after 30 minutes. Every start,
// page and poll counts against the exports limit (1/s). The file list is cached per job for a while.
import { z } from 'zod';
import type { EspCall } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { pollJob } from './kit/poll';
import { expectShape } from './kit/shape';

/** File download links expire after 30 minutes: refresh the list before that. */
const FILES_TTL_MS = 20 * 60_000;

const exportStarted = z.object({ jobId: z.int() });
const exportFilesPage = z.object({
  exportTruncated: z.boolean().optional(),
  files: z.array(z.object({ file: z.string(), url: z.string() })),
  jobState: z.string(),
});
type ExportFiles = Required<z.output<typeof exportFilesPage>>;

/** Starts a user export job: its cursor `jobId:0:0` reads it from the start. */
export async function startUserExport(call: EspCall, fieldName: string): Promise<string> {
  const { body } = await call(
    {
      method: 'POST',
      url: '/api/export/start',
      json: {
        dataTypeName: 'user',
        outputFormat: 'application/x-json-stream',
        onlyFields: ['email', 'userId', fieldName].join(','),
      },
    },
    { limit: 'exports' },
  );
  return `${expectShape(exportStarted, body, 'Iterable', 'the export start').jobId}:0:0`;
}

/** The export files of recent jobs, per processor (a cache: any worker can list them again). */
export class IterableExportFiles {
  private readonly files = new Map<string, { at: number; body: ExportFiles }>();

  /** Polls a pending job every `pollMs` (doubling) for at most `waitMs` per page. */
  constructor(
    private readonly pollMs: number,
    private readonly waitMs: number,
  ) {}

  /** After a link answered that it expired: every job's list is fetched again. */
  forget(): void {
    this.files.clear();
  }

  /** The job's file at `index`, once the job has written it; polls with backoff for a while. */
  async file(
    call: EspCall,
    cacheKey: string,
    jobId: string,
    index: number,
  ): Promise<{ file: string; url: string } | 'pending' | 'done'> {
    const found = await pollJob(
      async () => {
        const cached = this.files.get(cacheKey);
        const fresh = cached && Date.now() - cached.at < FILES_TTL_MS ? cached.body : undefined;
        if (fresh?.files[index]) return fresh.files[index];
        if (fresh?.jobState.toLowerCase() === 'completed') return 'done' as const;
        const body = await this.listFiles(call, cacheKey, jobId);
        if (body.files[index]) return body.files[index];
        const state = body.jobState.toLowerCase();
        if (state === 'completed') return 'done' as const;
        if (state === 'enqueued' || state === 'running') return undefined;
        throw new TransientError(`Iterable export job ${jobId} ended as ${body.jobState.slice(0, 40)}`);
      },
      { firstDelayMs: this.pollMs, waitMs: this.waitMs, signal: call.signal },
    );
    return found ?? 'pending';
  }

  private async listFiles(call: EspCall, cacheKey: string, jobId: string): Promise<ExportFiles> {
    const all: ExportFiles = { exportTruncated: false, files: [], jobState: 'Enqueued' };
    let startAfter: string | undefined;
    for (;;) {
      // Every page and every poll counts against the 1/s limit.
      const { body } = await call(
        { method: 'GET', url: `/api/export/${jobId}/files`, query: { startAfter } },
        { limit: 'exports' },
      );
      const page = expectShape(exportFilesPage, body, 'Iterable', 'the export files');
      all.files.push(...page.files);
      all.jobState = page.jobState;
      all.exportTruncated ||= page.exportTruncated === true;
      if (page.files.length === 0 || page.jobState.toLowerCase() !== 'completed') break;
      startAfter = page.files[page.files.length - 1]!.file;
    }
    if (all.exportTruncated)
      throw new RequestRejectedError('Iterable truncated the user export (over 100 GB)');
    this.files.set(cacheKey, { at: Date.now(), body: all });
    for (const key of [...this.files.keys()].slice(0, -8)) this.files.delete(key);
    return all;
  }
}
