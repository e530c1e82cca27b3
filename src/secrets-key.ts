import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { AppConfig } from './config.ts'

const KEY_FORMAT = /^[A-Za-z0-9+/]{43}=$/

/**
 * The key that seals stored secrets. Configured keys win; in embedded mode without one, a
 * key is generated once into DATA_DIR (mode 0600) so a first start needs no setup.
 */
export async function resolveSecretsKey(config: AppConfig, log: Logger): Promise<string> {
  if (config.secretsKey) return config.secretsKey
  if (config.database.kind !== 'embedded') throw new Error('SECRETS_KEY is required with an external database')
  const dir = resolve(config.database.dataDir)
  const file = join(dir, 'secrets.key')
  try {
    const existing = (await readFile(file, 'utf8')).trim()
    if (!KEY_FORMAT.test(existing)) throw new Error(`${file} does not hold a base64 32-byte key`)
    return existing
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  await mkdir(dir, { recursive: true })
  const key = randomBytes(32).toString('base64')
  // 'wx' fails if another process created the file first; then that key is the one to use.
  try {
    await writeFile(file, key + '\n', { mode: 0o600, flag: 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return (await readFile(file, 'utf8')).trim()
    throw error
  }
  log.warn(
    { file },
    'SECRETS_KEY is not set: generated a key into the data directory. Back it up with the data; set SECRETS_KEY to manage it yourself.',
  )
  return key
}
