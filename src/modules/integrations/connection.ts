import { hash } from 'node:crypto'
import type { AuthMethod, Cloud } from '../../../db/schema.ts'
import type { IntegrationRow } from './repository.ts'

/** The connection-relevant settings of an integration; their hash is what tests verify. */
export interface Connection {
  tenant: string
  clientId: string
  cloud: Cloud
  authMethod: AuthMethod
  credentialFingerprint: string
}

export type ConnectionColumns = Pick<IntegrationRow, 'tenant' | 'clientId' | 'cloud' | 'authMethod' | 'credentialFingerprint'>

export function connectionOf(row: ConnectionColumns): Connection {
  return {
    tenant: row.tenant,
    clientId: row.clientId,
    cloud: row.cloud,
    authMethod: row.authMethod,
    credentialFingerprint: row.credentialFingerprint,
  }
}

export function configHashOf(connection: Connection): string {
  return hash(
    'sha256',
    JSON.stringify([
      connection.tenant.toLowerCase(),
      connection.clientId.toLowerCase(),
      connection.cloud,
      connection.authMethod,
      connection.credentialFingerprint,
    ]),
  )
}

/**
 * Which app in which tenant and cloud: what decides the mailboxes an integration can reach.
 * Connector and alias tests depend on it; a rotated secret does not change it.
 */
export function identityHashOf(row: Pick<IntegrationRow, 'tenant' | 'clientId' | 'cloud'>): string {
  return hash('sha256', JSON.stringify([row.tenant.toLowerCase(), row.clientId.toLowerCase(), row.cloud]))
}
