import { X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { makeCertificate } from '../src/sandbox/certificates.ts'
import { FakeMicrosoft, type FakeApp, type FakeTenant } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let entraApp: FakeApp
const SECRET = 'Zx8~plain-client-secret-value-001'
const certificate = makeCertificate({ subject: 'mailgate-prod', password: 'pfx-pass-42' })

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant({ domains: ['contoso.onmicrosoft.com'] })
  entraApp = fake.registerApp(tenant, {
    secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 30 * 86_400_000) }],
    certificates: [certificate.certificatePem],
  })
  t = await buildTestApp()
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.body ? response.json() : null, raw: response.body }
}

function secretIntegration(overrides: Record<string, unknown> = {}) {
  return {
    name: 'Contoso support',
    tenant: tenant.id,
    clientId: entraApp.clientId,
    authMethod: 'clientSecret',
    clientSecret: SECRET,
    ...overrides,
  }
}

function stepCodes(result: { steps: { name: string; ok: boolean; code?: string; skipped?: boolean }[] }) {
  return result.steps.map((step) => `${step.name}:${step.ok ? 'ok' : step.skipped ? 'skipped' : step.code}`)
}

describe('creating integrations', () => {
  it('with a client secret: the secret is write-only', async () => {
    const { status, body, raw } = await call('POST', '/v1/integrations', secretIntegration())
    expect(status).toBe(201)
    expect(body).toMatchObject({
      name: 'Contoso support',
      cloud: 'global',
      authMethod: 'clientSecret',
      hasClientSecret: true,
      certificate: null,
      verified: false,
      lastTest: null,
    })
    expect(raw).not.toContain(SECRET)
    expect((await call('GET', `/v1/integrations/${body.id}`)).raw).not.toContain(SECRET)
  })

  it('with a PFX: thumbprints, subject and validity come from the certificate', async () => {
    const { status, body, raw } = await call('POST', '/v1/integrations', {
      ...secretIntegration({ clientSecret: undefined }),
      authMethod: 'certificate',
      certificate: { pfx: certificate.pfx, password: certificate.password },
    })
    expect(status).toBe(201)
    const x509 = new X509Certificate(certificate.certificatePem)
    expect(body.certificate).toEqual({
      thumbprintSha1: x509.fingerprint.replaceAll(':', ''),
      thumbprintSha256: x509.fingerprint256.replaceAll(':', ''),
      subject: 'CN=mailgate-prod',
      notBefore: new Date(x509.validFrom).toISOString(),
      notAfter: new Date(x509.validTo).toISOString(),
    })
    expect(body.secretExpiresAt).toBe(body.certificate.notAfter)
    expect(body.hasClientSecret).toBe(false)
    expect(raw).not.toContain(certificate.password)
    expect(raw).not.toContain('PRIVATE KEY')
  })

  it('with a PEM certificate and key', async () => {
    const { status, body } = await call('POST', '/v1/integrations', {
      ...secretIntegration({ clientSecret: undefined }),
      authMethod: 'certificate',
      certificate: { certificatePem: certificate.certificatePem, privateKeyPem: certificate.privateKeyPem },
    })
    expect(status).toBe(201)
    expect(body.certificate.subject).toBe('CN=mailgate-prod')
  })

  it('rejects unusable certificates with a 422 naming the problem, and saves nothing', async () => {
    const before = (await call('GET', '/v1/integrations?limit=200')).body.items.length
    const other = makeCertificate()
    const cases: [Record<string, string>, string, string][] = [
      [{ pfx: Buffer.from('not a certificate at all').toString('base64'), password: 'x' }, 'CERTIFICATE_NOT_PFX', 'certificate.pfx'],
      [{ pfx: certificate.pfx, password: 'wrong' }, 'CERTIFICATE_WRONG_PASSWORD', 'certificate.password'],
      [{ pfx: makeCertificate({ includeKey: false, password: 'p' }).pfx, password: 'p' }, 'CERTIFICATE_NO_PRIVATE_KEY', 'certificate.pfx'],
      [{ certificatePem: certificate.certificatePem, privateKeyPem: other.privateKeyPem }, 'CERTIFICATE_KEY_MISMATCH', 'certificate.certificatePem'],
      [
        { pfx: makeCertificate({ notBefore: new Date('2020-01-01'), notAfter: new Date('2021-01-01'), password: 'p' }).pfx, password: 'p' },
        'CERTIFICATE_EXPIRED',
        'certificate.pfx',
      ],
      [
        { pfx: makeCertificate({ notBefore: new Date(Date.now() + 86_400_000), password: 'p' }).pfx, password: 'p' },
        'CERTIFICATE_NOT_YET_VALID',
        'certificate.pfx',
      ],
      [{ certificatePem: 'x'.repeat(60), privateKeyPem: certificate.privateKeyPem }, 'CERTIFICATE_INVALID_PEM', 'certificate.certificatePem'],
    ]
    for (const [input, code, field] of cases) {
      const { status, body, raw } = await call('POST', '/v1/integrations', {
        ...secretIntegration({ clientSecret: undefined }),
        authMethod: 'certificate',
        certificate: input,
      })
      expect(status, code).toBe(422)
      expect(body, code).toMatchObject({ code, field, detail: expect.any(String) })
      expect(raw).not.toContain(certificate.password)
    }
    expect((await call('GET', '/v1/integrations?limit=200')).body.items.length).toBe(before)
  })

  it('rejects inconsistent or malformed settings with a 400 naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [secretIntegration({ clientSecret: undefined }), 'clientSecret'],
      [{ ...secretIntegration(), certificate: { pfx: certificate.pfx } }, 'certificate'],
      [{ ...secretIntegration({ clientSecret: undefined }), authMethod: 'certificate' }, 'certificate'],
      [{ ...secretIntegration(), authMethod: 'certificate', certificate: { pfx: certificate.pfx, password: 'x' } }, 'clientSecret'],
      [{ ...secretIntegration(), authMethod: 'certificate', clientSecret: undefined, certificate: { certificatePem: certificate.certificatePem } }, 'certificate.privateKeyPem'],
      [secretIntegration({ tenant: 'not a tenant!' }), 'tenant'],
      [secretIntegration({ clientId: 'abc' }), 'clientId'],
      [secretIntegration({ cloud: 'mars' }), 'cloud'],
    ]
    for (const [payload, field] of cases) {
      const { status, body } = await call('POST', '/v1/integrations', payload)
      expect(status, field).toBe(400)
      expect(body.errors.map((e: { field: string }) => e.field), field).toContain(field)
    }
  })
})

