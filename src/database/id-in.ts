import { sql, type Column, type SQL } from 'drizzle-orm'

/**
 * `column = any('{…}'::uuid[])`: one parameter whatever the number of ids, so the statement's
 * text stays the same for any length, where `in ($1, …, $n)` is a new text for every length.
 * (Only a statement Drizzle was asked to `.prepare()` is prepared on the server.) The ids are
 * UUIDs this service made or checked.
 */
export function idIn(column: Column, ids: readonly string[]): SQL {
  return sql`${column} = any(${`{${ids.join(',')}}`}::uuid[])`
}

/**
 * A PostgreSQL array literal of any text values (quoted and escaped), for one `text[]`
 * parameter of a prepared statement: `column = any($1::text[])`.
 */
export function textArrayLiteral(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/["\\]/g, '\\$&')}"`).join(',')}}`
}
