import type { PGlite } from '@electric-sql/pglite'
import postgres from 'postgres'

/**
 * The one thing the lean prototypes need from a database: run a parameterized statement and
 * get its rows. postgres.js prepares each statement once per connection (named prepared
 * statements); PGlite's own `query` runs it through the extended protocol with parameters.
 */
export interface LeanSql {
  query<T>(text: string, params: unknown[]): Promise<T[]>
  close(): Promise<void>
}

/** A postgres.js pool of its own, as large as Mailgate's (`max`). */
export function leanPostgres(url: string, max: number): LeanSql {
  const sql = postgres(url, { max, onnotice: () => {}, connection: { application_name: 'mailgate-lean' } })
  return {
    async query<T>(text: string, params: unknown[]) {
      return (await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true })) as unknown as T[]
    },
    close: () => sql.end({ timeout: 5 }),
  }
}

const TIMESTAMPTZ = 1184

/**
 * The PGlite instance Mailgate itself has open: an embedded database has one owner per
 * directory. Mailgate gives the instance Drizzle's parsers, which leave timestamps as text;
 * the prototype turns them into Dates itself, as PGlite's default parser would.
 */
export function leanPglite(client: PGlite): LeanSql {
  return {
    async query<T>(text: string, params: unknown[]) {
      const result = await client.query<Record<string, unknown>>(text, params)
      const timestamps = result.fields.filter((field) => field.dataTypeID === TIMESTAMPTZ).map((field) => field.name)
      if (timestamps.length > 0) {
        for (const row of result.rows) for (const name of timestamps) if (typeof row[name] === 'string') row[name] = new Date(row[name])
      }
      return result.rows as T[]
    },
    // Mailgate owns the instance and closes it.
    close: async () => {},
  }
}
