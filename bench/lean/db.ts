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

/** The PGlite instance Mailgate itself has open: an embedded database has one owner per directory. */
export function leanPglite(client: PGlite): LeanSql {
  return {
    async query<T>(text: string, params: unknown[]) {
      return (await client.query<T>(text, params)).rows
    },
    // Mailgate owns the instance and closes it.
    close: async () => {},
  }
}
