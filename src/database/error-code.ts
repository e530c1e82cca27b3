/**
 * The SQLSTATE of a failed query (23505 unique_violation, 23503 foreign_key_violation, ...),
 * as postgres.js and PGlite report it; Drizzle wraps the driver's error as the cause.
 */
export function databaseErrorCode(error: unknown): string | undefined {
  return (error as { cause?: { code?: string } })?.cause?.code ?? (error as { code?: string })?.code
}
