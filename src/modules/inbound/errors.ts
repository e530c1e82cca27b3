import { ConflictError, UnprocessableError } from '../../lib/errors.ts'

export class ConnectorNotAcceptingMailError extends ConflictError {
  override readonly code = 'CONNECTOR_NOT_ACCEPTING_MAIL'
  override readonly title = 'The connector does not take mail'
}

export class WorkItemAlreadyConfirmedError extends ConflictError {
  override readonly code = 'WORK_ITEM_ALREADY_CONFIRMED'
  override readonly title = 'The request was already confirmed as another work item'
}

export class NoSuchRequestError extends UnprocessableError {
  override readonly code = 'NO_SUCH_WORK_ITEM_REQUEST'
  override readonly title = 'The email requested no work through that route'
}

export class DuplicateEmailError extends ConflictError {
  override readonly code = 'EMAIL_IS_DUPLICATE'
  override readonly title = 'The email is a duplicate; act on the original'
}


export class RecipientNotOnEmailError extends UnprocessableError {
  override readonly code = 'RECIPIENT_NOT_ON_EMAIL'
  override readonly title = 'The address is not among the email\'s recipients'
}
