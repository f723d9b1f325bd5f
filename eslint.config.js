import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { patterns: ['node:*/promises-not-a-real-module'] }],
    },
  },
  {
    // The engine core is pure: no I/O, no wall clock. The servers around it do that.
    files: ['src/engine/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: ['node:fs', 'node:net', 'node:http', 'node:timers', 'undici', 'pino'] },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'The engine core takes its clock as an argument.' },
        {
          object: 'performance',
          property: 'now',
          message: 'The engine core takes its clock as an argument.',
        },
      ],
    },
  },
);
