import type { OperatorService } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { allSearchAttributes } from './constants';

const indexedType: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
};

/** espresso's custom search attributes that the namespace does not have yet. */
export async function missingSearchAttributes(operator: OperatorService, namespace: string) {
  const existing = (await operator.listSearchAttributes({ namespace })).customAttributes ?? {};
  return allSearchAttributes.filter((key) => !(key.name in existing));
}

/**
 * Registers what is missing, idempotently. The worker calls it at start, so the embedded dev
 * server and a self-hosted cluster are set up the same way. Returns the names it added.
 */
export async function registerSearchAttributes(
  operator: OperatorService,
  namespace: string,
): Promise<string[]> {
  const missing = await missingSearchAttributes(operator, namespace);
  if (missing.length > 0) {
    await operator.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, indexedType[key.type]!])),
    });
  }
  return missing.map((key) => key.name);
}
