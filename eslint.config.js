// @ts-check
// Flat config. TypeScript (src/, test/, bench/) is linted with type information through typescript-eslint's
// project service; plain JavaScript (this file, scripts/, the sandbox's resources/) with @eslint/js only.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Node's globals, for the plain .js/.mjs files (TypeScript files get theirs from @types/node). */
const nodeGlobals = Object.fromEntries(
  [
    'AbortController',
    'AbortSignal',
    'Buffer',
    'URL',
    'URLSearchParams',
    'TextDecoder',
    'TextEncoder',
    'clearImmediate',
    'clearInterval',
    'clearTimeout',
    'console',
    'fetch',
    'performance',
    'global',
    'globalThis',
    'process',
    'queueMicrotask',
    'setImmediate',
    'setInterval',
    'setTimeout',
    'structuredClone',
  ].map((name) => [name, 'readonly']),
);

/** Relative specifiers, at any depth, that name a layer above core/ and sandbox/. */
const upperLayers = ['**/tools/*', '**/transports/*', '**/commands/*', '**/mcp/*', '**/config.js', '**/config.ts'];

export default defineConfig(
  globalIgnores(['dist/', 'node_modules/', '.test-tmp/', 'coverage/']),

  {
    files: ['**/*.{js,mjs,cjs}'],
    extends: [js.configs.recommended],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module', globals: nodeGlobals },
  },

  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: {
          // bench/ has no tsconfig.json of its own and the root one covers src/ only; test/tsconfig.json
          // (which includes bench/) is what `npm run typecheck` uses for it, so use its options here too.
          allowDefaultProject: ['bench/*.ts'],
          defaultProject: 'test/tsconfig.json',
          // One per bench script (the default allows 8).
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 16,
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // The codebase uses `any` deliberately at a few boundaries (JSON, SDK callbacks); the unsafe-* family
      // would flag every use of such a value.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // node:test's describe()/it()/test() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] },
      ],
      // Async methods without an await are how this codebase implements Promise-returning interfaces
      // (Sandbox, tool handlers); the rule only asks for churn there.
      '@typescript-eslint/require-await': 'off',
      // Full checks, checksVoidReturn included: the codebase has no async callbacks passed where a void one is
      // expected. If event-handler idioms make it noisy, relax with { checksVoidReturn: { arguments: false } }.
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },

  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ group: upperLayers, message: 'core/ knows no transport, tool, command or config: pass what it needs in' }],
        },
      ],
    },
  },

  {
    files: ['src/sandbox/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [...upperLayers, '**/core/*'],
              message: 'sandbox/ knows no core, transport, tool, command or config: pass what it needs in',
            },
          ],
        },
      ],
    },
  },
);
