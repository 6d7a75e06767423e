#!/usr/bin/env node
import { main } from '../dist/src/cli/mciassrv.js';

await main(process.argv);
