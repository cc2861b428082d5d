// The export's files in a run's folder: its progress (where a retry or the next part resumes), the
// ESP export job it reads, its manifest, and the chunk files it has written.
import type { Context } from '@temporalio/activity';
import type { MaintenanceReport } from '../processors/types';
import { refuseDryRun } from '../runs/dry-runs';
import {
  exportJobSchema,
  exportManifestSchema,
  runFiles,
  type ExportManifest,
  type ResultLine,
} from '../runs/files';
import { ConflictError, CorruptDataError, NotFoundError, type BlobStore } from '../storage';
import { SeenIds } from './seen-ids';

/**
 * Heartbeat details, and the export's progress file: enough to resume after the last chunk
 * written. Keys and counts only.
 */
export interface ExportProgress {
  cursor?: string;
  chunkCount: number;
  contacts: number;
  alreadySet: number;
  foreignValues?: number;
  replacing?: number;
  maintenance?: MaintenanceReport;
  maintenanceMs?: number;
  /** The export has written its manifest (a watch of its progress may stop). */
  ended?: boolean;
  /** Parts of the export that have ended so far (a watch of a part that ended may stop). */
  partsEnded?: number;
  /** Beside chunk updates: what the export keeps of the account's rate (the chunks take the rest). */
  exportKeeps?: number;
  /** Beside chunk updates: its last pages are on their way (chunks read this file more often). */
  endsSoon?: boolean;
  /**
   * Beside chunk updates, from the last page on: the chunk files the export makes in all (the
   * chunks beside it take their shares by it before it has ended). A retry never raises it; one
   * that lists contacts added meanwhile may make a file more, and the chunks beside it then hold
   * one chunk's share too many until they read that the export has ended.
   */
  lastChunkCount?: number;
}

/** One run's folder, as its export reads and writes it. */
export class ExportFolder {
  constructor(
    private readonly blobs: BlobStore,
    readonly configurationId: string,
    readonly folder: string,
  ) {}

  get manifestKey(): string {
    return runFiles.exportManifest(this.configurationId, this.folder);
  }

  chunkKey(chunk: number): string {
    return runFiles.contacts(this.configurationId, this.folder, chunk);
  }