describe('test connection', () => {
  it('with a client secret: token, roles, and the integration becomes verified', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    const { status, body } = await call('POST', `/v1/integrations/${created.id}/test`)
    expect(status).toBe(200)
    expect(body).toMatchObject({ ok: true, candidate: false, matchesCurrentConfiguration: true, roles: ['Mail.ReadWrite', 'Mail.Send'] })
    expect(stepCodes(body)).toEqual(['secrets_readable:ok', 'token_acquired:ok', 'roles_granted:ok'])
    const fetched = (await call('GET', `/v1/integrations/${created.id}`)).body
    expect(fetched).toMatchObject({ verified: true, lastTest: { id: body.id, ok: true } })
  })

  it('with a certificate, end to end: the fake verifies the signed assertion', async () => {
    const created = (
      await call('POST', '/v1/integrations', {
        ...secretIntegration({ clientSecret: undefined, tenant: 'contoso.onmicrosoft.com' }),
        authMethod: 'certificate',
        certificate: { pfx: certificate.pfx, password: certificate.password },
      })
    ).body
    const before = fake.tokenRequests.length
    const { body } = await call('POST', `/v1/integrations/${created.id}/test`)
    expect(body.ok).toBe(true)
    expect(fake.tokenRequests.slice(before)).toEqual([expect.objectContaining({ method: 'assertion', outcome: 'issued' })])
  })

  it('reports every Entra failure as ok: false with a code and a hint, never a 5xx', async () => {
    const expiredApp = fake.registerApp(tenant, { secrets: [{ value: 'expired', expiresAt: new Date(Date.now() - 1000) }] })
    const unregistered = makeCertificate()
    const cases: [Record<string, unknown>, string][] = [
      [secretIntegration({ tenant: '00000000-0000-4000-8000-000000000000' }), 'TENANT_NOT_FOUND'],
      [secretIntegration({ clientId: '11111111-2222-4333-8444-555555555555' }), 'APP_NOT_FOUND'],
      [secretIntegration({ clientSecret: 'wrong-secret' }), 'INVALID_CLIENT_SECRET'],
      [secretIntegration({ clientId: expiredApp.clientId, clientSecret: 'expired' }), 'CLIENT_SECRET_EXPIRED'],
      [
        {
          ...secretIntegration({ clientSecret: undefined }),
          authMethod: 'certificate',
          certificate: { pfx: unregistered.pfx, password: unregistered.password },
        },
        'CERTIFICATE_NOT_REGISTERED',
      ],
    ]
    for (const [payload, code] of cases) {
      const created = (await call('POST', '/v1/integrations', payload)).body
      const { status, body } = await call('POST', `/v1/integrations/${created.id}/test`)
      expect(status, code).toBe(200)
      expect(stepCodes(body), code).toEqual(['secrets_readable:ok', `token_acquired:${code}`, 'roles_granted:skipped'])
      expect(body.steps[1].hint, code).toEqual(expect.any(String))
      expect(body.ok).toBe(false)
      expect((await call('GET', `/v1/integrations/${created.id}`)).body.verified).toBe(false)
    }
  })

  it('reports Entra outages, network failures and timeouts', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    const faults = [
      [{ kind: 'status', status: 503 }, 'IDENTITY_PROVIDER_ERROR'],
      [{ kind: 'network' }, 'NETWORK_ERROR'],
      [{ kind: 'delay', ms: 2_500 }, 'TOKEN_TIMEOUT'],
    ] as const
    for (const [fault, code] of faults) {
      fake.failNextTokenRequests(fault)
      const { body } = await call('POST', `/v1/integrations/${created.id}/test`)
      expect(body.steps[1], `${code} ${JSON.stringify(body)} ${JSON.stringify(fake.tokenRequests.slice(-3))}`).toMatchObject({ ok: false, code })
    }
  })

  it('says which mail permissions are missing', async () => {
    const noMail = fake.registerApp(tenant, { roles: ['User.Read.All'], secrets: [{ value: 's1', expiresAt: new Date(Date.now() + 86_400_000) }] })
    const sendOnly = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 's2', expiresAt: new Date(Date.now() + 86_400_000) }] })
    const none = (await call('POST', '/v1/integrations', secretIntegration({ clientId: noMail.clientId, clientSecret: 's1' }))).body
    const result = (await call('POST', `/v1/integrations/${none.id}/test`)).body
    expect(result.ok).toBe(false)
    expect(result.steps[2], JSON.stringify(result)).toMatchObject({ ok: false, code: 'MAIL_PERMISSIONS_MISSING', message: expect.stringContaining('User.Read.All') })

    const send = (await call('POST', '/v1/integrations', secretIntegration({ clientId: sendOnly.clientId, clientSecret: 's2' }))).body
    const partial = (await call('POST', `/v1/integrations/${send.id}/test`)).body
    expect(partial.ok).toBe(true)
    expect(partial.steps[2]).toMatchObject({ ok: true, message: 'Granted: Mail.Send. Missing: Mail.ReadWrite.', hint: expect.stringContaining('Mail.ReadWrite') })
  })

  it('uses the sign-in host of the integration\'s cloud', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration({ cloud: 'usgov' }))).body
    const before = fake.tokenRequests.length
    await call('POST', `/v1/integrations/${created.id}/test`)
    expect(fake.tokenRequests.slice(before).map((r) => r.host)).toEqual(['login.microsoftonline.us'])
  })
})

