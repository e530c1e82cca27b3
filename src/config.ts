import { Type, type Static } from '@sinclair/typebox'
import ipaddr from 'ipaddr.js'
import { Value } from '@sinclair/typebox/value'
import { GRAPH_LIMITS } from './graph/limits.ts'
import { DEFAULT_EVENT_RETENTION_DAYS } from './workers/housekeeping.ts'

const LogLevel = Type.Union(
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
)

/**
 * Every environment variable the service reads. Validated once at boot by loadConfig();
 * nothing else reads process.env.
 */
export const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'TCP port to listen on' }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0', description: 'Interface to bind' }),
  DATABASE_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      description: 'External PostgreSQL connection string; unset runs the embedded PGlite database',
    }),
  ),
  DATA_DIR: Type.String({ minLength: 1, default: './data', description: 'Embedded database and generated key files' }),
  MIGRATE_ON_START: Type.Boolean({
    default: false,
    description: 'Apply migrations at start on an external database (always done on the embedded one)',
  }),
  LOG_LEVEL: Type.Unsafe<Static<typeof LogLevel>>({ ...LogLevel, default: 'info' }),
  SECRETS_KEY: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9+/]{43}=$',
      description: '32 random bytes, base64 (openssl rand -base64 32)',
    }),
  ),
  SECRETS_KEY_PREVIOUS: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9+/]{43}=(,[A-Za-z0-9+/]{43}=)*$',
      description: 'Earlier SECRETS_KEY values, comma-separated, still accepted for reading while secrets are re-sealed',
    }),
  ),
  AUTHORITY_HOST: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9.-]+(:[0-9]+)?$',
      description: 'Overrides the Entra sign-in host of every cloud (sovereign or test environments)',
    }),
  ),
  GRAPH_HOST: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9.-]+(:[0-9]+)?$',
      description: 'Overrides the Microsoft Graph host of every cloud (sovereign or test environments)',
    }),
  ),
  ADMIN_API_KEY: Type.Optional(
    Type.String({ minLength: 32, maxLength: 256, pattern: '^[\\x21-\\x7e]+$', description: 'Initial admin API key' }),
  ),
  PUBLIC_BASE_URL: Type.Optional(
    Type.String({ pattern: '^https://[^\\s/]+(/[^\\s]*)?$', description: 'Externally reachable https base URL (Graph calls only https notification URLs)' }),
  ),
  CONNECTOR_FAILURE_THRESHOLD: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 5,
    description: 'Authentication or unreachable-mailbox failures in a row before a connector is disabled',
  }),
  MESSAGE_SIZE_LIMIT: Type.Integer({
    minimum: 1024,
    maximum: GRAPH_LIMITS.uploadSessionBytes,
    default: 36_700_160,
    description: 'Largest total size of one outgoing message with its attachments, in bytes',
  }),
  DISPATCHER_ENABLED: Type.Boolean({
    default: true,
    description: 'Run the outbox dispatcher in this instance (false for API-only instances)',
  }),
  SYNC_INTERVAL: Type.Integer({
    minimum: 5,
    maximum: 86_400,
    default: 60,
    description: 'Seconds between reads of each synced mailbox folder when nothing wakes it',
  }),
  WEBHOOK_ALLOW_HTTP: Type.Boolean({
    default: false,
    description: 'Accept plain http webhook URLs (a receiver on a trusted network)',
  }),
  WEBHOOK_ALLOWED_NETWORKS: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'Comma-separated CIDR networks webhooks may reach although they are private, loopback or link-local (e.g. 10.1.2.0/24)',
    }),
  ),
  EVENT_RETENTION_DAYS: Type.Integer({
    minimum: 1,
    maximum: 3650,
    default: DEFAULT_EVENT_RETENTION_DAYS,
    description: 'Days events (the feed) and ended webhook deliveries are kept',
  }),
  SYNC_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 256,
    default: 64,
    description: 'Mailbox folders one instance syncs at once',
  }),
  SEND_RATE_PER_MINUTE: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: GRAPH_LIMITS.messagesPerMinute,
    description: 'Messages a minute each outgoing mailbox may send, across all instances (Exchange Online allows about 30)',
  }),
  SEND_MAX_ATTEMPTS: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 8,
    description: 'Attempts before a transiently failing message is marked failed',
  }),
  BODY_LIMIT: Type.Integer({
    minimum: 1024,
    maximum: 157_286_400,
    default: 1_048_576,
    description: 'Largest accepted request body in bytes',
  }),
  INGEST_DEDUPE_SCOPE: Type.Union([Type.Literal('global'), Type.Literal('connector')], {
    default: 'global',
    description: 'Where a received email counts as a duplicate: across all connectors, or only within its own connector',
  }),
  INGEST_THREADING_MODE: Type.Union([Type.Literal('standard'), Type.Literal('mixed'), Type.Literal('plus_only')], {
    default: 'mixed',
    description: 'How replies are matched to known work: headers and reference tokens, plus addresses too, or plus addresses only',
  }),
  INGEST_REFERENCE_PATTERN: Type.Optional(
    Type.String({
      minLength: 3,
      maxLength: 200,
      description: 'Regular expression that finds a work item reference in a subject or body; its group `ref` (or group 1) is the reference',
    }),
  ),
  GRAPHQL_INTROSPECTION: Type.Boolean({
    default: true,
    description: 'Let GraphQL clients introspect the schema (GraphiQL needs it); false refuses __schema and __type queries',
  }),
})

