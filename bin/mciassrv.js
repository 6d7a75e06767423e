#!/usr/bin/env -S node --max-semi-space-size=4 --expose-gc
// The Node.js options on the line above are part of how mciassrv runs, whichever way it is started: npx, a global
// install, the systemd unit, `npm start` (which runs this file, not `node` on it) and the tests' and the bench's
// spawn helper (test/support/server-process.ts reads them from this line). `gc`, for the one collection serve runs
// once it has started, keeps the idle server's resident memory down; 4 MB young-generation semi-spaces (Node's
// default grows to 16 MB) bound what load adds to it (docs/operations.md, "Memory and in-process caches"). Change
// them here only. What it runs is the server's bundle, dist/mciassrv/, which `npm run build` writes (scripts/bundle.mjs).
import { main } from '../dist/mciassrv/mciassrv.js';

await main(process.argv);
