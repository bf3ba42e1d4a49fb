import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'bench/dist/', 'node_modules/', '.tools/', 'coverage/', 'examples/', 'test/fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': 'off',
    },
  },
  {
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Workflow code must stay deterministic and replay-safe.
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'clearTimeout', 'process'],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Use workflow time (Date inside workflows is replay-safe only via new Date()).' },
        { object: 'Math', property: 'random', message: 'Use a deterministic source; randomness breaks replay.' },
      ],
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'path', 'undici', 'sharp', 'fluent-ffmpeg', '../activities', '../activities/*', '../provider/client', '../media/*', '../runs/*'], allowTypeImports: true }] }],
    },
  },
);
