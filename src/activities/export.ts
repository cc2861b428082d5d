import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { ActivityDeps } from '.';
import { loadTarget } from '.';
import type { ListMode } from '../processors/types';
import { NotFoundError } from '../storage';
import { CHUNK_LINES, exportManifestSchema, runFiles, type ExportManifest } from '../runs/files';
import { mapFailures } from './failures';
import { runLog } from './run-log';
import { SeenIds } from './seen-ids';
import { HEARTBEAT_EVERY_MS } from './update-chunk';

export interface ExportInput {
  configurationId: string;
  runDate: string;
  mode: ListMode;
}

/** Heartbeat details: enough to resume after the last chunk written. Keys and counts only. */
interface ExportProgress {
  cursor?: string;
  chunkCount: number;
  contacts: number;
  alreadySet: number;
}

const VALID_VALUE = /^[A-Za-z0-9_-]{16,64}$/;

/** A new value: 128 random bits, base64url. Never derived from anything about the contact. */
export function newValue(): string {
  return randomBytes(16).toString('base64url');
}

export function createExportActivities(deps: ActivityDeps) {
  return {
    /**
     * Pages through the contacts needing a value, gives each a new value and writes chunk files of
     * at most CHUNK_LINES lines. A retried attempt resumes after the last chunk written (its page
     * cursor is heartbeated); a finished export is reused by reruns of the same run date.
     */
    async exportContacts(input: ExportInput): Promise<ExportManifest> {
      return mapFailures(async () => {
        const { blobs } = deps.stores;
        const manifestKey = runFiles.exportManifest(input.configurationId, input.runDate);
        try {
          return exportManifestSchema.parse(JSON.parse((await blobs.get(manifestKey)).body.toString('utf8')));
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
        }
        const { processor, target } = await loadTarget(deps, input.configurationId);
        const context = Context.current();
        // What is safely in chunk files, and the cursor of the first page that is not.
        let committed: ExportProgress = (context.info.heartbeatDetails as ExportProgress | undefined) ?? {
          chunkCount: 0,
          contacts: 0,
          alreadySet: 0,
        };
        let cursor = committed.cursor;
        let lines: string[] = [];
        let pendingAlreadySet = 0;

        const flush = async () => {
          let chunkCount = committed.chunkCount;
          for (let i = 0; i < lines.length; i += CHUNK_LINES) {
            const key = runFiles.contacts(input.configurationId, input.runDate, ++chunkCount);
            await blobs.put(key, lines.slice(i, i + CHUNK_LINES).join('\n') + '\n', {
              contentType: 'application/x-ndjson',
            });
          }
          committed = {
            cursor,
            chunkCount,
            contacts: committed.contacts + lines.length,
            alreadySet: committed.alreadySet + pendingAlreadySet,
          };
          lines = [];
          pendingAlreadySet = 0;
        };

        // Alive even while a slow ESP answers; the details always say what is in chunk files.
        const beat = setInterval(() => context.heartbeat(committed), HEARTBEAT_EVERY_MS);
        // Offset paging (Mailchimp) repeats contacts when the list changes during the listing: a
        // contact must never get two values, so every repeat is dropped, across resumes too.
        const seen = new SeenIds();
        for (let n = 1; n <= committed.chunkCount; n++) {
          for await (const line of blobs.readLines(
            runFiles.contacts(input.configurationId, input.runDate, n),
          )) {
            const id = contactIdOf(line);
            if (id) seen.add(id);
          }
        }
        try {
          for (;;) {
            const page = await processor.listPage(target, cursor, input.mode);
            const fresh: string[] = [];
            let alreadySet = 0;
            for (const contact of page.contacts) {
              if (!seen.add(contact.contactId)) continue;
              // Stable once written: a contact that has a value keeps it.
              if (contact.currentValue !== undefined && VALID_VALUE.test(contact.currentValue)) alreadySet++;
              else fresh.push(JSON.stringify({ contactId: contact.contactId, value: newValue() }));
            }
            // Chunk files hold whole pages, so resuming from this page's cursor loses nothing.
            if (lines.length > 0 && lines.length + fresh.length > CHUNK_LINES) await flush();
            lines.push(...fresh);
            pendingAlreadySet += alreadySet;
            context.heartbeat(committed);
            if (!page.nextCursor) break;
            cursor = page.nextCursor;
          }
          cursor = undefined;
          await flush();
        } finally {
          clearInterval(beat);
        }

        const manifest: ExportManifest = {
          chunkCount: committed.chunkCount,
          contacts: committed.contacts,
          alreadySet: committed.alreadySet,
          mode: input.mode,
          finishedAt: new Date().toISOString(),
        };
        await blobs.put(manifestKey, JSON.stringify(manifest, null, 2) + '\n', {
          contentType: 'application/json',
        });
        runLog(deps, context, { ...input, esp: processor.descriptor.id }).info(
          { chunks: manifest.chunkCount, contacts: manifest.contacts, alreadySet: manifest.alreadySet },
          'export finished',
        );
        return manifest;
      });
    },
  };
}

function contactIdOf(line: string): string | undefined {
  try {
    const id = (JSON.parse(line) as { contactId?: unknown }).contactId;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined; // a damaged line: updateChunk reports it
  }
}
