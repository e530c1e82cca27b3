import { createReadStream } from 'node:fs'
import { access } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { RouteNotFoundError } from '../lib/errors.ts'

const packageDir = (name: string) => dirname(createRequire(import.meta.url).resolve(`${name}/package.json`))

/** Every file the page loads, from the installed packages: nothing comes from a CDN. */
function assetFiles(): Map<string, { path: string; type: string }> {
  const js = 'text/javascript; charset=utf-8'
  return new Map([
    ['react.js', { path: join(packageDir('react'), 'umd/react.production.min.js'), type: js }],
    ['react-dom.js', { path: join(packageDir('react-dom'), 'umd/react-dom.production.min.js'), type: js }],
    ['graphiql.js', { path: join(packageDir('graphiql'), 'graphiql.min.js'), type: js }],
    ['graphiql.css', { path: join(packageDir('graphiql'), 'graphiql.min.css'), type: 'text/css; charset=utf-8' }],
  ])
}

const page = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Mailgate GraphiQL</title>
  <meta name="robots" content="noindex">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/graphiql/assets/graphiql.css">
  <style>body { margin: 0; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/assets/react.js"></script>
  <script src="/graphiql/assets/react-dom.js"></script>
  <script src="/graphiql/assets/graphiql.js"></script>
  <script src="/graphiql/start.js"></script>
</body>
</html>
`

// The API key goes in the headers pane; it is not persisted to the browser's storage.
const start = `const fetcher = GraphiQL.createFetcher({ url: new URL('/graphql', window.location.href).href })
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: '{\\n  viewer {\\n    scopes\\n  }\\n}\\n',
    defaultHeaders: '{\\n  "Authorization": "Bearer <your API key>"\\n}',
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
  }),
)
`

/** GraphiQL at /graphiql, served whole from this process so it works without internet access. */
async function graphiqlPlugin(app: FastifyInstance) {
  const assets = assetFiles()
  // A dependency update that moves a file fails the start, not a visitor's page.
  await Promise.all([...assets.values()].map((asset) => access(asset.path)))
  const hidden = { hide: true }
  app.get('/graphiql', { schema: hidden }, async (_request, reply) => reply.type('text/html; charset=utf-8').send(page))
  app.get('/graphiql/start.js', { schema: hidden }, async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(start))
  app.get<{ Params: { file: string } }>('/graphiql/assets/:file', { schema: hidden }, async (request, reply) => {
    const asset = assets.get(request.params.file)
    if (!asset) throw new RouteNotFoundError(`No GraphiQL asset ${request.params.file}.`)
    return reply.type(asset.type).header('cache-control', 'public, max-age=86400').send(createReadStream(asset.path))
  })
}

export default fp(graphiqlPlugin, { name: 'graphiql', fastify: '5.x', dependencies: ['errors'] })
