import { ConflictError, UnprocessableError } from '../../lib/errors.ts'

export class SenderNotAllowedError extends UnprocessableError {
  override readonly code = 'SENDER_NOT_ALLOWED'
  override readonly title = 'Mailgate may not send from this address'
}

export class AttachmentNotSendableError extends UnprocessableError {
  override readonly code = 'ATTACHMENT_NOT_SENDABLE'
  override readonly title = 'An attachment cannot be sent this way'
}

export class IdempotencyKeyReusedError extends ConflictError {
  override readonly code = 'IDEMPOTENCY_KEY_REUSED'
  override readonly title = 'The Idempotency-Key was used for a different request'
}

export class MessageStateError extends ConflictError {
  override readonly code = 'MESSAGE_STATE_CONFLICT'
  override readonly title = 'The message is not in a state that allows this'
}