export type Env = Static<typeof EnvSchema>

export interface IngestSettings {
  dedupeScope: 'global' | 'connector'
  threadingMode: 'standard' | 'mixed' | 'plus_only'
  /** Source of the regular expression that finds a work item reference in a subject or body. */
  referencePattern: string
}

/** `[WI-1001]`-style tokens: letters, a dash and digits in square brackets. */
export const DEFAULT_REFERENCE_PATTERN = '\\[(?<ref>[A-Z][A-Z0-9]{0,9}-\\d{1,12})\\]'

/** True when the pattern compiles and has a group that names the reference. */
function isUsableReferencePattern(source: string): boolean {
  try {
    const pattern = new RegExp(source)
    return /\(\?<ref>/.test(source) || new RegExp(`${pattern.source}|`).exec('')!.length > 1
  } catch {
    return false
  }
}

export interface AppConfig {
  port: number
  host: string
  database: { kind: 'embedded'; dataDir: string } | { kind: 'external'; url: string }
  migrateOnStart: boolean
  logLevel: Env['LOG_LEVEL']
  /** Base64 key; unset only in embedded mode, where the server generates one into DATA_DIR. */
  secretsKey: string | undefined
  previousSecretsKeys: string[]
  /** Operator overrides of Microsoft hosts; never taken from a request. */
  microsoftHosts: { authority?: string; graph?: string }
  adminApiKey: string | undefined
  publicBaseUrl: string | undefined
  bodyLimit: number
  connectorFailureThreshold: number
  messageSizeLimit: number
  dispatcher: { enabled: boolean; perMinute: number; maxAttempts: number }
  /** SYNC_INTERVAL, in ms. */
  syncIntervalMs: number
  /** SYNC_CONCURRENCY. */
  syncConcurrency: number
  webhooks: { allowHttp: boolean; allowedNetworks: string[] }
  /** EVENT_RETENTION_DAYS. */
  eventRetentionDays: number
  graphqlIntrospection: boolean
  ingest: IngestSettings
}

const expectations: Record<keyof Env, string> = {
  PORT: 'an integer from 0 to 65535',
  HOST: 'a host name or IP address',
  DATABASE_URL: 'a postgres:// or postgresql:// connection string',
  DATA_DIR: 'a directory path',
  MIGRATE_ON_START: '"true" or "false"',
  LOG_LEVEL: 'one of fatal, error, warn, info, debug, trace, silent',
  SECRETS_KEY: '32 random bytes in base64, e.g. the output of `openssl rand -base64 32`',
  SECRETS_KEY_PREVIOUS: 'comma-separated base64 32-byte keys',
  AUTHORITY_HOST: 'a host name, optionally with :port, e.g. login.microsoftonline.us',
  GRAPH_HOST: 'a host name, optionally with :port, e.g. graph.microsoft.us',
  ADMIN_API_KEY: '32 to 256 printable ASCII characters without spaces',
  PUBLIC_BASE_URL: 'an https URL such as https://mailgate.example.com (Microsoft Graph sends change notifications only to https)',
  BODY_LIMIT: 'a byte count from 1024 to 157286400',
  CONNECTOR_FAILURE_THRESHOLD: 'an integer from 1 to 1000',
  MESSAGE_SIZE_LIMIT: 'a byte count from 1024 to 157286400 (150 MB)',
  DISPATCHER_ENABLED: '"true" or "false"',
  SEND_RATE_PER_MINUTE: 'an integer from 1 to 10000',
  SYNC_INTERVAL: 'a number of seconds from 5 to 86400',
  SYNC_CONCURRENCY: 'an integer from 1 to 256',
  EVENT_RETENTION_DAYS: 'a number of days from 1 to 3650',
  WEBHOOK_ALLOW_HTTP: '"true" or "false"',
  WEBHOOK_ALLOWED_NETWORKS: 'comma-separated CIDR networks such as 10.0.0.0/8,fd00::/8',
  SEND_MAX_ATTEMPTS: 'an integer from 1 to 100',
  GRAPHQL_INTROSPECTION: '"true" or "false"',
  INGEST_DEDUPE_SCOPE: '"global" or "connector"',
  INGEST_THREADING_MODE: '"standard", "mixed" or "plus_only"',
  INGEST_REFERENCE_PATTERN: 'a regular expression (JavaScript syntax, without slashes) with a group `ref` or one capturing group, e.g. \\[(?<ref>WI-\\d+)\\]',
}

export class ConfigError extends Error {
  readonly problems: { variable: string; expected: string }[]

  constructor(problems: { variable: string; expected: string }[]) {
    super(
      'Invalid configuration:\n' +
        problems.map((p) => `  ${p.variable}: expected ${p.expected}`).join('\n'),
    )
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function isCidr(network: string): boolean {
  try {
    ipaddr.parseCIDR(network)
    return true
  } catch {
    return false
  }
}

/** Reads only the variables the schema names; blank values count as unset. */
export function loadConfig(source: NodeJS.ProcessEnv): AppConfig {
  const raw: Record<string, unknown> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = source[name]
    if (value !== undefined && value.trim() !== '') raw[name] = value.trim()
  }
  const env = Value.Convert(EnvSchema, Value.Default(EnvSchema, raw))
  const problems = new Map<string, string>()
  for (const error of Value.Errors(EnvSchema, env)) {
    const variable = error.path.replace(/^\//, '') as keyof Env
    if (!problems.has(variable)) problems.set(variable, expectations[variable] ?? error.message)
  }
  if (problems.size === 0) {
    const valid = env as Env
    if (valid.INGEST_REFERENCE_PATTERN !== undefined && !isUsableReferencePattern(valid.INGEST_REFERENCE_PATTERN)) {
      problems.set('INGEST_REFERENCE_PATTERN', expectations.INGEST_REFERENCE_PATTERN)
    }
    if (valid.WEBHOOK_ALLOWED_NETWORKS !== undefined && !valid.WEBHOOK_ALLOWED_NETWORKS.split(',').every((network) => isCidr(network.trim()))) {
      problems.set('WEBHOOK_ALLOWED_NETWORKS', expectations.WEBHOOK_ALLOWED_NETWORKS)
    }
    if (valid.DATABASE_URL && !valid.SECRETS_KEY) {
      problems.set('SECRETS_KEY', `${expectations.SECRETS_KEY}; it is required with an external DATABASE_URL`)
    }
  }
  if (problems.size > 0) {
    throw new ConfigError([...problems].map(([variable, expected]) => ({ variable, expected })))
  }
  const valid = env as Env
  return {
    port: valid.PORT,
    host: valid.HOST,
    database: valid.DATABASE_URL
      ? { kind: 'external', url: valid.DATABASE_URL }
      : { kind: 'embedded', dataDir: valid.DATA_DIR },
    migrateOnStart: valid.MIGRATE_ON_START,
    logLevel: valid.LOG_LEVEL,
    secretsKey: valid.SECRETS_KEY,
    previousSecretsKeys: valid.SECRETS_KEY_PREVIOUS?.split(',') ?? [],
    microsoftHosts: { authority: valid.AUTHORITY_HOST, graph: valid.GRAPH_HOST },
    adminApiKey: valid.ADMIN_API_KEY,
    publicBaseUrl: valid.PUBLIC_BASE_URL?.replace(/\/$/, ''),
    bodyLimit: valid.BODY_LIMIT,
    connectorFailureThreshold: valid.CONNECTOR_FAILURE_THRESHOLD,
    messageSizeLimit: valid.MESSAGE_SIZE_LIMIT,
    dispatcher: { enabled: valid.DISPATCHER_ENABLED, perMinute: valid.SEND_RATE_PER_MINUTE, maxAttempts: valid.SEND_MAX_ATTEMPTS },
    syncIntervalMs: valid.SYNC_INTERVAL * 1000,
    syncConcurrency: valid.SYNC_CONCURRENCY,
    webhooks: { allowHttp: valid.WEBHOOK_ALLOW_HTTP, allowedNetworks: valid.WEBHOOK_ALLOWED_NETWORKS?.split(',').map((network) => network.trim()) ?? [] },
    eventRetentionDays: valid.EVENT_RETENTION_DAYS,
    graphqlIntrospection: valid.GRAPHQL_INTROSPECTION,
    ingest: {
      dedupeScope: valid.INGEST_DEDUPE_SCOPE,
      threadingMode: valid.INGEST_THREADING_MODE,
      referencePattern: valid.INGEST_REFERENCE_PATTERN ?? DEFAULT_REFERENCE_PATTERN,
    },
  }
}
