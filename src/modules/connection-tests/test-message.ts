import type { ConnectionTestResult } from '../../../db/schema.ts'
import { MailboxError, toMailboxError } from '../../graph/errors.ts'
import type { MailCapabilities } from '../../graph/limits.ts'
import type { MailboxClient, OutgoingMail } from '../../graph/mailbox-client.ts'
import { TestSteps } from './steps.ts'

/** Marks connection-test messages, so that ingest recognises and ignores them. */
export const TEST_MESSAGE_HEADER = 'x-mailgate-test'

/** The real message a test of an outgoing connector or alias sends. */
export function testMessage(from: string, to: string, testId: string): OutgoingMail {
  return {
    to: [to],
    subject: 'Mailgate connection test',
    body: {
      contentType: 'text',
      content: `This message tests that Mailgate can send from ${from}. It can be deleted. Test ${testId}.`,
    },
    headers: { [TEST_MESSAGE_HEADER]: testId },
  }
}

export interface SendingTest {
  /** Opens the mailbox with a fresh token. */
  open: () => Promise<{ client: MailboxClient; capabilities: MailCapabilities }>
  /** The mailbox that sends. */
  mailbox: string
  /** The address it sends as: the mailbox itself, or one of its aliases. */
  from: string
  to: string
  testId: string
}

/** Token, Mail.Send, and a real test message: the test of an outgoing connector and of an alias. */
export async function testSending(test: SendingTest): Promise<ConnectionTestResult> {
  const steps = new TestSteps()
  const access = await steps.tokenStep(test.open)
  if (!access) return steps.finish(['send_permission', 'test_message_sent'])
  if (!access.capabilities.send) {
    steps.fail('send_permission', new MailboxError('PERMISSION_MISSING', 'The app does not hold Mail.Send.', {
      hint: 'Add the Microsoft Graph application permission Mail.Send and grant admin consent.',
    }))
    return steps.finish(['test_message_sent'])
  }
  steps.pass('send_permission', 'Mail.Send is granted.')
  const alias = test.from !== test.mailbox
  try {
    await access.client.sendMail(test.mailbox, { ...testMessage(test.from, test.to, test.testId), ...(alias ? { from: test.from } : {}) }, { saveToSentItems: false })
    steps.pass('test_message_sent', `A test message went from ${test.from}${alias ? ` (through ${test.mailbox})` : ''} to ${test.to}.`)
  } catch (error) {
    steps.fail('test_message_sent', toMailboxError(error))
  }
  return steps.finish([])
}