describe('candidate changes and verification', () => {
  it('tests candidate settings without saving them; saving exactly them keeps the integration verified', async () => {
    const rotated = 'rotated-secret-value-002'
    entraApp.secrets.push({ value: rotated, expiresAt: new Date(Date.now() + 86_400_000) })
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    expect((await call('POST', `/v1/integrations/${created.id}/test`)).body.ok).toBe(true)

    const candidate = (await call('POST', `/v1/integrations/${created.id}/test`, { clientSecret: rotated })).body
    expect(candidate).toMatchObject({ ok: true, candidate: true, matchesCurrentConfiguration: false })
    const unchanged = (await call('GET', `/v1/integrations/${created.id}`)).body
    expect(unchanged).toMatchObject({ verified: true, updatedAt: created.updatedAt })

    const wrongCandidate = (await call('POST', `/v1/integrations/${created.id}/test`, { clientSecret: 'typo' })).body
    expect(wrongCandidate.ok).toBe(false)
    expect((await call('GET', `/v1/integrations/${created.id}`)).body.verified).toBe(true)

    const saved = (await call('PATCH', `/v1/integrations/${created.id}`, { clientSecret: rotated })).body
    expect(saved).toMatchObject({ verified: true, lastTest: { ok: false, matchesCurrentConfiguration: false } })
  })

  it('a changed credential is unverified until tested; renaming keeps verification', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    await call('POST', `/v1/integrations/${created.id}/test`)
    expect((await call('PATCH', `/v1/integrations/${created.id}`, { name: 'Renamed' })).body).toMatchObject({ name: 'Renamed', verified: true })
    expect((await call('PATCH', `/v1/integrations/${created.id}`, { clientSecret: SECRET })).body.verified).toBe(true)
    const switched = (
      await call('PATCH', `/v1/integrations/${created.id}`, {
        authMethod: 'certificate',
        certificate: { pfx: certificate.pfx, password: certificate.password },
      })
    ).body
    expect(switched).toMatchObject({ authMethod: 'certificate', hasClientSecret: false, verified: false })
    expect((await call('POST', `/v1/integrations/${created.id}/test`)).body.ok).toBe(true)
    expect((await call('GET', `/v1/integrations/${created.id}`)).body.verified).toBe(true)
  })

  it('bad candidate input is a 4xx and stores no test', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    const bad = await call('POST', `/v1/integrations/${created.id}/test`, { certificate: { pfx: certificate.pfx, password: 'nope' } })
    expect(bad.status).toBe(400)
    const wrongPassword = await call('POST', `/v1/integrations/${created.id}/test`, {
      authMethod: 'certificate',
      certificate: { pfx: certificate.pfx, password: 'nope' },
    })
    expect(wrongPassword.status).toBe(422)
    expect((await call('GET', `/v1/integrations/${created.id}`)).body.lastTest).toBeNull()
  })
})

