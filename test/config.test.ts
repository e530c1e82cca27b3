import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.ts'

const KEY = 'q'.repeat(43) + '='

function problemsOf(env: Record<string, string>) {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as ConfigError).problems
  }
  throw new Error('expected a ConfigError')
}

describe('loadConfig', () => {
  it('defaults to the embedded database under ./data on port 3000', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      database: { kind: 'embedded', dataDir: './data' },
      logLevel: 'info',
      migrateOnStart: false,
      bodyLimit: 1_048_576,
      secretsKey: undefined,
    })
  })

  it('converts and keeps valid values, treating blank as unset', () => {
    const config = loadConfig({
      PORT: '8080',
      DATABASE_URL: 'postgres://u:p@db:5432/mailgate',
      SECRETS_KEY: KEY,
      MIGRATE_ON_START: 'true',
      LOG_LEVEL: 'debug',
      PUBLIC_BASE_URL: 'https://mail.example.com/',
      ADMIN_API_KEY: ' ',
    })
    expect(config).toMatchObject({
      port: 8080,
      database: { kind: 'external', url: 'postgres://u:p@db:5432/mailgate' },
      migrateOnStart: true,
      logLevel: 'debug',
      publicBaseUrl: 'https://mail.example.com',
      adminApiKey: undefined,
    })
  })

  it('names each invalid variable with the expected form', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      DATABASE_URL: 'mysql://x',
      SECRETS_KEY: 'short',
      BODY_LIMIT: '10',
      ADMIN_API_KEY: 'too short',
      PUBLIC_BASE_URL: 'http://mail.example.com',
    })
    expect(Object.fromEntries(problems.map((p) => [p.variable, p.expected]))).toEqual({
      PORT: 'an integer from 0 to 65535',
      LOG_LEVEL: 'one of fatal, error, warn, info, debug, trace, silent',
      DATABASE_URL: 'a postgres:// or postgresql:// connection string',
      SECRETS_KEY: expect.stringContaining('openssl rand -base64 32'),
      BODY_LIMIT: 'a byte count from 1024 to 157286400',
      ADMIN_API_KEY: expect.stringContaining('32 to 256'),
      PUBLIC_BASE_URL: expect.stringContaining('Graph sends change notifications only to https'),
    })
  })

  it('reads the dispatcher settings, with the Exchange Online pace as the default', () => {
    expect(loadConfig({}).dispatcher).toEqual({ enabled: true, perMinute: 30, maxAttempts: 8 })
    expect(loadConfig({ DISPATCHER_ENABLED: 'false', SEND_RATE_PER_MINUTE: '10', SEND_MAX_ATTEMPTS: '3' }).dispatcher).toEqual({
      enabled: false,
      perMinute: 10,
      maxAttempts: 3,
    })
    expect(Object.fromEntries(problemsOf({ SEND_RATE_PER_MINUTE: '0', SEND_MAX_ATTEMPTS: 'many' }).map((p) => [p.variable, p.expected]))).toEqual({
      SEND_RATE_PER_MINUTE: 'an integer from 1 to 10000',
      SEND_MAX_ATTEMPTS: 'an integer from 1 to 100',
    })
  })

  it('requires SECRETS_KEY with an external database, and has no default for it', () => {
    const problems = problemsOf({ DATABASE_URL: 'postgres://localhost/mailgate' })
    expect(problems).toEqual([{ variable: 'SECRETS_KEY', expected: expect.stringContaining('required with an external DATABASE_URL') }])
  })

  it('the error message lists every variable, for the operator reading the terminal', () => {
    expect(() => loadConfig({ PORT: '-1', HOST: '' + '' })).toThrow(/PORT: expected an integer from 0 to 65535/)
  })
})
