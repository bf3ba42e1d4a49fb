#!/usr/bin/env node
'use strict';
// Entry point for `npx i2v`: runs the compiled CLI (built by `npm ci` / `npm run build`).
require('../dist/client.js')
  .main(process.argv)
  .then((code) => process.exit(code));
