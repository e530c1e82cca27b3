import { GRAPH_LIMITS } from '../../graph/limits.ts'
import { PayloadTooLargeError } from '../../lib/errors.ts'
import { AttachmentNotSendableError } from './errors.ts'

/**
 * The size rules of one message, checked while its attachments grow, so that a streamed file
 * is refused at the byte that breaks one rather than after it was stored.
 */
export class SizeRules {
  private readonly limits: { sizeLimit: number; canUseDrafts: boolean; from: string; textBytes: number }
  private attachmentBytes = 0

  constructor(limits: { sizeLimit: number; canUseDrafts: boolean; from: string; textBytes: number }) {
    this.limits = limits
  }

  get totalBytes(): number {
    return this.limits.textBytes + this.attachmentBytes
  }

  /** Throws if an attachment that has reached `size` bytes, after those already added, breaks a rule. */
  check(attachment: { field: string; name: string; isInline: boolean }, size: number): void {
    const { sizeLimit, canUseDrafts, from } = this.limits
    const { field, name } = attachment
    if (attachment.isInline && size > GRAPH_LIMITS.attachmentInRequestBytes) {
      throw new AttachmentNotSendableError(`Inline attachments must be under 3 MB; "${name}" is larger.`, { field })
    }
    if (!canUseDrafts && size > GRAPH_LIMITS.attachmentInRequestBytes) {
      throw new AttachmentNotSendableError(
        `"${name}" is larger than 3 MB. Attachments over 3 MB are uploaded to a draft, which needs the Mail.ReadWrite permission; the integration behind ${from} has only Mail.Send. Grant Mail.ReadWrite and test the integration again, or send smaller files.`,
        { field },
      )
    }
    if (!canUseDrafts && this.attachmentBytes + size > GRAPH_LIMITS.sendMailAttachmentsBytes) {
      throw new AttachmentNotSendableError(
        `The attachments together are larger than 3 MB (at "${name}"). The integration behind ${from} has only Mail.Send, so the message must go out as one sendMail request of at most 4 MB, in which attachments grow by a third. Grant Mail.ReadWrite and test the integration again (large messages then go through a draft), or send smaller files.`,
        { field },
      )
    }
    if (this.totalBytes + size > sizeLimit) throw this.tooLarge()
  }

  /** Throws if subject, body and the attachments added so far are already over the limit. */
  checkTotal(): void {
    if (this.totalBytes > this.limits.sizeLimit) throw this.tooLarge()
  }

  private tooLarge(): PayloadTooLargeError {
    return new PayloadTooLargeError(`The message with its attachments is larger than ${mb(this.limits.sizeLimit)}, the limit (MESSAGE_SIZE_LIMIT).`)
  }

  /** Counts an attachment that passed check() with its final size. */
  add(size: number): void {
    this.attachmentBytes += size
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}
