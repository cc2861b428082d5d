import { Context } from '@temporalio/activity';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ActivityDeps } from './deps';
import { runFiles } from '../runs/files';
import { CorruptDataError, NotFoundError } from '../storage';
import { mapFailures } from './failures';
import { withRunFolder, type WithEarlierFolderName } from './run-folder';

/** How often the watch reads the export's progress file. */
const LOOK_EVERY_MS = 200;
/** A watch that sees nothing new ends after this long (the run may look again). */
const WATCH_FOR_MS = 20_000;

export interface ExportedChunksInput {
  configurationId: string;
  /** The run's folder under runs/<configurationId>/. */
  runFolder: string;
  /** The chunks the run knows of: the watch ends when the export has made more final. */
  after: number;
  watchForMs?: number;
}

/** The chunk files the export has made final so far (export-progress.json counts them). */
export interface ExportedChunks {
  chunkCount: number;
  contacts: number;
}

export function createExportedChunksActivities(deps: ActivityDeps) {
  const { blobs } = deps.stores;
  return {
    /**
     * Waits while a part of the export runs until it has made chunk files final beyond `after`
     * (or WATCH_FOR_MS pass), so the run updates them while the listing goes on. Reads only.
     */
    async awaitExportedChunks(
      given: ExportedChunksInput | WithEarlierFolderName<ExportedChunksInput>,
    ): Promise<ExportedChunks> {
      return mapFailures(async () => {
        const input = withRunFolder(given);
        const context = Context.current();
        const until = Date.now() + (input.watchForMs ?? WATCH_FOR_MS);
        let partsEnded: number | undefined;
        for (;;) {
          const { ended, parts, ...now } = await readExported(input);
          partsEnded ??= parts;
          // Once the export or the part it watches has ended, the part tells the run the rest.
          if (now.chunkCount > input.after || ended || parts !== partsEnded || Date.now() >= until)
            return now;
          context.heartbeat();
          await sleep(LOOK_EVERY_MS, undefined, { signal: context.cancellationSignal });
        }
      });
    },
  };

  async function readExported(
    input: ExportedChunksInput,
  ): Promise<ExportedChunks & { ended?: boolean; parts: number }> {
    const key = runFiles.exportProgress(input.configurationId, input.runFolder);
    try {
      const saved = JSON.parse((await blobs.get(key)).body.toString('utf8')) as Partial<
        ExportedChunks & { ended: boolean; partsEnded: number }
      >;
      if (!Number.isInteger(saved.chunkCount)) {
        throw new CorruptDataError('blob', key, 'it has no chunk count');
      }
      return {
        chunkCount: saved.chunkCount!,
        contacts: saved.contacts ?? 0,
        ended: saved.ended,
        parts: saved.partsEnded ?? 0,
      };
    } catch (err) {
      if (err instanceof NotFoundError) return { chunkCount: 0, contacts: 0, parts: 0 };
      if (err instanceof SyntaxError) throw new CorruptDataError('blob', key, 'it does not parse');
      throw err;
    }
  }
}
