import type { ConnectionTestResult } from '../../../db/schema.ts'
import { MailboxError, toMailboxError } from '../../graph/errors.ts'
import { TestSteps } from '../connection-tests/steps.ts'
import type { MailboxAccess } from '../integrations/mailbox-access.ts'

export interface IncomingConnection {
  primaryAddress: string
  folderPaths: string[] | null
  afterProcessing: string | null
}

function moveTarget(afterProcessing: string | null): string | null {
  return afterProcessing?.startsWith('move:') ? afterProcessing.slice('move:'.length) : null
}

/**
 * The test of an incoming connector: a mail-read permission, the mailbox answers, and every
 * folder path (and the move target) resolves. The folder ids found are its facts.
 */
export async function testIncoming(open: () => Promise<MailboxAccess>, connection: IncomingConnection): Promise<ConnectionTestResult> {
  const steps = new TestSteps()
  const access = await steps.tokenStep(open)
  if (!access) return steps.finish(['mail_permission', 'mailbox_reachable', 'folders_resolved'])
  if (!access.capabilities.read) {
    steps.fail('mail_permission', new MailboxError('PERMISSION_MISSING', 'The app holds neither Mail.ReadWrite nor Mail.Read.', {
      hint: 'Add the Microsoft Graph application permission Mail.ReadWrite and grant admin consent; an incoming connector also marks, moves or deletes mail.',
    }))
    return steps.finish(['mailbox_reachable', 'folders_resolved'])
  }
  steps.pass('mail_permission', access.capabilities.readWrite ? 'Mail.ReadWrite is granted.' : 'Mail.Read is granted (read only: marking, moving and deleting will fail).')
  const { client } = access
  const mailbox = connection.primaryAddress
  try {
    await client.folder(mailbox, 'inbox')
    steps.pass('mailbox_reachable', `The mailbox ${mailbox} answers.`)
  } catch (error) {
    steps.fail('mailbox_reachable', toMailboxError(error))
    return steps.finish(['folders_resolved'])
  }
  const folderIds: Record<string, string> = {}
  const paths = [...(connection.folderPaths ?? ['Inbox'])]
  const target = moveTarget(connection.afterProcessing)
  for (const path of target ? [...paths, target] : paths) {
    try {
      folderIds[path] = (await client.resolveFolderPath(mailbox, path)).id
    } catch (error) {
      steps.fail(path === target && !paths.includes(path) ? 'move_target_resolved' : 'folders_resolved', toMailboxError(error), `"${path}": `)
      return steps.finish([])
    }
  }
  steps.pass('folders_resolved', `Resolved ${paths.join(', ')}.`)
  if (target) steps.pass('move_target_resolved', `Processed mail will move to ${target}.`)
  return steps.finish([], { facts: { folderIds } })
}
