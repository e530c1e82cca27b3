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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' } }, destination)
}
