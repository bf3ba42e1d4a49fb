#!/bin/sh
':' //; MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"; export MALLOC_ARENA_MAX; exec node "$0" "$@"
'use strict';
// Entry point for `npx i2v`: runs the compiled CLI (built by `npm ci` / `npm run build`).
//
// Run as a program (npx i2v, ./bin/i2v.js), this file is first a shell script: the line above caps glibc's malloc
// arenas at 2 unless MALLOC_ARENA_MAX is already set, then replaces the shell with node running this same file, to
// which that line is only a string and a comment. glibc reads the setting once, when a process starts, so node
// cannot set it for itself; without it, a worker's peak at 1,000 shots varies 374-469 MB from run to run, with it
// 342-356 MB (bench/README.md, "Results"). `node bin/i2v.js` skips the shell and the setting.
require('../dist/client.js')
  .main(process.argv)
  .then((code) => process.exit(code));
