import type { ConnectionTestResult, TestStep } from '../../../db/schema.ts'
import { MailboxError, TokenError } from '../../graph/errors.ts'

/** A failure a step can report: MailboxError and TokenError both have this shape. */
export interface StepFailure {
  code: string
  message: string
  hint: string
  /** For authentication failures: the token error's code, reported instead of `code`. */
  tokenCode?: string
}

/**
 * The steps of one connection test, in order; after the first failure the remaining ones are
 * reported as skipped. Every gated resource's test is written with it.
 */
export class TestSteps {
  private readonly steps: TestStep[] = []

  pass(name: string, message: string, hint?: string): void {
    this.steps.push({ name, ok: true, message, ...(hint ? { hint } : {}) })
  }

  fail(name: string, failure: StepFailure, prefix = ''): void {
    // A token failure is reported as Entra's own: its code, message and hint.
    const reported = failure instanceof MailboxError && failure.cause instanceof TokenError ? failure.cause : failure
    this.steps.push({ name, ok: false, code: failure.tokenCode ?? reported.code, message: prefix + reported.message, hint: reported.hint })
  }

  /**
   * The first step of every mailbox test: getting in (credential readable, token issued).
   * Undefined when that failed, which is recorded as the failed step.
   */
  async tokenStep<T>(open: () => Promise<T>): Promise<T | undefined> {
    try {
      const access = await open()
      this.pass('token_acquired', 'Entra ID issued an app-only token for Microsoft Graph.')
      return access
    } catch (error) {
      if (!(error instanceof MailboxError)) throw error
      this.fail('token_acquired', error)
      return undefined
    }
  }

  /** `skipped`: the steps that did not run because this one failed. */
  finish(skipped: string[], extra: { roles?: string[]; facts?: Record<string, unknown> } = {}): ConnectionTestResult {
    for (const name of skipped) this.steps.push({ name, ok: false, skipped: true, message: 'Not run: an earlier step failed.' })
    return { ok: this.steps.every((step) => step.ok), steps: this.steps, ...extra }
  }
}