describe('reading, deleting and auditing', () => {
  it('lists with filters and cursor pagination', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration({ cloud: 'china', name: 'China' }))).body
    const china = (await call('GET', '/v1/integrations?cloud=china')).body
    expect(china.items.map((i: { id: string }) => i.id)).toContain(created.id)
    expect(china.items.every((i: { cloud: string }) => i.cloud === 'china')).toBe(true)
    const first = (await call('GET', '/v1/integrations?limit=2')).body
    const second = (await call('GET', `/v1/integrations?limit=2&cursor=${first.nextCursor}`)).body
    expect(second.items[0].id < first.items[1].id).toBe(true)
  })

  it('deletes, then 404; the audit trail has every step without a secret', async () => {
    const created = (await call('POST', '/v1/integrations', secretIntegration())).body
    await call('POST', `/v1/integrations/${created.id}/test`)
    await call('PATCH', `/v1/integrations/${created.id}`, { clientSecret: 'another-secret-003' })
    expect((await call('DELETE', `/v1/integrations/${created.id}`)).status).toBe(204)
    expect((await call('GET', `/v1/integrations/${created.id}`)).status).toBe(404)
    expect((await call('DELETE', `/v1/integrations/${created.id}`)).status).toBe(404)

    const audit = await call('GET', `/v1/audit?resourceType=integration&resourceId=${created.id}`)
    expect(audit.body.items.map((e: { action: string }) => e.action)).toEqual(['delete', 'update', 'test', 'create'])
    const update = audit.body.items[1]
    expect(update.diff.changes.clientSecret).toEqual({ changed: true, secret: true })
    expect(audit.body.items[2].diff.details).toMatchObject({ ok: true, candidate: false })
    expect(audit.raw).not.toContain(SECRET)
    expect(audit.raw).not.toContain('another-secret-003')
  })

  it('never logs a secret', () => {
    const logs = t.logs.join('\n')
    for (const secret of [SECRET, certificate.password, 'another-secret-003', 'rotated-secret-value-002']) {
      expect(logs).not.toContain(secret)
    }
    expect(logs).not.toContain('PRIVATE KEY')
  })
})

