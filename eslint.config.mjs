import { builtinModules } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const root = import.meta.dirname;

/**
 * What workflow code may import as values (type-only imports are erased, so they may come from
 * anywhere): the Temporal workflow SDK, other workflow files, and these modules, which are
 * deterministic, touch no I/O and are held to the same rule.
 */
const WORKFLOW_PACKAGES = new Set(['@temporalio/workflow', '@temporalio/common']);
const WORKFLOW_SAFE_MODULES = [
  'src/temporal/constants.ts',
  'src/temporal/failure-types.ts',
  'src/runs/report.ts',
  'src/codec/readable-text.ts',
];
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

const workflowImports = {
  meta: {
    type: 'problem',
    docs: { description: 'Workflow code imports only what runs deterministically in the workflow sandbox' },
    messages: {
      builtin:
        "'{{source}}' is a Node built-in: workflow code runs in Temporal's deterministic sandbox, which has none (do the I/O in an activity).",
      module:
        "'{{source}}' is not workflow code: import it as a type only, or move the value into src/workflows (or a module listed as safe in eslint.config.mjs).",
    },
    schema: [],
  },
  create(context) {
    const file = context.filename;
    const allowed = (source) => {
      if (WORKFLOW_PACKAGES.has(source)) return true;
      if (!source.startsWith('.')) return false;
      const target = relative(root, resolve(dirname(file), source)).replace(/\\/g, '/');
      return (
        target.startsWith('src/workflows/') ||
        target === 'src/workflows' ||
        WORKFLOW_SAFE_MODULES.some((m) => m === target || m === `${target}.ts`)
      );
    };
    const check = (node, source, typeOnly) => {
      if (typeOnly || typeof source !== 'string') return;
      if (NODE_BUILTINS.has(source)) context.report({ node, messageId: 'builtin', data: { source } });
      else if (!allowed(source)) context.report({ node, messageId: 'module', data: { source } });
    };
    const onlyTypes = (node) =>
      node.importKind === 'type' ||
      node.exportKind === 'type' ||
      (node.specifiers?.length > 0 &&
        node.specifiers.every((s) => s.importKind === 'type' || s.exportKind === 'type'));
    return {
      ImportDeclaration: (node) => check(node, node.source.value, onlyTypes(node)),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value, onlyTypes(node)),
      ExportAllDeclaration: (node) => check(node, node.source.value, node.exportKind === 'type'),
      ImportExpression: (node) =>
        check(node, node.source.value ?? `${context.sourceCode.getText(node.source)}`, false),
      CallExpression: (node) => {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require')
          check(
            node,
            node.arguments[0]?.value ?? context.sourceCode.getText(node.arguments[0] ?? node),
            false,
          );
      },
    };
  },
};

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.espresso/', '.tools/', 'test/artifacts/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // A promise nobody awaits loses its failure: every one is awaited, returned, or marked `void`.
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: root } },
    rules: { '@typescript-eslint/no-floating-promises': 'error' },
  },
  {
    files: ['src/workflows/**/*.ts', ...WORKFLOW_SAFE_MODULES],
    plugins: { espresso: { rules: { 'workflow-imports': workflowImports } } },
    rules: { 'espresso/workflow-imports': 'error' },
  },
);
