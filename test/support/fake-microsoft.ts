import nock from 'nock'
import { AUTHORITY_HOSTS, FakeMicrosoft as MicrosoftStandIn, GRAPH_HOSTS, OUTLOOK_HOSTS, type FakeCloud, type RequestBody } from '../../src/sandbox/microsoft.ts'

export * from '../../src/sandbox/microsoft.ts'

/**
 * The Microsoft stand-in (src/sandbox/microsoft.ts) reached through nock: requests to
 * Microsoft's own hosts never leave the test process.
 */
export class FakeMicrosoft extends MicrosoftStandIn {
  private scopes: nock.Scope[] = []

  /** Starts intercepting the Microsoft hosts. Call stop() in afterAll. */
  start(): this {
    nock.disableNetConnect()
    nock.enableNetConnect((host) => host.startsWith('127.0.0.1') || host.startsWith('localhost'))
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- nock binds `this` to the request
    const fake = this
    for (const host of AUTHORITY_HOSTS) {
      const scope = nock(`https://${host}`)
        .persist()
        .post(/^\/[^/]+\/oauth2\/v2\.0\/token$/)
        .query(true)
        // Throwing from the reply function reaches the client as a network error.
        .reply(async (uri: string, body: RequestBody) => {
          const tenant = uri.split('?')[0]!.split('/')[1]!
          const result = await this.token(host, tenant, typeof body === 'string' ? body : new URLSearchParams(body as Record<string, string>).toString())
          if (result === 'network') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
          const contentType = 'contentType' in result && result.contentType ? result.contentType : 'application/json; charset=utf-8'
          return [result.status, result.body as RequestBody, { 'content-type': contentType }]
        })
      this.scopes.push(scope)
    }
    const intercept = (host: string, path: RegExp, method: string, service: 'graph' | 'outlook') => {
      const scope = nock(`https://${host}`)
        .persist()
        .intercept(path, method)
        .query(true)
        .reply(async function (this: nock.ReplyFnContext, uri: string, body: RequestBody) {
          const result = await fake.serve(service, host, method, uri, body, this.req.headers)
          if (result === 'network') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
          return [result.status, result.body as RequestBody, result.headers ?? {}]
        })
      this.scopes.push(scope)
    }
    for (const host of GRAPH_HOSTS) {
      for (const method of ['GET', 'POST', 'PATCH', 'DELETE']) intercept(host, /^\/v1\.0\//, method, 'graph')
    }
    for (const host of OUTLOOK_HOSTS) {
      for (const method of ['PUT', 'DELETE']) intercept(host, /^\/api\//, method, 'outlook')
    }
    return this
  }

  /**
   * Serves every endpoint of `cloud` (sign-in, Graph, upload URLs) on `host` as well, through
   * nock: what a proxy or sandbox host looks like to Mailgate with AUTHORITY_HOST / GRAPH_HOST
   * overrides. Like the real cloud behind such a host, it issues tokens for the cloud's Graph
   * resource and hands out Microsoft's own URLs in nextLinks and upload sessions.
   */
  serveAs(host: string, cloud: FakeCloud = 'global'): this {
    this.standIns.set(host, cloud)
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- nock binds `this` to the request
    const fake = this
    for (const method of ['GET', 'POST', 'PATCH', 'PUT', 'DELETE']) {
      const scope = nock(`https://${host}`)
        .persist()
        .intercept(/^\//, method)
        .query(true)
        .reply(async function (this: nock.ReplyFnContext, uri: string, body: RequestBody) {
          const answer = await fake.handle(host, method, uri, body, this.req.headers)
          if (answer === 'network') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
          return [answer.status, answer.body as RequestBody, answer.headers ?? {}]
        })
      this.scopes.push(scope)
    }
    return this
  }

  override stop(): void {
    super.stop()
    for (const scope of this.scopes) scope.persist(false)
    nock.cleanAll()
    nock.enableNetConnect()
    this.scopes = []
  }
}