describe('GraphQL', () => {
  it('creates, tests, updates and deletes through the same service; no secret field exists', async () => {
    const created = await graphql(
      t.app,
      t.adminKey,
      `mutation($input: CreateIntegrationInput!) { createIntegration(input: $input) { id authMethod hasClientSecret verified } }`,
      { input: { name: 'gql', tenant: tenant.id, clientId: entraApp.clientId, authMethod: 'clientSecret', clientSecret: SECRET } },
    )
    expect(created.body.errors).toBeUndefined()
    const id = created.body.data.createIntegration.id
    const tested = await graphql(t.app, t.adminKey, `mutation($id: ID!) { testIntegration(id: $id) { ok steps { name ok code } roles } }`, { id })
    expect(tested.body.data.testIntegration).toMatchObject({ ok: true, roles: ['Mail.ReadWrite', 'Mail.Send'] })
    const candidate = await graphql(
      t.app,
      t.adminKey,
      `mutation($id: ID!, $c: ConnectionChangesInput) { testIntegration(id: $id, candidate: $c) { ok candidate steps { code } } }`,
      { id, c: { clientSecret: 'wrong' } },
    )
    expect(candidate.body.data.testIntegration).toMatchObject({ ok: false, candidate: true })
    expect(candidate.body.data.testIntegration.steps[1].code).toBe('INVALID_CLIENT_SECRET')
    const read = await graphql(t.app, t.adminKey, `query($id: ID!) { integration(id: $id) { verified lastTest { ok candidate } } }`, { id })
    expect(read.body.data.integration).toEqual({ verified: true, lastTest: { ok: false, candidate: true } })

    const invalid = await graphql(
      t.app,
      t.adminKey,
      `mutation($id: ID!) { updateIntegration(id: $id, input: { authMethod: certificate, certificate: { pfx: "bm90IGEgcGZ4", password: "x" } }) { id } }`,
      { id },
    )
    expect(invalid.body.errors![0].extensions).toMatchObject({ code: 'CERTIFICATE_NOT_PFX', field: 'certificate.pfx' })

    const deleted = await graphql(t.app, t.adminKey, `mutation($id: ID!) { deleteIntegration(id: $id) }`, { id })
    expect(deleted.body.data.deleteIntegration).toBe(true)

    const type = await graphql(t.app, t.adminKey, `{ __type(name: "Integration") { fields { name } } }`)
    const fields = type.body.data.__type.fields.map((f: { name: string }) => f.name)
    expect(fields).not.toEqual(expect.arrayContaining(['clientSecret']))
    expect(fields.filter((f: string) => /secret|password|privateKey/i.test(f))).toEqual(['hasClientSecret', 'secretExpiresAt'])
  })

  it('needs config:write to change and config:read to read', async () => {
    const reader = await t.keyWith('config:read')
    const denied = await graphql(t.app, reader, `mutation { deleteIntegration(id: "0190f5e0-0000-7000-8000-000000000000") }`)
    expect(denied.body.errors![0].extensions.code).toBe('FORBIDDEN')
    const list = await graphql(t.app, reader, `{ integrations(limit: 1) { items { id } } }`)
    expect(list.body.errors).toBeUndefined()
  })
})
