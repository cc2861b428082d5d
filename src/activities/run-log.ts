import type { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';
import { createLogger } from '../logger';

const fallback = createLogger('worker', 'silent');

/** A logger whose every line names the run: configuration id, run folder, ESP, workflow id. */
export function runLog(
  deps: ActivityDeps,
  context: Context,
  run: { configurationId: string; runFolder: string; esp: string },
) {
  return (deps.log ?? fallback).child({
    configurationId: run.configurationId,
    runFolder: run.runFolder,
    esp: run.esp,
    workflowId: context.info.workflowExecution?.workflowId,
    activity: context.info.activityType,
  });
}
