#!/usr/bin/env node
import { main } from '../dist/src/cli/mciasctl.js';

await main(process.argv);
