import assert from 'node:assert/strict';

/** One sample of a Prometheus text-format scrape: `name{label="value",...} number`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample of a scrape (comments skipped); a line that is neither fails the test, so the format is checked too. */
export function parseScrape(text: string): Sample[] {
  return text.split('\n').flatMap((line) => {
    if (line === '' || line.startsWith('#')) return [];
    const match = LINE.exec(line);
    assert.ok(match, `not a Prometheus sample line: ${line}`);
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(LABEL)].map((m) => [m[1] as string, m[2] as string]));
    return [{ name: match[1] as string, labels, value: Number(match[3]) }];
  });
}

/** The sample of `name` whose labels include `labels`; 0 if there is none (a counter not yet incremented). */
export function valueOf(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.reduce((sum, s) => sum + s.value, 0);
}

/** Every value a label takes among the samples of metrics whose names start with `prefix`. */
export function labelValues(samples: readonly Sample[], prefix: string, label: string): Set<string> {
  return new Set(samples.filter((s) => s.name.startsWith(prefix) && s.labels[label] !== undefined).map((s) => s.labels[label] as string));
}
