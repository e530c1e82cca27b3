import { randomBytes, randomUUID, X509Certificate } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { makeCertificate, makeServerCertificate, type TestCertificate } from './certificates.ts'
import type { FakeMicrosoft, FakeTenant } from './microsoft.ts'

/** What a sandbox keeps between runs (DATA_DIR/sandbox/state.json), so Mailgate's saved settings stay valid. */
export interface SandboxState {
  tenantId: string
  clientId: string
  /** The app registration's certificate credential (PFX for Mailgate, PEM for the stand-in). */
  appCertificate: TestCertificate
  /** The stand-in's TLS certificate and the private CA that issued it (trusted through NODE_EXTRA_CA_CERTS). */
  tls: { caPem: string; certPem: string; keyPem: string }
  adminKey: string
}

export const DEMO = {
  domain: 'contoso.example',
  /** One shared mailbox, read by the incoming connector and sent from by the outgoing one. */
  incoming: 'support@contoso.example',
  outgoing: 'support@contoso.example',
  /** An alias of the support mailbox: replies to it land there. */
  alias: 'hello@contoso.example',
  customer: 'customer@fabrikam.example',
} as const

/** Reads the state of an earlier run, or makes one (certificates, ids, an admin key) and saves it. */
export function loadOrCreateState(dir: string): { state: SandboxState; created: boolean; caPath: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const path = join(dir, 'state.json')
  const caPath = join(dir, 'ca.pem')
  chmodSync(dir, 0o700)
  if (existsSync(path)) {
    let state: SandboxState
    try {
      state = JSON.parse(readFileSync(path, 'utf8')) as SandboxState
      if (!state.tls?.certPem || !state.appCertificate?.pfx || !state.adminKey) throw new Error('fields are missing')
    } catch (error) {
      throw new Error(`${path} cannot be used (${error instanceof Error ? error.message : String(error)}): delete ${dir} to start the sandbox over`, { cause: error })
    }
    // The stand-in's TLS certificate lasts 30 days: a new one (and CA) when it is about to run out.
    if (Date.parse(new X509Certificate(state.tls.certPem).validTo) < Date.now() + 86_400_000) {
      state.tls = makeServerCertificate(['127.0.0.1', 'localhost'])
      save(path, state)
    }
    chmodSync(path, 0o600)
    writeFileSync(caPath, state.tls.caPem) // every start: a deleted or stale copy is put right
    return { state, created: false, caPath }
  }
  const state: SandboxState = {
    tenantId: randomUUID(),
    clientId: randomUUID(),
    appCertificate: makeCertificate({ subject: 'Mailgate sandbox app' }),
    tls: makeServerCertificate(['127.0.0.1', 'localhost']),
    adminKey: `mgk_sandbox_${randomBytes(24).toString('base64url')}`,
  }
  save(path, state)
  writeFileSync(caPath, state.tls.caPem)
  return { state, created: true, caPath }
}

/** Written whole or not at all (a temporary file renamed over it), readable by its owner only. */
function save(path: string, state: SandboxState): void {
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, JSON.stringify(state, null, 2), { mode: 0o600 })
  renameSync(temporary, path)
}

/**
 * The demo tenant in the stand-in: an app registration with the certificate credential and
 * Mail.ReadWrite + Mail.Send, the shared mailboxes Mailgate serves, and a customer's mailbox
 * in another organisation, so that mail between them stays inside the stand-in (its tenant is
 * returned, for more customers).
 */
export function buildTenant(standIn: FakeMicrosoft, state: SandboxState): FakeTenant {
  const tenant = standIn.addTenant({ id: state.tenantId, domains: [DEMO.domain] })
  standIn.registerApp(tenant, { clientId: state.clientId, certificates: [state.appCertificate.certificatePem], roles: ['Mail.ReadWrite', 'Mail.Send'] })
  standIn.addMailbox(tenant, DEMO.incoming, { aliases: [DEMO.alias], stableIds: true })
  const customers = standIn.addTenant({ domains: ['fabrikam.example'] })
  standIn.addMailbox(customers, DEMO.customer, { stableIds: true })
  return customers
}
