import { ConflictError, UnprocessableError } from '../../lib/errors.ts'

/** An outgoing address names one sender: a connector's own address or one alias, never two. */
export class AddressInUseError extends ConflictError {
  override readonly code = 'ADDRESS_IN_USE'
  override readonly title = 'Another connector or alias already uses this address'
}

export class DirectionImmutableError extends UnprocessableError {
  override readonly code = 'DIRECTION_IMMUTABLE'
  override readonly title = 'A connector cannot change direction'
}

export class UnknownIntegrationError extends UnprocessableError {
  override readonly code = 'UNKNOWN_INTEGRATION'
  override readonly title = 'No such integration'
}
