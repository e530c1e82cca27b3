import type { AppCredential } from '../../graph/token-provider.ts'
import type { SecretBox } from '../../lib/secret-box.ts'
import type { IntegrationRow } from './repository.ts'

/** What to do when no configured key opens a stored credential. */
export const UNREADABLE_CREDENTIAL_HINT = 'Start the server with the key that sealed it in SECRETS_KEY_PREVIOUS, or enter the credential again.'

/** Binds a sealed value to its integration and field, so it cannot be moved to another. */
export function sealContext(integrationId: string, field: 'clientSecret' | 'privateKey'): string {
  return `integration:${integrationId}:${field}`
}

/** The saved credential of an integration, opened. Throws SecretUnreadableError when no configured key opens it. */
export function openCredential(secretBox: SecretBox, row: IntegrationRow): AppCredential {
  if (row.authMethod === 'clientSecret') {
    return { kind: 'clientSecret', clientSecret: secretBox.open(row.clientSecretSealed!, sealContext(row.id, 'clientSecret')) }
  }
  return {
    kind: 'certificate',
    privateKeyPem: secretBox.open(row.privateKeySealed!, sealContext(row.id, 'privateKey')),
    certificatePem: row.certificatePem!,
    thumbprintSha256: row.thumbprintSha256!,
  }
}
