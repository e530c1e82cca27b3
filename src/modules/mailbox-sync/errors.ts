import { ConflictError } from '../../lib/errors.ts'

export class ConnectorNotSyncedError extends ConflictError {
  override readonly code = 'CONNECTOR_NOT_SYNCED'
  override readonly title = 'The connector does not read its mailbox'
}
