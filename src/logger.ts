import pino, { type DestinationStream, type Logger } from 'pino'

/** Log paths that may carry secrets; pino replaces them before anything is written. */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.authorization',
  '*.clientSecret',
  '*.password',
  '*.privateKey',
  '*.pfx',
  '*.secret',
  '*.apiKey',
]

interface LoggedError {
  type: string
  message: string | undefined
  code?: unknown
  stack?: string
  cause?: LoggedError | unknown
}

/**
 * Errors are logged by type, message, code and stack, and their cause the same way; nothing
 * else they carry. A failed query's error holds its parameters (sealed secrets, key hashes),
 * PostgreSQL's `detail` can repeat a row's values and its data exceptions quote the value:
 * none of them is written.
 */
export function serializeError(error: unknown, depth = 0): LoggedError | unknown {
  if (!(error instanceof Error)) return error
  const code = (error as { code?: unknown }).code
  let message = error.message
  let stack = error.stack
  /** Replaces the message where the stack repeats it; a stack that does not is dropped with it. */
  const replaceMessage = (safe: string) => {
    stack = stack?.includes(message) ? stack.replace(message, () => safe) : undefined
    message = safe
  }
  // Drizzle's DrizzleQueryError: `Failed query: <sql>\nparams: <values>`, in the message and the stack.
  const { query, params } = error as { query?: unknown; params?: unknown }
  if (typeof query === 'string' && Array.isArray(params)) {
    replaceMessage(`Failed query: ${query}\nparams: [${params.length} not logged]`)
  }
  // PostgreSQL's data exceptions (class 22) quote the offending value: `invalid input syntax for type integer: "..."`.
  if (typeof code === 'string' && code.startsWith('22')) {
    replaceMessage(message.replace(/: ".*$/s, ': [value not logged]'))
  }
  return {
    type: error.name,
    message,
    ...(code !== undefined ? { code } : {}),
    stack,
    ...(error.cause !== undefined && depth < 4 ? { cause: serializeError(error.cause, depth + 1) } : {}),
  }
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    { level, redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' }, serializers: { err: serializeError, error: serializeError } },
    destination,
  )
}
