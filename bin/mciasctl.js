#!/usr/bin/env node
import { main } from '../dist/src/cli/mciasctl/index.js';

await main(process.argv);
