/** A row as it travels in JSON: dates become ISO 8601 strings. */
export type Jsonified<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K]
}

export function withIsoDates<T extends object>(row: T): Jsonified<T> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(row)) out[key] = value instanceof Date ? value.toISOString() : value
  return out as Jsonified<T>
}
