import { X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TokenProvider, type AppRegistration } from '../src/graph/token-provider.ts'
import { makeCertificate } from '../src/sandbox/certificates.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
const tenant = fake.addTenant({ domains: ['contoso.onmicrosoft.com'] })
const certificate = makeCertificate()
const app = fake.registerApp(tenant, {
  roles: ['Mail.ReadWrite', 'Mail.Send'],
  secrets: [
    { value: 'good-secret', expiresAt: new Date(Date.now() + 86_400_000) },
    { value: 'old-secret', expiresAt: new Date(Date.now() - 1000) },
  ],
  certificates: [certificate.certificatePem],
})
const thumbprintSha256 = new X509Certificate(certificate.certificatePem).fingerprint256.replaceAll(':', '')

beforeAll(() => void fake.start())
afterAll(() => fake.stop())

let sequence = 0
function registration(overrides: Partial<AppRegistration> = {}): AppRegistration {
  sequence += 1
  return {
    integrationId: `integration-${sequence}`,
    configHash: `hash-${sequence}`,
    tenant: tenant.id,
    clientId: app.clientId,
    cloud: 'global',
    credential: { kind: 'clientSecret', clientSecret: 'good-secret' },
    ...overrides,
  }
}

describe('TokenProvider against the fake Entra ID', () => {
  const provider = new TokenProvider({ timeoutMs: 1_000 })

  it('gets a token with a client secret and reads the granted roles', async () => {
    const token = await provider.acquire(registration())
    expect(token.roles).toEqual(['Mail.ReadWrite', 'Mail.Send'])
    expect(token.expiresOn!.getTime()).toBeGreaterThan(Date.now())
  })

  it('accepts a verified domain as the tenant', async () => {
    const token = await provider.acquire(registration({ tenant: 'contoso.onmicrosoft.com' }))
    expect(token.roles).toContain('Mail.Send')
  })

  it('gets a token with a certificate: a real signed assertion, verified by the fake', async () => {
    const before = fake.tokenRequests.length
    const token = await provider.acquire(
      registration({
        credential: {
          kind: 'certificate',
          privateKeyPem: certificate.privateKeyPem,
          certificatePem: certificate.certificatePem,
          thumbprintSha256,
        },
      }),
    )
    expect(token.roles).toEqual(['Mail.ReadWrite', 'Mail.Send'])
    expect(fake.tokenRequests.slice(before)).toEqual([expect.objectContaining({ method: 'assertion', outcome: 'issued' })])
  })

  it('maps each Entra failure to a stable code with a hint', async () => {
    const cases: [Partial<AppRegistration>, string, string][] = [
      [{ tenant: '00000000-0000-0000-0000-000000000000' }, 'TENANT_NOT_FOUND', '90002'],
      [{ clientId: '11111111-1111-1111-1111-111111111111' }, 'APP_NOT_FOUND', '700016'],
      [{ credential: { kind: 'clientSecret', clientSecret: 'wrong' } }, 'INVALID_CLIENT_SECRET', '7000215'],
      [{ credential: { kind: 'clientSecret', clientSecret: 'old-secret' } }, 'CLIENT_SECRET_EXPIRED', '7000222'],
    ]
    const unregistered = makeCertificate()
    cases.push([
      {
        credential: {
          kind: 'certificate',
          privateKeyPem: unregistered.privateKeyPem,
          certificatePem: unregistered.certificatePem,
          thumbprintSha256: new X509Certificate(unregistered.certificatePem).fingerprint256.replaceAll(':', ''),
        },
      },
      'CERTIFICATE_NOT_REGISTERED',
      '700027',
    ])
    for (const [overrides, code, aadsts] of cases) {
      const error = await provider.acquire(registration(overrides)).then(
        () => null,
        (e: unknown) => e,
      )
      expect(error, code).toMatchObject({ code, aadsts, hint: expect.any(String) })
      expect(String((error as Error).message)).not.toMatch(/good-secret|wrong|old-secret/)
    }
  })

  it('reports server errors, network failures and timeouts', async () => {
    fake.failNextTokenRequests({ kind: 'status', status: 503 })
    await expect(provider.acquire(registration())).rejects.toMatchObject({ code: 'IDENTITY_PROVIDER_ERROR' })
    fake.failNextTokenRequests({ kind: 'status', status: 504, body: '<html><body>Gateway Timeout</body></html>', contentType: 'text/html' })
    await expect(provider.acquire(registration())).rejects.toMatchObject({ code: 'IDENTITY_PROVIDER_ERROR' })
    fake.failNextTokenRequests({ kind: 'status', status: 502, body: '' })
    await expect(provider.acquire(registration())).rejects.toMatchObject({ code: 'IDENTITY_PROVIDER_ERROR' })
    fake.failNextTokenRequests({ kind: 'network' })
    await expect(provider.acquire(registration())).rejects.toMatchObject({ code: 'NETWORK_ERROR' })
    fake.failNextTokenRequests({ kind: 'delay', ms: 1_500 })
    await expect(provider.acquire(registration())).rejects.toMatchObject({ code: 'TOKEN_TIMEOUT' })
  })

  it('reuses a client (and its cached token) per configuration, and drops it when forgotten', async () => {
    const reg = registration()
    const before = fake.tokenRequests.length
    await provider.acquire(reg)
    await provider.acquire(reg)
    expect(fake.tokenRequests.length - before).toBe(1)
    provider.forget(reg.integrationId)
    await provider.acquire(reg)
    expect(fake.tokenRequests.length - before).toBe(2)
  })

  it('a fresh acquisition asks Entra again instead of using the cached token', async () => {
    const reg = registration()
    await provider.acquire(reg)
    const before = fake.tokenRequests.length
    await provider.acquire(reg, { fresh: true })
    await provider.acquire(reg, { fresh: true })
    expect(fake.tokenRequests.length - before).toBe(2)
  })

  it('talks to the sign-in host of the chosen cloud', async () => {
    const before = fake.tokenRequests.length
    await provider.acquire(registration({ cloud: 'china' })).catch(() => {})
    await provider.acquire(registration({ cloud: 'usgov' })).catch(() => {})
    expect(fake.tokenRequests.slice(before).map((r) => r.host)).toEqual(['login.chinacloudapi.cn', 'login.microsoftonline.us'])
  })
})
