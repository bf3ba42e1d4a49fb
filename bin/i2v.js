#!/bin/sh
':' //; MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"; export MALLOC_ARENA_MAX; exec node "$0" "$@"
'use strict';
// Entry point for `npx i2v`: runs the compiled CLI (built by `npm ci` / `npm run build`).
//
// Run as a program (npx i2v, ./bin/i2v.js), this file is first a shell script: the line above caps glibc's malloc
// arenas at 2 unless MALLOC_ARENA_MAX is already set, then replaces the shell with node running this same file, to
// which that line is only a string and a comment. glibc reads the setting once, when a process starts, so node
// cannot set it for itself; without it, a worker's memory at 1,000 shots varies 375-470 MB from run to run instead
// of staying near 345 MB (bench/README.md, "Memory"). `node bin/i2v.js` skips the shell and the setting.
require('../dist/client.js')
  .main(process.argv)
  .then((code) => process.exit(code));
