import { readFileSync } from 'node:fs';
import { MciasClient, ServiceTokenKeeper } from '@mcias/client';
import pg from 'pg';

/**
 * A service that keeps its own MCIAS token alive (renewed at two thirds of its life, written back 0600) and gets its
 * PostgreSQL login from MCIAS: no database password in its configuration.
 */
export async function startService(options: { client: MciasClient; tokenFile: string; service: string }): Promise<{
  keeper: ServiceTokenKeeper;
  query<T extends pg.QueryResultRow>(sql: string): Promise<T[]>;
  stop(): Promise<void>;
}> {
  const keeper = new ServiceTokenKeeper({
    client: options.client,
    file: options.tokenFile,
    onError: (error) => console.error(`token renewal failed, retrying: ${(error as Error).message}`),
  });
  await keeper.start();
  let pool = new pg.Pool(await keeper.client.pgcreds(options.service));
  return {
    keeper,
    async query<T extends pg.QueryResultRow>(sql: string) {
      try {
        return (await pool.query<T>(sql)).rows;
      } catch (error) {
        // 28P01: the password was rotated since we fetched it. Fetch the current one and try once more.
        if ((error as { code?: string }).code !== '28P01') throw error;
        await pool.end();
        pool = new pg.Pool(await keeper.client.pgcreds(options.service));
        return (await pool.query<T>(sql)).rows;
      }
    },
    async stop() {
      keeper.stop();
      await pool.end();
    },
  };
}

if (import.meta.main) {
  const env = (name: string) => process.env[name] ?? (console.error(`set ${name}`), process.exit(2));
  const client = new MciasClient({ server: env('MCIAS_URL'), caCert: readFileSync(env('MCIAS_CA_CERT')) });
  const service = await startService({ client, tokenFile: env('MCIAS_TOKEN_FILE'), service: env('MCIAS_SERVICE') });
  const [row] = await service.query<{ user: string }>('select current_user as user');
  console.log(JSON.stringify({ service: env('MCIAS_SERVICE'), database_user: row?.user }));
  // A real service would now serve requests; this one checks its database once a minute until stopped.
  const timer = setInterval(() => void service.query('select 1').catch((e: Error) => console.error(e.message)), 60_000);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    void service.stop();
  });
}
