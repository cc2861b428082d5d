import type { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';
import { createLogger } from '../logger';

const fallback = createLogger('worker', 'silent');

/** A logger whose every line names the run: configuration id, run date, ESP, workflow id. */
export function runLog(
  deps: ActivityDeps,
  context: Context,
  run: { configurationId: string; runDate: string; esp: string },
) {
  return (deps.log ?? fallback).child({
    configurationId: run.configurationId,
    runDate: run.runDate,
    esp: run.esp,
    workflowId: context.info.workflowExecution?.workflowId,
    activity: context.info.activityType,
  });
}
