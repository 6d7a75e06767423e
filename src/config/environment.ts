import { readFileSync } from 'node:fs';
import { ConfigFileSchema } from './schema.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * `MCIAS_SECTION_KEY` overrides `[section] key`; `MCIAS_SECTION_KEY_FILE` reads that value from a file, so secrets
 * such as a PostgreSQL URL with a password can come from a mounted secret. Lists are comma-separated.
 * Returns which variable set each overridden setting (`tokens.user_ttl` -> `MCIAS_TOKENS_USER_TTL`).
 */
export function applyEnvironment(target: Record<string, unknown>, env: Env, problems: string[]): Map<string, string> {
  const sources = new Map<string, string>();
  const all = [...leaves(ConfigFileSchema, [])].map(([name, leaf, container]) => ({
    name,
    leaf,
    container,
    envName: `MCIAS_${name.join('_').toUpperCase()}`,
  }));
  const leafNames = new Set(all.map((l) => l.envName));
  for (const { name, leaf, container, envName } of all) {
    let value = env[envName];
    let source = envName;
    // MCIAS_MASTER_KEY_FILE names the master_key_file setting itself, not a file holding MCIAS_MASTER_KEY.
    const fileVariant = leafNames.has(`${envName}_FILE`) ? undefined : env[`${envName}_FILE`];
    if (value === undefined && fileVariant !== undefined) {
      source = `${envName}_FILE`;
      try {
        value = readFileSync(fileVariant, 'utf8').trim();
      } catch (error) {
        problems.push(`${envName}_FILE: cannot read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
        continue;
      }
    }
    if (value === undefined) continue;
    sources.set(name.join('.'), source);
    let node = target;
    for (const key of container) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    const key = name.at(-1) as string;
    if (leaf === 'integer') {
      node[key] = /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    } else if (leaf === 'array') {
      node[key] = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    } else if (leaf === 'boolean') {
      const word = value.trim().toLowerCase();
      node[key] = word === 'true' || word === '1' ? true : word === 'false' || word === '0' ? false : value;
    } else {
      node[key] = value;
    }
  }
  return sources;
}

type Leaf = 'string' | 'integer' | 'array' | 'boolean';

function* leaves(schema: unknown, prefix: string[]): Generator<[string[], Leaf, string[]]> {
  const properties = (schema as { properties?: Record<string, unknown> }).properties ?? {};
  for (const [key, child] of Object.entries(properties)) {
    const type = (child as { type?: string }).type;
    if (type === 'object') yield* leaves(child, [...prefix, key]);
    else yield [[...prefix, key], type === 'integer' || type === 'array' || type === 'boolean' ? type : 'string', prefix];
  }
}
