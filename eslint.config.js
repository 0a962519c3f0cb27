// A hub lives on promises: the rules that catch a forgotten or misused promise are on.
// The layers of src/ are kept by no-restricted-imports: dependencies point inward,
// core ← hub (hub/, delivery/, lifecycle/, stats/) ← stores and cluster ← postgres/ (one engine under both)
// ← testing and the entry points.
import tseslint from 'typescript-eslint';

/** Engine clients and test runners: each only in the layer that owns it. */
const ENGINES = ['pg', 'ioredis', '@nats-io/*', '@opentelemetry/*', 'node:test'];

/** The server's own dependencies: only src/server and src/cli load them, so a program that imports the library never does. */
const SERVER_ONLY = { group: ['ws', 'jose', 'pino'], message: 'the server\'s dependencies are loaded by herald/server and the herald command only' };

/**
 * A `no-restricted-imports` rule that refuses the given relative folders and the engines, saying why.
 * @param {string[]} forbidden
 * @param {string} why
 */
function layer(forbidden, why) {
  return ['error', {
    patterns: [
      { group: forbidden, message: why },
      { group: ENGINES, message: `${why}: engine clients and test runners belong to their own entry point` },
      SERVER_ONLY,
    ],
  }];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'scratch/'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'test/support/record-loads.mjs'] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test owns the promises its registration calls return.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/core/**'],
    rules: { 'no-restricted-imports': layer(['../**'], 'src/core imports nothing else of herald') },
  },
  {
    files: ['src/hub/**', 'src/delivery/**', 'src/lifecycle/**', 'src/stats/**'],
    ignores: ['src/stats/otel-bridge.ts'],
    rules: {
      'no-restricted-imports': layer(
        ['../store/**', '../cluster/**', '../postgres/**', '../server/**', '../testing/**', '../*.js'],
        'the hub never imports a store, an engine, the testing kit or an entry point: it knows a backplane only through core/backplane-port',
      ),
    },
  },
  {
    files: ['src/stats/otel-bridge.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['../store/**', '../cluster/**', '../postgres/**', '../testing/**', '../hub/**', '../delivery/**', '../*.js'], message: 'the OpenTelemetry bridge reads only the public stats' }, SERVER_ONLY] }] },
  },
  {
    files: ['src/store/**', 'src/cluster/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../testing/**', '../*.js'], message: 'stores and backplanes never import the testing kit or an entry point' },
          { group: ['../postgres/**', 'pg'], message: 'PostgreSQL lives in src/postgres/, which builds on the store and the cluster, not the other way' },
          { group: ['../server/**'], message: 'the server builds on the stores, not the other way' },
          { group: ['node:test'], message: 'no test runner outside the testing kit' },
          SERVER_ONLY,
        ],
      }],
    },
  },
  {
    files: ['src/postgres/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../testing/**', '../*.js', '../server/**'], message: 'the PostgreSQL engine never imports the testing kit, the server or an entry point' },
          { group: ['ioredis', '@nats-io/*', 'node:test'], message: 'src/postgres/ holds PostgreSQL only' },
          SERVER_ONLY,
        ],
      }],
    },
  },
  {
    files: ['src/cli/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          // Engines come through their entry points, loaded only when a flag asks for one.
          { group: ['../testing/**', '../testing.js', '../postgres/**', '../cluster/**'], message: 'the command line builds on the server, the hub, the stores and the engines\' entry points' },
          { group: ['pg', 'ioredis', '@nats-io/*', 'node:test'], message: 'engine clients come through their entry points (herald/postgres, herald/redis, herald/nats)' },
        ],
      }],
    },
  },
  {
    files: ['src/server/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../testing/**', '../*.js', '../postgres/**', '../cluster/**'], message: 'the server uses a hub and a store as given, through their public types' },
          { group: ['pg', 'ioredis', '@nats-io/*', 'node:test'], message: 'engine clients belong to their own entry point' },
        ],
      }],
    },
  },
  {
    // The library's entry points: importing herald never loads the server or its dependencies.
    files: ['src/index.ts', 'src/testing.ts', 'src/postgres.ts', 'src/redis.ts', 'src/nats.ts', 'src/otel.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['./server/**', './cli/**'], message: 'only herald/server and the herald command load the server' }, SERVER_ONLY] }] },
  },
  {
    // The live page is plain browser JavaScript, served as it is: linted without type information.
    files: ['ui/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { parserOptions: { projectService: false }, globals: { document: 'readonly', window: 'readonly', fetch: 'readonly', sessionStorage: 'readonly', EventSource: 'readonly', URLSearchParams: 'readonly', setTimeout: 'readonly', setInterval: 'readonly' } },
  },
  {
    // Tests and the benchmark drive values of unknown shape on purpose.
    files: ['test/**', 'bench/**', 'src/testing/conformance/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
);