  /** The finished export's manifest; undefined while the export has not finished. */
  async manifest(): Promise<ExportManifest | undefined> {
    try {
      return exportManifestSchema.parse(
        JSON.parse((await this.blobs.get(this.manifestKey)).body.toString('utf8')),
      );
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async writeManifest(manifest: ExportManifest): Promise<void> {
    await this.blobs.put(this.manifestKey, JSON.stringify(manifest, null, 2) + '\n', {
      contentType: 'application/json',
    });
  }

  async writeChunk(chunk: number, lines: string[]): Promise<void> {
    await this.blobs.put(this.chunkKey(chunk), lines.join('\n') + '\n', {
      contentType: 'application/x-ndjson',
    });
  }

  /**
   * Where a retried attempt or a later part resumes: the progress file, or this attempt's last
   * heartbeat when it says as many chunks (it may be further along the pages that gave none); with
   * the less the two say the export keeps of the account.
   */
  async resumeFrom(context: Context): Promise<ExportProgress | undefined> {
    const beat = context.info.heartbeatDetails as ExportProgress | undefined;
    const key = runFiles.exportProgress(this.configurationId, this.folder);
    let saved: ExportProgress | undefined;
    try {
      saved = JSON.parse((await this.blobs.get(key)).body.toString('utf8')) as ExportProgress;
    } catch (err) {
      if (err instanceof SyntaxError) throw new CorruptDataError('blob', key, 'it does not parse');
      if (!(err instanceof NotFoundError)) throw err;
    }
    if (saved && !Number.isInteger(saved.chunkCount)) {
      throw new CorruptDataError('blob', key, 'it has no chunk count');
    }
    const resumed = !saved || (beat && beat.chunkCount >= saved.chunkCount) ? beat : saved;
    // What the export keeps of the account and the chunk files it said it makes only shrink, and
    // the chunks beside it take their shares by them as soon as either says so (the progress file
    // may say it last: at the last page).
    if (!resumed) return resumed;
    const least = (field: 'exportKeeps' | 'lastChunkCount') => {
      const said = [beat?.[field], saved?.[field]].filter((n): n is number => typeof n === 'number');
      return said.length > 0 ? { [field]: Math.min(...said) } : {};
    };
    return { ...resumed, ...least('exportKeeps'), ...least('lastChunkCount') };
  }

  async saveProgress(progress: ExportProgress): Promise<void> {
    await this.blobs.put(
      runFiles.exportProgress(this.configurationId, this.folder),
      JSON.stringify(progress) + '\n',
      { contentType: 'application/json' },
    );
  }

  /**
   * The cursor of the ESP export job this run's listing reads: the saved one, or one started now
   * and saved before anything reads it (a retry never starts a second job). Undefined: no job.
   */
  async exportJob(start: () => Promise<string | undefined>): Promise<string | undefined> {
    const key = runFiles.exportJob(this.configurationId, this.folder);
    const saved = async () => {
      try {
        return exportJobSchema.parse(JSON.parse((await this.blobs.get(key)).body.toString('utf8'))).cursor;
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
    };
    const found = await saved();
    if (found) return found;
    const cursor = await start();
    if (!cursor) return undefined;
    try {
      await this.blobs.put(key, JSON.stringify({ cursor }) + '\n', {
        ifNoneMatch: '*',
        contentType: 'application/json',
      });
      return cursor;
    } catch (err) {
      // An attempt that outlived its time limit saved its job first: read that one.
      if (err instanceof ConflictError) return (await saved()) ?? cursor;
      throw err;
    }
  }

  /** The contact ids in the folder's first `chunkCount` chunk files. */
  async seenInChunks(chunkCount: number): Promise<SeenIds> {
    const seen = new SeenIds();
    for (let n = 1; n <= chunkCount; n++) {
      for await (const line of this.blobs.readLines(this.chunkKey(n))) {
        const id = parseChunkLine(line)?.contactId;
        if (id) seen.add(id);
      }
    }
    return seen;
  }

  /**
   * The lines of this (earlier) run that were not updated then (its chunk files minus the `updated`
   * lines of its results files), streamed chunk by chunk. The run must have finished its export
   * and must not be a dry run.
   */
  async notUpdated(): Promise<() => AsyncIterable<{ contactId: string; value: string }>> {
    const { blobs, configurationId, folder } = this;
    await refuseDryRun(blobs, configurationId, folder);
    const manifest = await this.manifest();
    if (!manifest)
      throw new CorruptDataError(
        'blob',
        this.manifestKey,
        'run ' + folder + ' has no finished export to redispatch',
      );
    const chunkKey = (chunk: number) => this.chunkKey(chunk);
    return async function* () {
      for (let chunk = 1; chunk <= manifest.chunkCount; chunk++) {
        const updated = new Set<string>();
        try {
          for await (const raw of blobs.readLines(runFiles.results(configurationId, folder, chunk))) {
            if (!raw.trim()) continue;
            const line = JSON.parse(raw) as ResultLine;
            if (line.status === 'updated' && line.contactId) updated.add(line.contactId);
          }
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err; // a chunk never dispatched: nothing updated
        }
        for await (const raw of blobs.readLines(chunkKey(chunk))) {
          const line = parseChunkLine(raw);
          if (line && !updated.has(line.contactId)) yield line;
        }
      }
    };
  }
}

function parseChunkLine(line: string): { contactId: string; value: string } | undefined {
  try {
    const parsed = JSON.parse(line) as { contactId?: unknown; value?: unknown };
    return typeof parsed.contactId === 'string' && typeof parsed.value === 'string'
      ? { contactId: parsed.contactId, value: parsed.value }
      : undefined;
  } catch {
    return undefined; // a damaged line: updateChunk reports it
  }
}
